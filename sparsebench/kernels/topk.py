"""Exact top-k inner-product search: the reference (NumPy) and the fast path (torch).

Ties are broken towards the lower document index in the reference; the fast path may order
exactly tied scores differently, so tests compare scores exactly and ids only where scores differ.
"""

from __future__ import annotations

import numpy as np


def topk_reference(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices), each [n_queries, k], best first; float64 accumulation."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    k = min(k, docs.shape[0])
    # stable sort on the negated scores: equal scores keep document order
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, idx, axis=1), idx


def topk_torch(queries, docs, k: int):  # torch.Tensor in, (scores, indices) torch.Tensor out
    """float32 matmul + torch.topk; what the dense retriever runs."""
    import torch

    k = min(k, docs.shape[0])
    with torch.inference_mode():
        return torch.topk(queries @ docs.T, k, dim=1)
