"""The inverted-index kernels against their plain reference, on random sparse inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sparsebench.kernels.inverted import (
    build_index, from_csr, search_blockmax, search_exhaustive, search_reference,
)


def random_collection(seed: int, n_docs: int, n_terms: int, terms_per_doc: int, quantized: bool):
    rng = np.random.default_rng(seed)
    # Zipf-like term popularity, as in text: a few terms in many documents, most in few.
    p = 1.0 / np.arange(1, n_terms + 1) ** 0.8
    p /= p.sum()
    docs = []
    for _ in range(n_docs):
        terms = rng.choice(n_terms, size=rng.integers(1, terms_per_doc + 1), replace=False, p=p)
        # quantized weights (as impact-scored indexes store them) make exact ties common
        weights = rng.integers(1, 8, size=len(terms)) / 4 if quantized else rng.gamma(2.0, 1.0, size=len(terms))
        docs.append(dict(zip(terms.tolist(), weights.tolist())))
    queries = []
    for _ in range(30):
        terms = rng.choice(n_terms, size=rng.integers(1, 12), replace=False, p=p)
        weights = rng.integers(1, 4, size=len(terms)) / 2 if quantized else rng.random(len(terms)) + 0.05
        queries.append(dict(zip(terms.tolist(), weights.tolist())))
    return docs, queries


@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("block_size", [1, 7, 64])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_fast_paths_equal_the_reference(quantized: bool, block_size: int, k: int) -> None:
    docs, queries = random_collection(seed=block_size * 1000 + k, n_docs=1500, n_terms=400, terms_per_doc=30,
                                      quantized=quantized)
    index = build_index(docs, 400, block_size)
    for q in queries:
        expected = search_reference(index, q, k)
        for got in (search_exhaustive(index, q, k), search_blockmax(index, q, k)):
            assert [d for d, _ in got] == [d for d, _ in expected]  # identical ids, ties by id
            assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=0, atol=1e-5)


def test_approximate_mode_returns_a_subset_of_good_documents_and_never_more_than_k() -> None:
    docs, queries = random_collection(seed=3, n_docs=3000, n_terms=300, terms_per_doc=20, quantized=False)
    index = build_index(docs, 300, 32)
    recalls = []
    for q in queries:
        exact = {d for d, _ in search_reference(index, q, 10)}
        approx = search_blockmax(index, q, 10, alpha=0.5)
        assert len(approx) <= 10
        scores = [s for _, s in approx]
        assert scores == sorted(scores, reverse=True)
        recalls.append(len(exact & {d for d, _ in approx}) / len(exact))
    assert 0.0 < np.mean(recalls) <= 1.0


def test_edge_cases() -> None:
    index = build_index([{0: 1.0}, {}, {1: 2.0, 0: 0.5}], n_terms=3, block_size=2)
    assert search_reference(index, {0: 1.0}, 5) == [(0, 1.0), (2, 0.5)]
    for search in (search_exhaustive, search_blockmax):
        assert search(index, {0: 1.0}, 5) == [(0, 1.0), (2, 0.5)]
        assert search(index, {2: 1.0}, 5) == []  # a term no document has
        assert search(index, {99: 1.0, 1: -1.0}, 5) == []  # outside the vocabulary; a non-positive weight
        assert search(index, {0: 1.0}, 0) == []
    with pytest.raises(ValueError, match="alpha"):
        search_blockmax(index, {0: 1.0}, 5, alpha=0.0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build_index([{5: 1.0}], n_terms=3)


def test_from_csr_equals_build_index() -> None:
    import scipy.sparse as sp

    docs, queries = random_collection(seed=9, n_docs=200, n_terms=50, terms_per_doc=10, quantized=False)
    rows = [d for d, terms in enumerate(docs) for _ in terms]
    cols = [t for terms in docs for t in terms]
    vals = [w for terms in docs for w in terms.values()]
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(200, 50))
    a, b = build_index(docs, 50, 16), from_csr(matrix, 16)
    for field in ("indptr", "docs", "weights", "bptr", "bblock", "bmax", "bstart"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.nbytes() == b.nbytes() > 0
