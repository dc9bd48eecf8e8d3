"""BP document reordering: a deterministic permutation that packs documents sharing terms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from sparsebench.kernels.reorder import block_entries, bp_order, log_gap_cost


def clustered(seed: int, n_docs: int = 2000, topics: int = 25, per_topic: int = 60) -> sp.csr_matrix:
    """Documents drawing most terms from one topic's vocabulary, topics shuffled over ids."""
    rng = np.random.default_rng(seed)
    vocab = topics * per_topic
    rows, cols = [], []
    for d in range(n_docs):
        topic = rng.integers(topics)
        terms = set(rng.integers(topic * per_topic, (topic + 1) * per_topic, 12).tolist())
        terms |= set(rng.integers(0, vocab, 2).tolist())  # a little noise from anywhere
        rows += [d] * len(terms)
        cols += sorted(terms)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_docs, vocab))


@pytest.mark.parametrize("unit", [1, 16, 64])
def test_bp_returns_a_permutation_that_lowers_both_costs(unit: int) -> None:
    m = clustered(seed=unit)
    order = bp_order(m, unit=unit)
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(m.shape[0]))
    identity = np.arange(m.shape[0])
    assert log_gap_cost(m, order) < 0.8 * log_gap_cost(m, identity)
    assert block_entries(m, order, 16) < 0.8 * block_entries(m, identity, 16)


def test_bp_is_deterministic_given_its_seed() -> None:
    m = clustered(seed=3, n_docs=700)
    a, b = bp_order(m, unit=8, seed=5), bp_order(m, unit=8, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, bp_order(m, unit=8, seed=6))
    assert sorted(bp_order(m, unit=8, seed=None).tolist()) == list(range(700))


def test_bp_edge_cases() -> None:
    assert bp_order(sp.csr_matrix((0, 5)), unit=4).tolist() == []
    assert sorted(bp_order(sp.csr_matrix(np.eye(3)), unit=4).tolist()) == [0, 1, 2]  # fewer docs than a unit
    empty_rows = sp.csr_matrix((10, 4))
    assert sorted(bp_order(empty_rows, unit=2).tolist()) == list(range(10))  # no terms at all
    assert bp_order(clustered(seed=1, n_docs=100), unit=4, iterations=0).shape == (100,)
    with pytest.raises(ValueError, match="unit"):
        bp_order(empty_rows, unit=0)
    with pytest.raises(ValueError, match="permutation"):
        log_gap_cost(empty_rows, np.zeros(10, dtype=np.int64))
