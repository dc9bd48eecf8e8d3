"""bm25_engine: bm25s's tokens and impacts, answered by our inverted index."""

from __future__ import annotations

import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.cli import main
from sparsebench.datasets.resolve import load_dataset
from sparsebench.methods.base import RunContext
from sparsebench.suites.spec import load_suite


def same_up_to_ties(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-5) -> bool:
    """Scores agree position by position; ids agree except among exactly tied scores (bm25s
    orders those its own way, and a tie at the k-th place may keep either document)."""
    if len(a) != len(b) or any(abs(x - y) > tol for (_, x), (_, y) in zip(a, b)):
        return False
    last = a[-1][1] if a else 0.0
    above = lambda hits: {d for d, s in hits if s > last + tol}  # noqa: E731
    return above(a) == above(b)


@pytest.mark.parametrize("method", ["bm25_engine", "bm25_engine(pruning=exhaustive)", "bm25_engine(reorder=bp)"])
def test_top10_agrees_with_bm25s_on_the_default_data(method: str, tmp_path) -> None:
    ds = load_dataset(load_suite("retrieval"), None)
    ctx = RunContext(cache=ArtifactCache(tmp_path / "c"), threads=1, progress=False)
    reference = registry.build("bm25").open(ctx)
    reference.index(ds.corpus)
    engine = registry.build(method).open(ctx)
    engine.index(ds.corpus)
    texts = [q.text for q in ds.judged_queries()]
    ours, theirs = engine.search(texts, 10), reference.search(texts, 10)
    assert len(ours) == len(theirs) == 474
    assert all(same_up_to_ties(x, y) for x, y in zip(ours, theirs))
    # exactly equal id lists, apart from the few queries with tied scores
    assert sum([d for d, _ in x] == [d for d, _ in y] for x, y in zip(ours, theirs)) >= 470


@pytest.mark.parametrize("method, message", [("bm25_engine(alpha=0)", "alpha=0.0 is out of range"),
                                             ("bm25_engine(block_size=0)", "block_size=0 is out of range"),
                                             ("bm25_engine(pruning=wand)", "is not one of")])
def test_bad_engine_parameters_are_refused(method: str, message: str, results_dir, caplog) -> None:
    assert main(["run", "--suite", "retrieval", "--results", str(results_dir), "--method", method]) == 2
    assert any(message in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert not results_dir.exists()


def test_bm25_does_not_pay_for_numba_which_only_the_engine_uses() -> None:
    # bm25s imports numba whenever it is installed, though its numpy backend never calls it.
    import subprocess
    import sys

    code = ("import sys; from sparsebench.methods.bm25 import _import_bm25s; b = _import_bm25s(); "
            "print('numba' in sys.modules, b.BM25 is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr
    assert subprocess.run([sys.executable, "-c", "import numba"], timeout=120).returncode == 0  # it is installed
