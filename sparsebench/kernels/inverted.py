"""Sparse dot-product top-k over an inverted index: a plain reference, an exhaustive fast path
and block-max pruning (Mallia et al. 2024, "Faster Learned Sparse Retrieval with Block-Max
Pruning"), all three over the same postings.

BM25 impacts and learned term weights are the same problem: a document's score is the sum of
query weight x document weight over the terms they share. The index is term-major: for each term,
its postings (document ids ascending, weights). Block-max splits the documents into fixed-size
blocks of consecutive ids and keeps, for every term, the largest weight it has in each block it
occurs in. A query's upper bound for a block is the sum of its weights times those maxima. The
blocks with the largest bounds are scored first, which gives a k-th best score; then only the
blocks whose bound can still beat it are scored (`safe`, alpha = 1: exactly the exhaustive top
k) or can beat it by the factor `1 / alpha` (approximate: alpha < 1 skips more).

Documents may be stored in another order than their ids (`reorder="bp"`: recursive graph
bisection, `sparsebench.kernels.reorder`, which packs documents that share terms into the same
blocks and so tightens their bounds). The postings then hold positions, `ext[position]` is the
document's original id, and every path returns and breaks ties by original ids: a reordered
index answers exactly as the one in id order.

Order of the result: score descending, then document id ascending. Scores are accumulated in
float64, term by term in query order, in all three paths, so they agree exactly.

The fast paths answer a batch of queries per call (`search_batch`, `search_batch_arrays`: one
compiled call for the whole batch, optionally split over threads, as the kernels release the
GIL); `search_exhaustive` and `search_blockmax` are the one-query forms.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np

DEFAULT_BLOCK = 256  # the methods' default: the fastest safe block-max for BM25 on the faq corpora (benchmarks/README.md)

Reorder = Literal["none", "bp"]


@dataclass(frozen=True)
class InvertedIndex:
    n_docs: int
    indptr: np.ndarray  # int64 [n_terms + 1]: postings of term t are [indptr[t], indptr[t + 1])
    docs: np.ndarray  # int32 [nnz]: positions, ascending within a term (ext maps them to ids)
    weights: np.ndarray  # float32 [nnz], > 0
    block_size: int
    # Block maxima, term-major like the postings: for term t, entries [bptr[t], bptr[t + 1]) give
    # the blocks it occurs in (ascending), its maximum weight there and where its postings in
    # that block start (they end where the next entry's start, or the term's postings, end).
    bptr: np.ndarray  # int64 [n_terms + 1]
    bblock: np.ndarray  # int32 [n_entries]
    bmax: np.ndarray  # float32 [n_entries]
    bstart: np.ndarray  # int64 [n_entries]
    ext: np.ndarray  # int32 [n_docs]: position -> original document id (arange: not reordered)

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_blocks(self) -> int:
        return (self.n_docs + self.block_size - 1) // self.block_size

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.docs, self.weights, self.bptr, self.bblock, self.bmax,
                                      self.bstart, self.ext))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, by field name (what an index file stores; `from_arrays` reads it back)."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}


ARRAY_FIELDS = ("indptr", "docs", "weights", "bptr", "bblock", "bmax", "bstart", "ext")


def from_arrays(arrays: Mapping[str, np.ndarray], n_docs: int, block_size: int) -> InvertedIndex:
    """The index `InvertedIndex.arrays` gave (as saved in an .npz file)."""
    return InvertedIndex(n_docs, *(np.asarray(arrays[name]) for name in ARRAY_FIELDS[:3]), block_size,
                         *(np.asarray(arrays[name]) for name in ARRAY_FIELDS[3:]))


def build_index(doc_terms: list[dict[int, float]], n_terms: int, block_size: int = DEFAULT_BLOCK,
                reorder: Reorder = "none") -> InvertedIndex:
    """From one {term id: weight} per document (weights <= 0 are dropped)."""
    _check_build(block_size, reorder)
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
    if reorder == "none":
        return _with_block_maxima(len(doc_terms), indptr, docs, weights, block_size, _identity(len(doc_terms)))
    import scipy.sparse as sp

    return from_csr(sp.csc_matrix((weights, docs, indptr), shape=(len(doc_terms), n_terms)), block_size, reorder)


def from_csr(matrix: object, block_size: int = DEFAULT_BLOCK, reorder: Reorder = "none") -> InvertedIndex:
    """From a scipy sparse documents x terms matrix (zeros and negative weights dropped);
    `reorder="bp"` stores the documents in a recursive graph bisection order."""
    import scipy.sparse as sp

    _check_build(block_size, reorder)
    csc = sp.csc_matrix(matrix, dtype=np.float32, copy=True)
    csc.data[csc.data < 0] = 0
    csc.eliminate_zeros()
    ext = _identity(csc.shape[0])
    if reorder == "bp":
        from .reorder import bp_order

        # Split points on block boundaries: every block is one leaf of the bisection.
        ext = bp_order(csc, unit=block_size).astype(np.int32)
        csc = sp.csc_matrix(sp.csr_matrix(csc)[ext])
    csc.sort_indices()
    return _with_block_maxima(csc.shape[0], csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                              csc.data.astype(np.float32), block_size, ext)


def from_postings(n_docs: int, indptr: np.ndarray, docs: np.ndarray, weights: np.ndarray,
                  block_size: int = DEFAULT_BLOCK, reorder: Reorder = "none") -> InvertedIndex:
    """From term-major postings (a CSC documents x terms matrix's arrays), as bm25s stores its
    precomputed BM25 impacts; ids within a term are sorted here if they are not."""
    import scipy.sparse as sp

    return from_csr(sp.csc_matrix((weights, docs, indptr), shape=(n_docs, len(indptr) - 1)), block_size, reorder)


def _check_build(block_size: int, reorder: str) -> None:
    if block_size < 1:
        raise ValueError(f"block_size={block_size}: must be at least 1")
    if reorder not in ("none", "bp"):
        raise ValueError(f"reorder={reorder!r}: must be 'none' or 'bp'")


def _identity(n_docs: int) -> np.ndarray:
    return np.arange(n_docs, dtype=np.int32)


def _with_block_maxima(n_docs: int, indptr: np.ndarray, docs: np.ndarray, weights: np.ndarray, block_size: int,
                       ext: np.ndarray) -> InvertedIndex:
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
    return InvertedIndex(n_docs, indptr, docs, weights, block_size, bptr, bblock, bmax, bstart, ext)


# --- the reference: plain Python, the definition the fast paths are tested against -----------


def search_reference(index: InvertedIndex, query: dict[int, float], k: int) -> list[tuple[int, float]]:
    """In original document ids, whatever order the index stores the documents in."""
    scores: dict[int, float] = {}
    for t, qw in query.items():
        if qw <= 0 or not 0 <= t < index.n_terms:
            continue
        for p in range(int(index.indptr[t]), int(index.indptr[t + 1])):
            d = int(index.ext[index.docs[p]])
            scores[d] = scores.get(d, 0.0) + float(qw) * float(index.weights[p])
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))[:k]


# --- the fast paths ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryBatch:
    """Queries as CSR arrays: query q's terms are terms[indptr[q]:indptr[q + 1]], in its order,
    with their weights; only positive weights of terms in the index's vocabulary are kept."""

    indptr: np.ndarray  # int64 [n_queries + 1]
    terms: np.ndarray  # int64 [nnz]
    weights: np.ndarray  # float64 [nnz]
    # Set by the builders below: every term id is below this and the arrays have the kernels'
    # dtypes, so a search need not check them again (0: unchecked, as for a batch built by hand).
    checked_below: int = 0

    @property
    def n_queries(self) -> int:
        return len(self.indptr) - 1


def query_batch(index: InvertedIndex, queries: Sequence[Mapping[int, float]]) -> QueryBatch:
    """The batch form of {term id: weight} queries (terms in each dict's order, as the scores
    are summed in that order)."""
    terms: list[int] = []
    weights: list[float] = []
    indptr = np.zeros(len(queries) + 1, dtype=np.int64)
    n_terms = index.n_terms
    for q, query in enumerate(queries):
        for t, w in query.items():
            if w > 0 and 0 <= t < n_terms:
                terms.append(t)
                weights.append(w)
        indptr[q + 1] = len(terms)
    return QueryBatch(indptr, np.array(terms, dtype=np.int64), np.array(weights, dtype=np.float64), n_terms)


def query_batch_from_tokens(index: InvertedIndex, tokens: Sequence[Sequence[int]]) -> QueryBatch:
    """The batch form of token-id lists (what bm25s's tokenizer returns): each distinct term
    once, in order of first occurrence, weighted by its count, ids outside the vocabulary
    dropped; the same queries as {t: count} dicts built with collections.Counter, without a
    Python dict per query."""
    n_terms = index.n_terms
    if len(tokens) <= 4:  # a few queries: plain Python is cheaper than preparing the compiled call
        counts: list[dict[int, float]] = []
        for ids in tokens:
            c: dict[int, float] = {}
            for t in ids:
                if 0 <= t < n_terms:
                    c[t] = c.get(t, 0.0) + 1.0
            counts.append(c)
        return query_batch(index, counts)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    ptr = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    flat = np.fromiter(chain.from_iterable(tokens), dtype=np.int64, count=int(ptr[-1]))
    qptr, terms, weights = _count_tokens()(ptr, flat, n_terms)
    return QueryBatch(qptr, terms, weights, n_terms)


Pruning = Literal["exhaustive", "blockmax"]


def search_batch_arrays(index: InvertedIndex, batch: QueryBatch, k: int, pruning: Pruning = "blockmax",
                        alpha: float = 1.0, n_threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top k of every query in one call: (ids int64 [n_queries, k'], scores float64 [n_queries,
    k'], counts int64 [n_queries]) with k' = min(k, n_docs); row q's first counts[q] entries are
    its hits, best first (score descending, then id ascending); the rest are padding (-1, 0).

    `n_threads` > 1 splits the queries into chunks answered by that many threads (the kernels
    release the GIL); each query's result does not depend on the thread count."""
    _check(pruning, alpha)
    if n_threads < 1:
        raise ValueError(f"n_threads={n_threads}: must be at least 1")
    batch = _checked(index, batch)
    nq = batch.n_queries
    k = max(0, min(int(k), index.n_docs))
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float64)
    counts = np.zeros(nq, dtype=np.int64)
    if k == 0 or nq == 0:
        return ids, scores, counts
    if n_threads == 1 or nq == 1:
        _run(index, batch, k, pruning, alpha, 0, nq, ids, scores, counts, _local_scratch(index, pruning))
        return ids, scores, counts
    # Several chunks per thread even out queries of very different cost.
    bounds = np.linspace(0, nq, min(nq, 4 * n_threads) + 1).astype(np.int64)
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    pool = _pool(n_threads)
    scratch_pool = [_new_scratch(index, pruning) for _ in range(n_threads)]
    free = list(range(n_threads))
    lock = threading.Lock()

    def answer(chunk: tuple[int, int]) -> None:
        with lock:
            slot = free.pop()
        try:
            _run(index, batch, k, pruning, alpha, chunk[0], chunk[1], ids, scores, counts, scratch_pool[slot])
        finally:
            with lock:
                free.append(slot)

    for _ in pool.map(answer, chunks):
        pass
    return ids, scores, counts


def search_batch(index: InvertedIndex, queries: Sequence[Mapping[int, float]], k: int, pruning: Pruning = "blockmax",
                 alpha: float = 1.0, n_threads: int = 1) -> list[list[tuple[int, float]]]:
    """`search_exhaustive` / `search_blockmax` over many queries in one call (see
    `search_batch_arrays`); the same hits, query by query, as the single-query functions."""
    ids, scores, counts = search_batch_arrays(index, query_batch(index, queries), k, pruning, alpha, n_threads)
    id_rows, score_rows = ids.tolist(), scores.tolist()
    return [list(zip(d[:n], s[:n])) for d, s, n in zip(id_rows, score_rows, counts.tolist())]


def search_exhaustive(index: InvertedIndex, query: dict[int, float], k: int) -> list[tuple[int, float]]:
    """Every posting of every query term into one accumulator, then the top k of the documents
    touched."""
    return _single(index, query, k, "exhaustive", 1.0)


def search_blockmax(index: InvertedIndex, query: dict[int, float], k: int, alpha: float = 1.0) -> list[tuple[int, float]]:
    """Block-max pruned top k; alpha=1 is safe (exactly the exhaustive top k), alpha < 1 stops
    scoring when a block's bound times alpha cannot beat the k-th score (faster, may miss)."""
    _check("blockmax", alpha)
    return _single(index, query, k, "blockmax", alpha)


def _single(index: InvertedIndex, query: Mapping[int, float], k: int, pruning: Pruning, alpha: float) -> list[tuple[int, float]]:
    if k <= 0:
        return []
    ids, scores, counts = search_batch_arrays(index, query_batch(index, [query]), k, pruning, alpha)
    n = int(counts[0])
    return list(zip(ids[0, :n].tolist(), scores[0, :n].tolist()))


def _checked(index: InvertedIndex, batch: QueryBatch) -> QueryBatch:
    """The batch with the kernels' dtypes, or a ValueError: the compiled kernels do not check
    bounds, so a term outside the vocabulary would read outside the index."""
    if 0 < batch.checked_below <= index.n_terms:
        return batch
    indptr = np.ascontiguousarray(batch.indptr, dtype=np.int64)
    terms = np.ascontiguousarray(batch.terms, dtype=np.int64)
    weights = np.ascontiguousarray(batch.weights, dtype=np.float64)
    if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0 or indptr[-1] != len(terms) or np.any(np.diff(indptr) < 0):
        raise ValueError("query batch: indptr must rise from 0 to the number of terms")
    if len(terms) != len(weights):
        raise ValueError(f"query batch: {len(terms)} terms but {len(weights)} weights")
    if len(terms) and (terms.min() < 0 or terms.max() >= index.n_terms):
        raise ValueError(f"query batch: term ids must lie in [0, {index.n_terms}) (query_batch drops the others)")
    if len(weights) and not np.all(weights > 0):
        raise ValueError("query batch: weights must be positive (query_batch drops the others)")
    return QueryBatch(indptr, terms, weights, index.n_terms)


def _check(pruning: str, alpha: float) -> None:
    if pruning not in ("exhaustive", "blockmax"):
        raise ValueError(f"pruning={pruning!r}: must be 'exhaustive' or 'blockmax'")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha}: must be in (0, 1]; 1 is the safe mode")


# Scratch arrays the kernels keep all zero between calls: one set per thread (a thread runs one
# kernel at a time) and index shape, so a single query allocates nothing proportional to the corpus.
_Scratch = tuple[np.ndarray, ...]
_TLS = threading.local()


def _new_scratch(index: InvertedIndex, pruning: Pruning) -> _Scratch:
    if pruning == "exhaustive":
        return np.zeros(index.n_docs, dtype=np.float64), np.zeros(index.n_docs, dtype=np.int32)
    return (np.zeros(index.n_blocks, dtype=np.float64), np.zeros(index.n_blocks, dtype=np.uint8),
            np.zeros(index.n_blocks, dtype=np.int64), np.zeros(index.n_docs, dtype=np.float64),
            np.zeros(index.n_blocks + 1, dtype=np.int64), np.zeros(index.n_blocks + 1, dtype=np.int64))


def _local_scratch(index: InvertedIndex, pruning: Pruning) -> _Scratch:
    cache = getattr(_TLS, "scratch", None)
    if cache is None:
        cache = _TLS.scratch = {}
    key = (pruning, index.n_docs, index.block_size)
    if key not in cache:
        if len(cache) >= 8:  # a long-lived thread serving many indexes keeps a few
            cache.clear()
        cache[key] = _new_scratch(index, pruning)
    return cache[key]


def _run(index: InvertedIndex, batch: QueryBatch, k: int, pruning: Pruning, alpha: float, lo: int, hi: int,
         ids: np.ndarray, scores: np.ndarray, counts: np.ndarray, scratch: _Scratch) -> None:
    exhaustive, blockmax = _jit()
    # The kernels cannot allocate (compiled without numba's runtime): the top-k heap comes from here.
    heap = np.empty(k, dtype=np.float64), np.empty(k, dtype=np.int64)
    if pruning == "exhaustive":
        exhaustive(index.indptr, index.docs, index.weights, index.ext, batch.indptr, batch.terms, batch.weights, k, lo, hi,
                   *scratch, *heap, ids, scores, counts)
    else:
        # Seed blocks enough to hold k documents twice over, and at least 2. More seeds give a
        # k-th score closer to the final one but cost their own scoring and heap entries: on the
        # faq corpora (BM25, k = 10) 2 seeds beat 1, 4, 8 and 16 at every block size tried.
        seeds = min(index.n_blocks, max(2, 2 * ((k + index.block_size - 1) // index.block_size)))
        blockmax(index.indptr, index.docs, index.weights, index.bptr, index.bblock, index.bmax, index.bstart,
                 index.ext, index.n_docs, index.block_size, batch.indptr, batch.terms, batch.weights, k, float(alpha), lo, hi,
                 *scratch, np.empty(seeds, dtype=np.float64), *heap, ids, scores, counts)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(n_threads: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if n_threads not in _POOLS:
            _POOLS[n_threads] = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="sparsebench-inverted")
        return _POOLS[n_threads]


_COMPILED: tuple | None = None


def _count_tokens():  # noqa: ANN202 - a numba dispatcher
    from ._inverted_numba import count_tokens

    return count_tokens


def _jit() -> tuple:
    """numba-compiled kernels, compiled on first use (numba is imported only here)."""
    global _COMPILED
    if _COMPILED is None:
        from ._inverted_numba import blockmax_batch, exhaustive_batch

        _COMPILED = (exhaustive_batch, blockmax_batch)
    return _COMPILED
