"""numba kernel behind sparsebench.kernels.reorder (imported on first use: numba is slow to load)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _cost(a, b, log_n1, log_n2, lg):  # pragma: no cover - compiled
    """The log-gap cost estimate of one term with a documents on the left and b on the right:
    a * log2(n1 / (a + 1)) + b * log2(n2 / (b + 1)), logs from the table lg[x] = log2(x)."""
    return a * (log_n1 - lg[a + 1]) + b * (log_n2 - lg[b + 1])


@njit(cache=True, nogil=True)
def bisect(fptr, fterms, n_terms, order, unit, iterations, max_depth):  # pragma: no cover - compiled
    """Recursive graph bisection (Dhulipala et al. 2016) of the documents in `order` (int64,
    permuted in place): each segment is split in two halves, documents are swapped between
    them for up to `iterations` rounds while a swap lowers the estimated log-gap cost of the
    terms' postings, then each half is split again, down to segments of `unit` documents or
    `max_depth` levels. Split points fall on multiples of `unit` from the start, so that the
    blocks of `unit` consecutive positions are the leaves of the recursion.

    fptr / fterms: the forward index (document d's distinct terms are fterms[fptr[d]:fptr[d+1]]).
    Deterministic: ties in gain keep the current order (stable sorts).
    """
    n = order.shape[0]
    lg = np.zeros(n + 2, dtype=np.float64)
    for x in range(1, n + 2):
        lg[x] = np.log2(x)
    deg_l = np.zeros(n_terms, dtype=np.int32)
    deg_r = np.zeros(n_terms, dtype=np.int32)
    gains = np.empty(n, dtype=np.float64)
    # An explicit stack of segments (lo, hi, depth) instead of recursion.
    stack = np.empty((2 * max_depth + 4, 3), dtype=np.int64)
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    stack[0, 2] = 0
    top = 1
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        hi = stack[top, 1]
        depth = stack[top, 2]
        units = (hi - lo + unit - 1) // unit
        if units < 2 or depth >= max_depth:
            continue
        mid = lo + ((units + 1) // 2) * unit
        n1 = mid - lo
        n2 = hi - mid
        log_n1 = np.log2(n1)
        log_n2 = np.log2(n2)
        for j in range(lo, mid):
            d = order[j]
            for p in range(fptr[d], fptr[d + 1]):
                deg_l[fterms[p]] += 1
        for j in range(mid, hi):
            d = order[j]
            for p in range(fptr[d], fptr[d + 1]):
                deg_r[fterms[p]] += 1
        for _ in range(iterations):
            # The gain of moving each document to the other side alone.
            for j in range(lo, mid):
                d = order[j]
                g = 0.0
                for p in range(fptr[d], fptr[d + 1]):
                    t = fterms[p]
                    a = deg_l[t]
                    b = deg_r[t]
                    g += _cost(a, b, log_n1, log_n2, lg) - _cost(a - 1, b + 1, log_n1, log_n2, lg)
                gains[j] = g
            for j in range(mid, hi):
                d = order[j]
                g = 0.0
                for p in range(fptr[d], fptr[d + 1]):
                    t = fterms[p]
                    a = deg_l[t]
                    b = deg_r[t]
                    g += _cost(a, b, log_n1, log_n2, lg) - _cost(a + 1, b - 1, log_n1, log_n2, lg)
                gains[j] = g
            left = np.argsort(-gains[lo:mid], kind="mergesort")
            right = np.argsort(-gains[mid:hi], kind="mergesort")
            swapped = 0
            for i in range(min(n1, n2)):
                jl = lo + left[i]
                jr = mid + right[i]
                if gains[jl] + gains[jr] <= 1e-9:
                    break
                dl = order[jl]
                dr = order[jr]
                for p in range(fptr[dl], fptr[dl + 1]):
                    deg_l[fterms[p]] -= 1
                    deg_r[fterms[p]] += 1
                for p in range(fptr[dr], fptr[dr + 1]):
                    deg_r[fterms[p]] -= 1
                    deg_l[fterms[p]] += 1
                order[jl] = dr
                order[jr] = dl
                swapped += 1
            if swapped == 0:
                break
        for j in range(lo, hi):
            d = order[j]
            for p in range(fptr[d], fptr[d + 1]):
                deg_l[fterms[p]] = 0
                deg_r[fterms[p]] = 0
        stack[top, 0] = mid
        stack[top, 1] = hi
        stack[top, 2] = depth + 1
        stack[top + 1, 0] = lo
        stack[top + 1, 1] = mid
        stack[top + 1, 2] = depth + 1
        top += 2
    return order
