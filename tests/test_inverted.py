"""The inverted-index kernels against their plain reference, on random sparse inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sparsebench.kernels.inverted import (
    build_index, from_csr, query_batch, search_batch, search_batch_arrays, search_blockmax, search_exhaustive,
    search_reference,
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
@pytest.mark.parametrize("block_size", [1, 7, 64, 256])  # 256: a partial last block
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


# --- the batch entry points and their thread pool ----------------------------------------------


@pytest.mark.parametrize("pruning, alpha", [("exhaustive", 1.0), ("blockmax", 1.0), ("blockmax", 0.7)])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_batch_equals_the_single_query_paths(pruning: str, alpha: float, n_threads: int) -> None:
    docs, queries = random_collection(seed=11, n_docs=2000, n_terms=300, terms_per_doc=25, quantized=True)
    index = build_index(docs, 300, 16)
    got = search_batch(index, queries, 10, pruning, alpha, n_threads)
    single = [search_exhaustive(index, q, 10) if pruning == "exhaustive" else search_blockmax(index, q, 10, alpha)
              for q in queries]
    assert got == single  # the same ids and the same float64 scores, whatever the thread count
    if alpha == 1.0:
        for q, hits in zip(queries, got):
            expected = search_reference(index, q, 10)
            assert [d for d, _ in hits] == [d for d, _ in expected]
            assert np.allclose([s for _, s in hits], [s for _, s in expected], rtol=0, atol=1e-5)


def test_sparse_and_dense_queries_take_both_exhaustive_paths() -> None:
    # One posting list of 3 documents in 4000 (the touched-list path), one of every document
    # (the dense scan), and both together.
    docs = [{0: 1.0 + (d % 7) / 8, **({1: 2.0 + d / 4000} if d in (5, 1999, 3998) else {})} for d in range(4000)]
    index = build_index(docs, 2, 64)
    for query in ({1: 1.0}, {0: 1.0}, {0: 0.5, 1: 1.0}):
        for k in (1, 2, 10, 5000):
            expected = search_reference(index, query, k)
            for got in (search_exhaustive(index, query, k), search_blockmax(index, query, k)):
                assert [d for d, _ in got] == [d for d, _ in expected]
                assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=0, atol=1e-9)


@pytest.mark.parametrize("block_size", [16, 128])  # block-max collects blocks shorter / longer than a span
@pytest.mark.parametrize("order", ["identity", "reversed", "random"])
def test_dense_scan_spans_ties_and_tail_equal_the_reference(order: str, block_size: int) -> None:
    # The dense selection tests 64 accumulators at a time and scans a span one document at a
    # time only when one reaches the k-th score. 5 full spans and a tail of 37; few distinct
    # weights (many exact ties); the best documents at span edges and in the tail.
    n = 64 * 5 + 37
    docs = [{0: 0.25 * (1 + d % 3)} for d in range(n)]
    for d in (0, 63, 64, 127, 128, 300, n - 37, n - 2, n - 1):
        docs[d][1] = 2.0
    plain = build_index(docs, 2, block_size)
    perm = {"identity": np.arange(n), "reversed": np.arange(n - 1, -1, -1),
            "random": np.random.default_rng(2).permutation(n)}[order]
    index = permuted(plain, perm)
    for query in ({0: 1.0}, {0: 1.0, 1: 0.5}, {1: 1.0, 0: 2.0}):
        for k in (1, 9, 10, 64, 65, 200, n):
            expected = search_reference(plain, query, k)
            for pruning in ("exhaustive", "blockmax"):
                got = search_batch(index, [query], k, pruning)[0]
                assert [d for d, _ in got] == [d for d, _ in expected], (pruning, k)
                assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=0, atol=1e-9)


def test_batch_arrays_are_padded_and_capped_at_the_corpus_size() -> None:
    index = build_index([{0: 1.0}, {}, {1: 2.0, 0: 0.5}], n_terms=3, block_size=2)
    batch = query_batch(index, [{0: 1.0}, {2: 1.0}, {}, {99: 1.0, 1: -1.0, 0: 2.0}])
    assert batch.indptr.tolist() == [0, 1, 2, 2, 3] and batch.terms.tolist() == [0, 2, 0]
    for pruning in ("exhaustive", "blockmax"):
        ids, scores, counts = search_batch_arrays(index, batch, 10, pruning)
        assert ids.shape == scores.shape == (4, 3)  # k capped at 3 documents
        assert counts.tolist() == [2, 0, 0, 2]
        assert ids.tolist() == [[0, 2, -1], [-1, -1, -1], [-1, -1, -1], [0, 2, -1]]
        assert scores.tolist() == [[1.0, 0.5, 0.0], [0.0] * 3, [0.0] * 3, [2.0, 1.0, 0.0]]
        empty = search_batch_arrays(index, query_batch(index, []), 10, pruning, n_threads=2)
        assert [a.shape for a in empty] == [(0, 3), (0, 3), (0,)]
    assert search_batch(index, [{0: 1.0}], 0) == [[]]


def test_batches_are_checked_before_they_reach_the_kernels() -> None:
    from sparsebench.kernels.inverted import QueryBatch

    index = build_index([{0: 1.0}, {1: 2.0}], n_terms=2, block_size=2)
    i64, f64 = (lambda v: np.array(v, dtype=np.int64)), (lambda v: np.array(v, dtype=np.float64))
    with pytest.raises(ValueError, match="term ids must lie in"):
        search_batch_arrays(index, QueryBatch(i64([0, 1]), i64([2]), f64([1.0])), 5)
    with pytest.raises(ValueError, match="weights must be positive"):
        search_batch_arrays(index, QueryBatch(i64([0, 1]), i64([1]), f64([0.0])), 5)
    with pytest.raises(ValueError, match="indptr"):
        search_batch_arrays(index, QueryBatch(i64([0, 2]), i64([1]), f64([1.0])), 5)
    with pytest.raises(ValueError, match="n_threads"):
        search_batch(index, [{0: 1.0}], 5, n_threads=0)
    with pytest.raises(ValueError, match="pruning"):
        search_batch(index, [{0: 1.0}], 5, pruning="wand")  # type: ignore[arg-type]


def test_concurrent_callers_get_their_own_answers() -> None:
    # Callers on several threads share the index (and the pool) but never scratch space.
    from concurrent.futures import ThreadPoolExecutor

    docs, queries = random_collection(seed=5, n_docs=1500, n_terms=200, terms_per_doc=20, quantized=False)
    index = build_index(docs, 200, 32)
    expected = {p: search_batch(index, queries, 10, p) for p in ("exhaustive", "blockmax")}
    jobs = [(p, t) for p in ("exhaustive", "blockmax") for t in (1, 2)] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: (job[0], search_batch(index, queries, 10, job[0], n_threads=job[1])), jobs))
    assert all(got == expected[p] for p, got in results)


@pytest.mark.parametrize("n_queries", [1, 3, 40])  # the few-query Python path and the compiled one
def test_query_batch_from_tokens_counts_like_a_counter(n_queries: int) -> None:
    from collections import Counter

    from sparsebench.kernels.inverted import query_batch_from_tokens

    rng = np.random.default_rng(n_queries)
    index = build_index([{t: 1.0} for t in range(50)], n_terms=50)
    tokens = [rng.integers(-3, 60, size=rng.integers(0, 12)).tolist() for _ in range(n_queries)]
    got = query_batch_from_tokens(index, tokens)
    want = query_batch(index, [{t: float(c) for t, c in Counter(ids).items()} for ids in tokens])
    for field in ("indptr", "terms", "weights"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    assert got.checked_below == want.checked_below == 50
    assert search_batch_arrays(index, got, 5)[2].tolist() == search_batch_arrays(index, want, 5)[2].tolist()


# --- reordered indexes: documents stored by position, answers in original ids -----------------


def permuted(index, order: np.ndarray):
    """The same collection stored in `order` (position -> original id), built by hand."""
    import scipy.sparse as sp

    from sparsebench.kernels.inverted import _with_block_maxima

    csc = sp.csc_matrix((index.weights, index.docs, index.indptr), shape=(index.n_docs, index.n_terms))
    csc = sp.csc_matrix(sp.csr_matrix(csc)[order])
    csc.sort_indices()
    return _with_block_maxima(index.n_docs, csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                              csc.data.astype(np.float32), index.block_size, order.astype(np.int32))


@pytest.mark.parametrize("quantized", [False, True])
@pytest.mark.parametrize("block_size", [1, 8, 64])
@pytest.mark.parametrize("reorder", ["bp", "random"])
def test_reordered_index_answers_as_the_original(quantized: bool, block_size: int, reorder: str) -> None:
    # Integer-valued weights make many exact ties, which must still break by original id.
    docs, queries = random_collection(seed=block_size + 7, n_docs=1200, n_terms=200, terms_per_doc=15,
                                      quantized=quantized)
    plain = build_index(docs, 200, block_size)
    if reorder == "bp":
        index = build_index(docs, 200, block_size, reorder="bp")
    else:
        index = permuted(plain, np.random.default_rng(1).permutation(len(docs)))
    assert not np.array_equal(index.ext, np.arange(len(docs)))
    assert sorted(index.ext.tolist()) == list(range(len(docs)))
    for q in queries:
        for k in (1, 10, 50):
            expected = search_reference(plain, q, k)
            assert search_reference(index, q, k) == expected  # the reference is in original ids
            for got in (search_exhaustive(index, q, k), search_blockmax(index, q, k)):
                assert [d for d, _ in got] == [d for d, _ in expected]
                assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=0, atol=1e-5)
    for pruning in ("exhaustive", "blockmax"):  # the batch path, dense scans included
        assert search_batch(index, queries, 10, pruning) == search_batch(plain, queries, 10, pruning)


def test_dense_scan_breaks_ties_by_original_id_in_a_reordered_index() -> None:
    # Every document matches with the same score: the top k are the k smallest original ids,
    # though they sit at the end of the stored order.
    docs = [{0: 1.0} for _ in range(300)]
    plain = build_index(docs, 1, 16)
    index = permuted(plain, np.arange(299, -1, -1))
    for search in (search_exhaustive, search_blockmax):
        assert search(index, {0: 1.0}, 5) == [(d, 1.0) for d in range(5)]


def test_identity_order_is_the_plain_index_and_round_trips() -> None:
    from sparsebench.kernels.inverted import ARRAY_FIELDS, from_arrays

    docs, queries = random_collection(seed=4, n_docs=500, n_terms=80, terms_per_doc=10, quantized=True)
    plain = build_index(docs, 80, 16)
    same = permuted(plain, np.arange(len(docs)))
    for field in ARRAY_FIELDS:
        assert np.array_equal(getattr(plain, field), getattr(same, field)), field
    assert plain.ext.dtype == np.int32 and np.array_equal(plain.ext, np.arange(len(docs)))
    assert plain.nbytes() == sum(a.nbytes for a in plain.arrays().values())
    bp = build_index(docs, 80, 16, reorder="bp")
    back = from_arrays(dict(np.load(_saved(bp))), bp.n_docs, bp.block_size)
    assert search_batch(back, queries, 10) == search_batch(plain, queries, 10)
    with pytest.raises(ValueError, match="reorder"):
        build_index(docs, 80, 16, reorder="graph")  # type: ignore[arg-type]


def _saved(index):
    import io

    buf = io.BytesIO()
    np.savez(buf, **index.arrays())
    buf.seek(0)
    return buf
