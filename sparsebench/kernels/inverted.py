"""Sparse dot-product top-k over an inverted index: a plain reference, an exhaustive fast path
and block-max pruning (Mallia et al. 2024, "Faster Learned Sparse Retrieval with Block-Max
Pruning"), all three over the same postings.

BM25 impacts and learned term weights are the same problem: a document's score is the sum of
query weight x document weight over the terms they share. The index is term-major: for each term,
its postings (document ids ascending, weights). Block-max splits the documents into fixed-size
blocks of consecutive ids and keeps, for every term, the largest weight it has in each block it
occurs in. A query's upper bound for a block is the sum of its weights times those maxima; blocks
are scored in decreasing upper-bound order, and scoring stops at the first block whose bound
cannot beat the k-th best score found (`safe`: exactly the exhaustive top-k) or cannot beat it by
the factor `1 / alpha` (approximate: alpha < 1 stops earlier).

Order of the result: score descending, then document id ascending. Scores are accumulated in
float64, term by term in query order, in all three paths, so they agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BLOCK = 64


@dataclass(frozen=True)
class InvertedIndex:
    n_docs: int
    indptr: np.ndarray  # int64 [n_terms + 1]: postings of term t are [indptr[t], indptr[t + 1])
    docs: np.ndarray  # int32 [nnz], ascending within a term
    weights: np.ndarray  # float32 [nnz], > 0
    block_size: int
    # Block maxima, term-major like the postings: for term t, entries [bptr[t], bptr[t + 1]) give
    # the blocks it occurs in (ascending), its maximum weight there and where its postings in
    # that block start (they end where the next entry's start, or the term's postings, end).
    bptr: np.ndarray  # int64 [n_terms + 1]
    bblock: np.ndarray  # int32 [n_entries]
    bmax: np.ndarray  # float32 [n_entries]
    bstart: np.ndarray  # int64 [n_entries]

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_blocks(self) -> int:
        return (self.n_docs + self.block_size - 1) // self.block_size

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.docs, self.weights, self.bptr, self.bblock, self.bmax, self.bstart))


def build_index(doc_terms: list[dict[int, float]], n_terms: int, block_size: int = DEFAULT_BLOCK) -> InvertedIndex:
    """From one {term id: weight} per document (weights <= 0 are dropped)."""
    if block_size < 1:
        raise ValueError(f"block_size={block_size}: must be at least 1")
    postings: list[list[tuple[int, float]]] = [[] for _ in range(n_terms)]
    for d, terms in enumerate(doc_terms):
        for t, w in terms.items():
            if not 0 <= t < n_terms:
                raise ValueError(f"document {d}: term id {t} outside the vocabulary of {n_terms}")
            if w > 0:
                postings[t].append((d, float(w)))
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(p) for p in postings])
    docs = np.fromiter((d for p in postings for d, _ in p), dtype=np.int32, count=int(indptr[-1]))
    weights = np.fromiter((w for p in postings for _, w in p), dtype=np.float32, count=int(indptr[-1]))
    return _with_block_maxima(len(doc_terms), indptr, docs, weights, block_size)


def from_csr(matrix: object, block_size: int = DEFAULT_BLOCK) -> InvertedIndex:
    """From a scipy sparse documents x terms matrix (zeros and negative weights dropped)."""
    import scipy.sparse as sp

    csc = sp.csc_matrix(matrix, dtype=np.float32, copy=True)
    csc.data[csc.data < 0] = 0
    csc.eliminate_zeros()
    csc.sort_indices()
    return _with_block_maxima(csc.shape[0], csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                              csc.data.astype(np.float32), block_size)


def from_postings(n_docs: int, indptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                  block_size: int = DEFAULT_BLOCK) -> InvertedIndex:
    """From term-major postings (a CSC documents x terms matrix's arrays), as bm25s stores its
    precomputed BM25 impacts; ids within a term are sorted here if they are not."""
    import scipy.sparse as sp

    return from_csr(sp.csc_matrix((weights, docs, indptr), shape=(n_docs, len(indptr) - 1)), block_size)


def _with_block_maxima(n_docs: int, indptr: np.ndarray, docs: np.ndarray, weights: np.ndarray, block_size: int) -> InvertedIndex:
    blocks = docs // block_size
    # A new entry wherever the block changes within a term, and at every term's first posting.
    starts = np.ones(len(docs), dtype=bool)
    if len(docs):
        starts[1:] = blocks[1:] != blocks[:-1]
        starts[indptr[1:-1][indptr[1:-1] < len(docs)]] = True
    bstart = np.flatnonzero(starts).astype(np.int64)
    bblock = blocks[bstart].astype(np.int32)
    bmax = np.maximum.reduceat(weights, bstart).astype(np.float32) if len(bstart) else np.zeros(0, np.float32)
    bptr = np.searchsorted(bstart, indptr).astype(np.int64)
    return InvertedIndex(n_docs, indptr, docs, weights, block_size, bptr, bblock, bmax, bstart)


# --- the reference: plain Python, the definition the fast paths are tested against -----------


def search_reference(index: InvertedIndex, query: dict[int, float], k: int) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for t, qw in query.items():
        if qw <= 0 or not 0 <= t < index.n_terms:
            continue
        for p in range(int(index.indptr[t]), int(index.indptr[t + 1])):
            d = int(index.docs[p])
            scores[d] = scores.get(d, 0.0) + float(qw) * float(index.weights[p])
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]


# --- the fast paths ----------------------------------------------------------------------------


def _query_arrays(index: InvertedIndex, query: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    items = [(t, w) for t, w in query.items() if w > 0 and 0 <= t < index.n_terms]
    return np.array([t for t, _ in items], dtype=np.int64), np.array([w for _, w in items], dtype=np.float64)


def search_exhaustive(index: InvertedIndex, query: dict[int, float], k: int) -> list[tuple[int, float]]:
    """Every posting of every query term into one score array, then the top k."""
    if k <= 0:
        return []
    terms, qw = _query_arrays(index, query)
    scores = _jit()[0](index.indptr, index.docs, index.weights, index.n_docs, terms, qw)
    cand = np.flatnonzero(scores > 0)
    if len(cand) > k:
        # The k-th best score, then every candidate at least that good: exact ties at the
        # boundary are decided by id below, not by argpartition's arbitrary choice.
        kth = np.partition(scores[cand], len(cand) - k)[len(cand) - k]
        cand = cand[scores[cand] >= kth]
    return _ordered(cand, scores[cand], k)


def search_blockmax(index: InvertedIndex, query: dict[int, float], k: int, alpha: float = 1.0) -> list[tuple[int, float]]:
    """Block-max pruned top k; alpha=1 is safe (exactly the exhaustive top k), alpha < 1 stops
    scoring when a block's bound times alpha cannot beat the k-th score (faster, may miss)."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha}: must be in (0, 1]; 1 is the safe mode")
    if k <= 0:
        return []
    terms, qw = _query_arrays(index, query)
    ids, scores, n = _jit()[1](index.indptr, index.docs, index.weights, index.bptr, index.bblock, index.bmax, index.bstart,
                               index.n_docs, index.block_size, terms, qw, k, alpha)
    return _ordered(ids[:n], scores[:n], k)


def _ordered(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    order = np.lexsort((ids, -scores))[:k]  # score descending, then id ascending
    return list(zip(ids[order].tolist(), scores[order].tolist()))


_COMPILED: tuple | None = None


def _jit() -> tuple:
    """numba-compiled kernels, compiled on first use (numba is imported only here)."""
    global _COMPILED
    if _COMPILED is None:
        from ._inverted_numba import blockmax_topk, exhaustive_topk

        _COMPILED = (exhaustive_topk, blockmax_topk)
    return _COMPILED
