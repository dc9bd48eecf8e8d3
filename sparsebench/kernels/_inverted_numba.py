"""numba kernels behind sparsebench.kernels.inverted (imported on first use: numba is slow to load).

Every kernel answers a range [lo, hi) of a batch of queries given as CSR arrays (qptr, qterms,
qweights) and writes each query's top k into row q of out_ids / out_scores (best first: score
descending, then original id ascending: postings hold positions, ext[position] is the original
id) and its length into out_n[q]. They take their scratch arrays from
the caller, who keeps them all zero between calls (the kernels restore that), so a query
allocates nothing proportional to the corpus; and they release the GIL, so threads answer
chunks of a batch in parallel, each with its own scratch.

Two things the generated code pays for unless told otherwise (found with perf on faq-25k;
removing both, with the span scan of `_select`, made the exhaustive kernel about twice as fast):

- reference counting: every call of a helper that takes an array (the heap's pushes, a run of
  postings) is wrapped in atomic increments and decrements. The kernels are compiled without
  numba's runtime (`_nrt=False`), so they cannot allocate: every array, the heap included,
  comes from the caller (`sparsebench.kernels.inverted`).
- negative-index wraparound: numba adds a sign test and fix-up to every index of a signed type,
  which in the posting and accumulator loops costs more than the work and keeps the scans from
  being vectorised. Those loops index with unsigned integers (`np.uint64` loop bounds,
  `np.uint32` document positions), for which numba emits no wraparound.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_kernel = njit(cache=True, nogil=True, _nrt=False)
_inline = njit(cache=True, nogil=True, _nrt=False, inline="always")


@_inline
def _worse(s1, d1, s2, d2):  # pragma: no cover - compiled
    """(s1, d1) ranks below (s2, d2): lower score, or the same score and a larger id."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@_inline
def _sift_down(hs, hd, n, i):  # pragma: no cover - compiled
    """Restore the heap below i (root = the worst kept)."""
    while True:
        left = 2 * i + 1
        right = left + 1
        worst = i
        if left < n and _worse(hs[left], hd[left], hs[worst], hd[worst]):
            worst = left
        if right < n and _worse(hs[right], hd[right], hs[worst], hd[worst]):
            worst = right
        if worst == i:
            return
        hs[i], hs[worst] = hs[worst], hs[i]
        hd[i], hd[worst] = hd[worst], hd[i]
        i = worst


@_inline
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
    _sift_down(hs, hd, n, 0)
    return n


@_inline
def _drain(hs, hd, n, out_scores, out_ids):  # pragma: no cover - compiled
    """Empty the heap into the output row, best first (the worst is popped first, to the end)."""
    for j in range(n - 1, -1, -1):
        out_scores[j] = hs[0]
        out_ids[j] = hd[0]
        hs[0] = hs[j]
        hd[0] = hd[j]
        _sift_down(hs, hd, j, 0)


@_inline
def _offer(hs, hd, n, k, s, d):  # pragma: no cover - compiled
    """_push, with the common case (a full heap that the candidate does not beat) decided
    without a call: most candidates are rejected by one comparison with the root."""
    if n == k and (s < hs[0] or (s == hs[0] and d > hd[0])):
        return n
    return _push(hs, hd, n, k, s, d)


# The scans test this many accumulators at once: a fixed-length loop that only counts the
# ones that reach the k-th score compiles to vector compares, and the few spans that hold one
# are then scanned one document at a time.
SPAN = np.uint64(64)


@_inline
def _offer_span(acc, ext, lo, hi, hs, hd, n, k):  # pragma: no cover - compiled
    """Offer positions lo..hi-1 (uint64) of a full heap whose root reaches acc somewhere there."""
    th = hs[0]
    for x in range(lo, hi):
        s = acc[x]
        if s >= th:
            # a tie with the root enters when its original id is smaller
            if s > th or ext[x] < hd[0]:
                n = _push(hs, hd, n, k, s, ext[x])
                th = hs[0]
    return n


@_inline
def _select(acc, ext, lo, hi, hs, hd, n, k):  # pragma: no cover - compiled
    """Offer positions lo..hi-1 (acc > 0: matched) to the heap under their original ids;
    returns the heap's new size. Positions come in any order of original ids, so a document
    tied with the root enters when its id is smaller."""
    d = lo
    while n < k and d < hi:
        if acc[d] > 0.0:
            n = _push(hs, hd, n, k, acc[d], ext[d])
        d += 1
    if n < k:
        return n
    x = np.uint64(d)
    end = np.uint64(hi)
    while x + SPAN <= end:
        th = hs[0]
        reach = 0
        for y in range(x, x + SPAN):
            if acc[y] >= th:
                reach += 1
        if reach:
            n = _offer_span(acc, ext, x, x + SPAN, hs, hd, n, k)
        x += SPAN
    return _offer_span(acc, ext, x, end, hs, hd, n, k)


@_inline
def _collect(acc, ext, lo, hi, hs, hd, n, k):  # pragma: no cover - compiled
    """_select, then zero acc over lo..hi-1."""
    n = _select(acc, ext, lo, hi, hs, hd, n, k)
    for x in range(np.uint64(lo), np.uint64(hi)):
        acc[x] = 0.0
    return n


# A query whose postings number less than n_docs / SPARSE_RATIO accumulates with a list of the
# documents it touches and selects among those; a denser one scans the whole accumulator, which
# is cheaper than keeping the list once most documents are touched anyway.
SPARSE_RATIO = 8


@_kernel
def exhaustive_batch(indptr, docs, weights, ext, qptr, qterms, qweights, k, lo, hi,
                     acc, touched, hs, hd, out_ids, out_scores, out_n):  # pragma: no cover - compiled
    """Term at a time: every posting of every query term into the dense accumulator `acc`
    (float64 [n_docs], zero on entry and on return), then the top k of the documents with a
    positive score, found in `touched` (int32 [n_docs]) for a sparse query, by a scan of `acc`
    for a dense one. Postings hold positions; the heap holds original ids (ext[position]),
    which break ties. hs, hd (float64, int64 [k]): the heap."""
    n_docs = acc.shape[0]
    for q in range(lo, hi):
        total = 0
        for i in range(qptr[q], qptr[q + 1]):
            total += indptr[qterms[i] + 1] - indptr[qterms[i]]
        n = 0
        if total * SPARSE_RATIO < n_docs:
            nt = 0
            for i in range(qptr[q], qptr[q + 1]):
                t = qterms[i]
                w = qweights[i]
                for p in range(np.uint64(indptr[t]), np.uint64(indptr[t + 1])):
                    v = w * weights[p]
                    if v > 0.0:  # always, unless the product underflows: "acc == 0" means untouched
                        d = np.uint32(docs[p])
                        if acc[d] == 0.0:
                            touched[nt] = d
                            nt += 1
                        acc[d] += v
            for j in range(np.uint64(nt)):
                d = np.uint32(touched[j])
                n = _offer(hs, hd, n, k, acc[d], ext[d])
                acc[d] = 0.0
        else:
            for i in range(qptr[q], qptr[q + 1]):
                t = qterms[i]
                w = qweights[i]
                for p in range(np.uint64(indptr[t]), np.uint64(indptr[t + 1])):
                    acc[np.uint32(docs[p])] += w * weights[p]
            n = _select(acc, ext, 0, n_docs, hs, hd, n, k)
            acc[:] = 0.0
        _drain(hs, hd, n, out_scores[q], out_ids[q])
        out_n[q] = n


@_inline
def _add(docs, weights, w, p0, p1, acc):  # pragma: no cover - compiled
    for p in range(np.uint64(p0), np.uint64(p1)):
        acc[np.uint32(docs[p])] += w * weights[p]


@_kernel
def _score_flagged(indptr, docs, weights, bptr, bblock, bstart, qterms, qweights, q0, q1, flag, acc,
                   run_lo, run_hi):  # pragma: no cover - compiled
    """Term at a time, in query order, the postings of the blocks flagged 1 into acc. A term's
    postings in consecutive flagged blocks are contiguous, so its flagged entries are first
    gathered into runs [run_lo[r], run_hi[r]) without a branch (a store at every entry, its
    counter advanced by 0 or 1), then each run is added in one loop. Deciding run by run with a
    branch per entry mispredicted on about every other flagged entry, since which blocks are
    flagged follows no pattern: on faq-25k that cost more cycles than the postings added.
    run_lo, run_hi: int64 [n_blocks + 1] scratch."""
    for i in range(q0, q1):
        t = qterms[i]
        nr_lo = 0
        nr_hi = 0
        prev = 0
        for e in range(np.uint64(bptr[t]), np.uint64(bptr[t + 1])):
            f = np.int64(flag[np.uint32(bblock[e])] == 1)
            s = bstart[e]
            run_lo[nr_lo] = s  # kept when a run starts here
            nr_lo += f & (1 - prev)
            run_hi[nr_hi] = s  # kept when the run before ends here
            nr_hi += prev & (1 - f)
            prev = f
        run_hi[nr_hi] = indptr[t + 1]
        w = qweights[i]
        for r in range(nr_lo):
            _add(docs, weights, w, run_lo[r], run_hi[r], acc)


@_kernel
def blockmax_batch(indptr, docs, weights, bptr, bblock, bmax, bstart, ext, n_docs, block_size,
                   qptr, qterms, qweights, k, alpha, lo, hi,
                   ub, flag, blocks, acc, run_lo, run_hi, seed_ub, hs, hd, out_ids, out_scores, out_n):  # pragma: no cover - compiled
    """Block-max pruning, per query:

    1. each block's upper bound: query weight x the term's maximum in the block, summed in
       query order into `ub` (float64 [n_blocks]);
    2. the `seeds` blocks with the largest bounds are scored exactly and collected, best bound
       first, which gives a k-th score close to the final one;
    3. every other block whose bound times alpha reaches that k-th score is scored, the rest
       skipped, and the top k collected from the scored blocks.

    Scoring is term at a time over the selected blocks' postings (in query order, as in every
    path), so postings are read in order and a skipped block costs a few branch-free
    instructions per term (`_score_flagged`). A
    block's bound is never below a score in it (the same products summed in the same order, and
    rounding is monotone), so with alpha = 1 a skipped block holds nothing that could enter:
    the result is exactly the exhaustive top k.

    Scratch, all zero on entry and on return: ub, flag (uint8 [n_blocks]: 1 selected, 2
    scored), acc (float64 [n_docs]); blocks (int64 [n_blocks]) holds the selected block ids,
    seed_ub (float64 [seeds]) the seeds' bounds, hs, hd (float64, int64 [k]) the heap;
    run_lo, run_hi (int64 [n_blocks + 1]) are `_score_flagged`'s, written before they are read.
    """
    n_blocks = ub.shape[0]
    seeds = seed_ub.shape[0]
    for q in range(lo, hi):
        q0 = qptr[q]
        q1 = qptr[q + 1]
        for i in range(q0, q1):
            t = qterms[i]
            w = qweights[i]
            for e in range(np.uint64(bptr[t]), np.uint64(bptr[t + 1])):
                ub[np.uint32(bblock[e])] += w * bmax[e]
        # 2. the largest bounds: a min-heap of (bound, block) whose root is the smallest kept
        # (a sorted insertion costs up to `seeds` moves per block when bounds rise with ids,
        # as they do in a corpus where similar documents are neighbours)
        ns = 0
        for b in range(n_blocks):
            u = ub[b]
            if u <= 0.0:
                continue
            if ns < seeds:
                j = ns
                ns += 1
                while j > 0 and seed_ub[(j - 1) // 2] > u:
                    seed_ub[j] = seed_ub[(j - 1) // 2]
                    blocks[j] = blocks[(j - 1) // 2]
                    j = (j - 1) // 2
                seed_ub[j] = u
                blocks[j] = b
            elif u > seed_ub[0]:
                j = 0
                while True:
                    c = 2 * j + 1
                    if c >= ns:
                        break
                    if c + 1 < ns and seed_ub[c + 1] < seed_ub[c]:
                        c += 1
                    if seed_ub[c] >= u:
                        break
                    seed_ub[j] = seed_ub[c]
                    blocks[j] = blocks[c]
                    j = c
                seed_ub[j] = u
                blocks[j] = b
        for j in range(ns):
            flag[blocks[j]] = 1
        _score_flagged(indptr, docs, weights, bptr, bblock, bstart, qterms, qweights, q0, q1, flag, acc, run_lo, run_hi)
        # Collected best bound first, so that the likeliest holders of the top k reach the heap
        # first (with 2 seeds, as for k = 10, this is one comparison; it was not timed alone).
        for j in range(1, ns):
            u = seed_ub[j]
            b = blocks[j]
            x = j
            while x > 0 and seed_ub[x - 1] < u:
                seed_ub[x] = seed_ub[x - 1]
                blocks[x] = blocks[x - 1]
                x -= 1
            seed_ub[x] = u
            blocks[x] = b
        n = 0
        for j in range(ns):
            b = blocks[j]
            n = _collect(acc, ext, b * block_size, min((b + 1) * block_size, n_docs), hs, hd, n, k)
            flag[b] = 2
        # 3. the blocks that can still contribute (the k-th score only grows)
        # Without a branch: which blocks pass follows no pattern the predictor could learn.
        kth = hs[0] if n == k else 0.0
        nc = 0
        for b in range(n_blocks):
            u = ub[b]
            ub[b] = 0.0
            keep = np.int64(flag[b] != 2) & np.int64(u > 0.0) & np.int64(u * alpha >= kth)
            flag[b] = keep
            blocks[nc] = b
            nc += keep
        _score_flagged(indptr, docs, weights, bptr, bblock, bstart, qterms, qweights, q0, q1, flag, acc, run_lo, run_hi)
        for j in range(nc):
            b = blocks[j]
            flag[b] = 0
            n = _collect(acc, ext, b * block_size, min((b + 1) * block_size, n_docs), hs, hd, n, k)
        _drain(hs, hd, n, out_scores[q], out_ids[q])
        out_n[q] = n


@njit(cache=True, nogil=True)
def count_tokens(ptr, flat, n_terms):  # pragma: no cover - compiled
    """Token-id lists (CSR: ptr, flat) to weighted queries: each distinct id in the vocabulary
    once, in order of first occurrence, weighted by its number of occurrences (bm25s sums a
    term's impact once per occurrence). Distinct ids are found by a scan of the query's own
    terms, which is cheapest for the short queries this serves."""
    nq = ptr.shape[0] - 1
    qptr = np.zeros(nq + 1, dtype=np.int64)
    terms = np.empty(flat.shape[0], dtype=np.int64)
    weights = np.empty(flat.shape[0], dtype=np.float64)
    m = 0
    for q in range(nq):
        start = m
        for j in range(ptr[q], ptr[q + 1]):
            t = flat[j]
            if t < 0 or t >= n_terms:
                continue
            x = start
            while x < m and terms[x] != t:
                x += 1
            if x == m:
                terms[m] = t
                weights[m] = 1.0
                m += 1
            else:
                weights[x] += 1.0
        qptr[q + 1] = m
    return qptr, terms[:m].copy(), weights[:m].copy()
