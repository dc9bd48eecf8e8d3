"""numba kernels behind sparsebench.kernels.inverted (imported on first use: numba is slow to load)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def exhaustive_topk(indptr, docs, weights, n_docs, terms, qw):  # pragma: no cover - compiled
    """Dense float64 scores of every document (0 where no query term occurs), term by term."""
    scores = np.zeros(n_docs, dtype=np.float64)
    for i in range(terms.shape[0]):
        t = terms[i]
        w = qw[i]
        for p in range(indptr[t], indptr[t + 1]):
            scores[docs[p]] += w * weights[p]
    return scores


@njit(cache=True)
def _worse(s1, d1, s2, d2):  # pragma: no cover - compiled
    """(s1, d1) ranks below (s2, d2): lower score, or the same score and a larger id."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@njit(cache=True)
def _push(hs, hd, n, k, s, d):  # pragma: no cover - compiled
    """Keep the best k in a binary heap whose root is the worst kept; returns the new size."""
    if n < k:
        i = n
        hs[i] = s
        hd[i] = d
        while i > 0:  # sift up
            parent = (i - 1) // 2
            if _worse(hs[i], hd[i], hs[parent], hd[parent]):
                hs[i], hs[parent] = hs[parent], hs[i]
                hd[i], hd[parent] = hd[parent], hd[i]
                i = parent
            else:
                break
        return n + 1
    if not _worse(hs[0], hd[0], s, d):
        return n
    hs[0] = s
    hd[0] = d
    i = 0
    while True:  # sift down
        left = 2 * i + 1
        right = left + 1
        worst = i
        if left < n and _worse(hs[left], hd[left], hs[worst], hd[worst]):
            worst = left
        if right < n and _worse(hs[right], hd[right], hs[worst], hd[worst]):
            worst = right
        if worst == i:
            return n
        hs[i], hs[worst] = hs[worst], hs[i]
        hd[i], hd[worst] = hd[worst], hd[i]
        i = worst


@njit(cache=True)
def _entry(bblock, lo, hi, b):  # pragma: no cover - compiled
    """Index of block b among a term's block entries [lo, hi) (ascending), or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if bblock[mid] < b:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < end and bblock[lo] == b else -1


@njit(cache=True)
def blockmax_topk(indptr, docs, weights, bptr, bblock, bmax, bstart, n_docs, block_size, terms, qw, k, alpha):  # pragma: no cover
    n_blocks = (n_docs + block_size - 1) // block_size
    ub = np.zeros(n_blocks, dtype=np.float64)
    for i in range(terms.shape[0]):
        t = terms[i]
        for e in range(bptr[t], bptr[t + 1]):
            ub[bblock[e]] += qw[i] * bmax[e]
    order = np.argsort(-ub, kind="mergesort")
    hs = np.zeros(max(k, 1), dtype=np.float64)
    hd = np.zeros(max(k, 1), dtype=np.int64)
    n = 0
    acc = np.zeros(block_size, dtype=np.float64)
    for oi in range(n_blocks):
        b = order[oi]
        if ub[b] <= 0:
            break
        # A block's bound is never below a score in it (same products, same order, rounding is
        # monotone), so below the k-th score nothing in it or after it can enter the top k.
        if n == k and ub[b] * alpha < hs[0]:
            break
        base = b * block_size
        length = min(block_size, n_docs - base)
        acc[:length] = 0.0
        for i in range(terms.shape[0]):
            t = terms[i]
            e = _entry(bblock, bptr[t], bptr[t + 1], b)
            if e < 0:
                continue
            end = bstart[e + 1] if e + 1 < bptr[t + 1] else indptr[t + 1]
            w = qw[i]
            for p in range(bstart[e], end):
                acc[docs[p] - base] += w * weights[p]
        for j in range(length):
            if acc[j] > 0:
                n = _push(hs, hd, n, k, acc[j], base + j)
    return hd, hs, n
