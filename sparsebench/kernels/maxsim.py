"""Exact MaxSim (late-interaction) scoring: the reference (NumPy, float64, one pair at a time) and
the fast path (one float32 GEMM per block of documents, then a segmented max and a segmented sum).

A corpus of multi-vector documents is packed as one matrix of token vectors [T, dim] with
`offsets` [n_docs + 1]: document i owns rows offsets[i]:offsets[i+1]. MaxSim(q, d) is the sum over
the query's tokens of the largest inner product with any of the document's tokens (ColBERT).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Elements of the query-by-token similarity block the fast path materialises at once (float32):
# 2^25 is 128 MiB, small next to the token matrix yet large enough that the GEMM stays efficient.
_BLOCK_ELEMENTS = 1 << 25


def check_packed(tokens: np.ndarray, offsets: np.ndarray) -> None:
    """Packed documents must each own at least one token: an empty one has no MaxSim."""
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != tokens.shape[0]:
        raise ValueError(f"offsets must run from 0 to the token count {tokens.shape[0]}, got {offsets[:1]}..{offsets[-1:]}")
    if len(offsets) > 1 and np.any(np.diff(offsets) <= 0):
        raise ValueError("every document needs at least one token vector (offsets must strictly increase)")


def maxsim_reference(queries: Sequence[np.ndarray], tokens: np.ndarray, offsets: np.ndarray,
                     docs: np.ndarray | None = None) -> np.ndarray:
    """float64 [n_queries, n_docs scored]: each (query, document) pair on its own, in float64."""
    check_packed(tokens, offsets)
    chosen = np.arange(len(offsets) - 1) if docs is None else np.asarray(docs)
    out = np.empty((len(queries), len(chosen)), dtype=np.float64)
    for qi, q in enumerate(queries):
        q64 = np.asarray(q, dtype=np.float64)
        for j, d in enumerate(chosen):
            d64 = tokens[offsets[d]: offsets[d + 1]].astype(np.float64)
            out[qi, j] = (q64 @ d64.T).max(axis=1).sum()
    return out


def gather_docs(tokens: np.ndarray, offsets: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The packed tokens and offsets of the documents `docs`, in that order."""
    docs = np.asarray(docs, dtype=np.int64)
    lens = offsets[docs + 1] - offsets[docs]
    new_offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_offsets[1:])
    # row index of every gathered token: its document's start plus its position inside it
    rows = np.repeat(offsets[docs] - new_offsets[:-1], lens) + np.arange(new_offsets[-1])
    return tokens[rows], new_offsets


def maxsim_scores(queries: Sequence[np.ndarray], tokens: np.ndarray, offsets: np.ndarray,
                  docs: np.ndarray | None = None) -> np.ndarray:
    """float32 [n_queries, n_docs scored]: MaxSim of every query against every document (or the
    documents `docs`, in that order). tokens is float32 [T, dim], each query float32 [n_q, dim]."""
    import torch

    check_packed(tokens, offsets)
    if docs is not None:
        tokens, offsets = gather_docs(tokens, offsets, docs)
    n_docs = len(offsets) - 1
    if not len(queries):
        return np.zeros((0, n_docs), dtype=np.float32)
    q_lens = np.array([len(q) for q in queries], dtype=np.int64)
    if np.any(q_lens == 0):
        raise ValueError("every query needs at least one token vector")
    q_starts = np.concatenate([[0], np.cumsum(q_lens)[:-1]])
    q_all = torch.from_numpy(np.ascontiguousarray(np.concatenate(queries), dtype=np.float32))
    d_all = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.float32))
    out = np.empty((len(queries), n_docs), dtype=np.float32)
    per_block = max(1, _BLOCK_ELEMENTS // len(q_all))
    first = 0
    with torch.inference_mode():
        while first < n_docs:
            # as many whole documents as fit in one block (at least one)
            last = max(first + 1, int(np.searchsorted(offsets, offsets[first] + per_block, side="right")) - 1)
            last = min(last, n_docs)
            lo, hi = int(offsets[first]), int(offsets[last])
            sims = (q_all @ d_all[lo:hi].T).numpy()  # [query tokens, block tokens]
            best = np.maximum.reduceat(sims, offsets[first:last] - lo, axis=1)  # [query tokens, block docs]
            out[:, first:last] = np.add.reduceat(best, q_starts, axis=0)
            first = last
    return out
