"""Document-id reordering for the inverted index: recursive graph bisection (BP; Dhulipala et
al. 2016, "Compressing Graphs and Indexes with Recursive Graph Bisection"), as the block-max
pruning paper (Mallia et al. 2024) applies it before splitting documents into blocks.

Block-max pruning bounds a block by its terms' largest weights in it. In an arbitrary document
order every frequent term occurs in nearly every block, so the bounds are loose and nearly every
block has to be scored. BP places documents that share terms next to each other: a term's
postings then fall into few blocks, and a query's high bounds into the few blocks that hold its
matching documents. BP minimises an estimate of the log-gap cost of the postings (the bits a gap
code needs), which is low exactly when each term's documents are packed into few ranges.

The order is deterministic: the same input and seed give the same permutation.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_ITERATIONS = 20


def bp_order(matrix: object, unit: int = 1, iterations: int = DEFAULT_ITERATIONS, max_depth: int | None = None,
             seed: int | None = 0) -> np.ndarray:
    """A BP order of the rows (documents) of a documents x terms sparse matrix: int64 [n_docs],
    position -> row. Only which terms a row has matters, not their weights.

    `unit`: the smallest segment split; split points fall on its multiples, so that with
    unit = the index's block size every block is one leaf of the bisection. `seed`: the
    starting order is a permutation drawn from it (None: the rows' own order)."""
    import scipy.sparse as sp

    if unit < 1:
        raise ValueError(f"unit={unit}: must be at least 1")
    if iterations < 0:
        raise ValueError(f"iterations={iterations}: must be at least 0")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.eliminate_zeros()
    csr.sort_indices()
    n_docs, n_terms = csr.shape
    start = np.arange(n_docs, dtype=np.int64)
    if seed is not None:
        start = np.random.default_rng(seed).permutation(n_docs).astype(np.int64)
    if n_docs <= unit:
        return start
    depth = max_depth if max_depth is not None else int(np.ceil(np.log2(max(n_docs / unit, 1.0)))) + 1
    from ._reorder_numba import bisect

    t0 = time.perf_counter()
    order = bisect(csr.indptr.astype(np.int64), csr.indices.astype(np.int32), n_terms, start, int(unit),
                   int(iterations), int(depth))
    log.debug("BP order of %d documents (%d postings) in %.2f s", n_docs, csr.nnz, time.perf_counter() - t0)
    return order


def log_gap_cost(matrix: object, order: np.ndarray) -> float:
    """Sum over terms of log2(1 + gap) between consecutive positions of the term's documents,
    with the documents placed in `order` (position -> row): what BP lowers."""
    csc = _columns_in_order(matrix, order)
    total = 0.0
    for t in range(csc.shape[1]):
        pos = csc.indices[csc.indptr[t]:csc.indptr[t + 1]]
        if len(pos):
            total += float(np.log2(1.0 + np.diff(pos, prepend=-1)).sum())
    return total


def block_entries(matrix: object, order: np.ndarray, block_size: int) -> int:
    """The number of (term, block) pairs with a posting, with the documents in `order`: the size
    of the block-max table, and the work of a query's block bounds."""
    csc = _columns_in_order(matrix, order)
    total = 0
    for t in range(csc.shape[1]):
        blocks = csc.indices[csc.indptr[t]:csc.indptr[t + 1]] // block_size
        total += int(len(np.unique(blocks)))
    return total


def _columns_in_order(matrix: object, order: np.ndarray):  # noqa: ANN202 - a scipy matrix
    import scipy.sparse as sp

    csr = sp.csr_matrix(matrix)
    order = np.asarray(order)
    if sorted(order.tolist()) != list(range(csr.shape[0])):
        raise ValueError("order must be a permutation of the rows")
    csc = sp.csc_matrix(csr[order])
    csc.sort_indices()
    return csc
