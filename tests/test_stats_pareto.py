import itertools
import random

import numpy as np
import pytest

from sparsebench.pareto import dominates, frontier
from sparsebench.stats import bootstrap_ci, holm, paired_test


def brute_force_frontier(points, objectives):
    return [p for p in points if not any(dominates(q, p, objectives) for q in points if q is not p)]


@pytest.mark.parametrize("seed", range(20))
def test_2d_frontier_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    # few distinct values so ties and duplicates occur often
    points = [{"q": rng.choice([0.1, 0.2, 0.3, 0.4]), "ms": rng.choice([1.0, 2.0, 3.0]) if rng.random() > 0.1 else None}
              for _ in range(rng.randint(1, 30))]
    objectives = [(lambda p: p["q"], "higher"), (lambda p: p["ms"], "lower")]
    assert frontier(points, objectives) == [p for p in brute_force_frontier(points, objectives) if p["ms"] is not None]


def test_3d_frontier_and_dominance() -> None:
    pts = [dict(zip("qab", v)) for v in itertools.product([0, 1], [1, 2], [1, 2])]
    objectives = [(lambda p: p["q"], "higher"), (lambda p: p["a"], "lower"), (lambda p: p["b"], "lower")]
    assert frontier(pts, objectives) == [{"q": 1, "a": 1, "b": 1}]
    assert not dominates(pts[0], pts[0], objectives)


def test_bootstrap_matches_a_direct_loop() -> None:
    values = np.random.default_rng(1).random(50)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 50, size=(500, 50))
    means = [values[row].mean() for row in idx]
    expected = (np.quantile(means, 0.025), np.quantile(means, 0.975))
    assert bootstrap_ci(values, n_resamples=500, seed=7) == pytest.approx(expected)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high


def test_paired_tests() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(200)
    better = base + 0.05 + 0.01 * rng.standard_normal(200)
    res = paired_test(better, base)
    assert res.p_ttest < 1e-6 and res.p_permutation < 1e-3 and res.improved > 190
    tied = paired_test(base, base)
    assert tied.p_ttest == 1.0 and tied.p_permutation == 1.0 and tied.improved == tied.degraded == 0
    noise = paired_test(base + 0.001 * rng.standard_normal(200), base)
    assert noise.p_permutation > 0.01
    from scipy.stats import ttest_rel

    assert res.p_ttest == pytest.approx(ttest_rel(better, base).pvalue)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_and_permutation_memory_stays_bounded_at_20000_queries() -> None:
    # One resamples x queries matrix would be 320 MB here (int64 indices, and as much again gathered).
    import tracemalloc

    rng = np.random.default_rng(1)
    values = rng.random(20_000)
    tracemalloc.start()
    lo, hi = bootstrap_ci(values, n_resamples=2000)
    paired_test(values, values * 0.99, n_permutations=2000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lo < values.mean() < hi
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_batched_draws_equal_one_draw() -> None:
    from sparsebench import stats

    rng = np.random.default_rng(2)
    values = rng.random(50)
    whole = bootstrap_ci(values, n_resamples=700)
    whole_test = paired_test(values, values[::-1], n_permutations=500)
    old = stats.BATCH_ELEMENTS
    try:
        stats.BATCH_ELEMENTS = 60  # one resample per batch, and then some
        assert bootstrap_ci(values, n_resamples=700) == whole
        assert paired_test(values, values[::-1], n_permutations=500) == whole_test
    finally:
        stats.BATCH_ELEMENTS = old
