"""Float dimension reduction of any dense encoder: Matryoshka truncation and PCA.

Both wrap a vector source and stay float vectors, so they can themselves be wrapped by a codec
or an engine (`int8(pca(minilm,dim=128))`, `hnsw(truncate(minilm,dim=192))`). At full dimension
both reproduce the base encoder's ranking: truncation leaves the vectors untouched, and PCA is
then a rotation (see `_Pca` for why the scores are kept exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..registry import CostModel, MethodInfo, register
from .base import RunContext
from .vectors import VectorMethod, VectorRetriever, WrappedVectors

_COSTS = CostModel(
    proxies=(("bytes_per_doc", "B"), ("search_flops_per_query", "FLOP"), ("encoder_params", "count"), ("dim", "dims")),
    notes="float32 vectors of the reduced dimension; exact search costs 2*n_docs*dim FLOPs per query plus one "
          "encoder pass (and, for pca, a dim x full-dim projection)",
)


@register(
    MethodInfo(
        name="truncate",
        family="compressor",
        version="1",
        summary="Matryoshka-style truncation: the first dim dimensions of each vector, L2-normalised again",
        paper="Kusupati et al. 2022, Matryoshka Representation Learning (NeurIPS)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_COSTS,
        example="truncate(minilm,dim=128)",
    )
)
@dataclass(frozen=True)
class Truncate(VectorMethod):
    base: VectorMethod
    dim: int = 128  # leading dimensions kept; at or above the encoder's dimension: the encoder itself

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim={self.dim} is out of range (at least 1 dimension)")

    def open(self, ctx: RunContext) -> VectorRetriever:
        return _Truncated(self.base.open(ctx), self.dim)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


class _Truncated(WrappedVectors):
    def __init__(self, base: VectorRetriever, dim: int) -> None:
        super().__init__(base)
        self._dim = dim

    def fit(self, docs: np.ndarray) -> None:
        pass  # nothing to learn

    def transform(self, vectors: np.ndarray, kind: str) -> np.ndarray:
        if self._dim >= vectors.shape[1]:
            return vectors  # untouched, so the full dimension is exactly the base encoder
        cut = vectors[:, : self._dim].astype(np.float32)
        norms = np.linalg.norm(cut, axis=1, keepdims=True)
        return cut / np.where(norms > 0, norms, 1.0)


@register(
    MethodInfo(
        name="pca",
        family="compressor",
        version="1",
        summary="PCA fitted on the corpus vectors: the dim leading principal components",
        paper="Pearson 1901; for dense retrieval: Ma et al. 2021, Simple and Effective Unsupervised Redundancy "
              "Elimination to Compress Dense Vectors for Passage Retrieval (EMNLP)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_COSTS,
        example="pca(minilm,dim=128)",
    )
)
@dataclass(frozen=True)
class Pca(VectorMethod):
    base: VectorMethod
    dim: int = 128  # principal components kept (at most the encoder's dimension)

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim={self.dim} is out of range (at least 1 component)")

    def open(self, ctx: RunContext) -> VectorRetriever:
        return _Pca(self.base.open(ctx), self.dim)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


class _Pca(WrappedVectors):
    """Documents are centred on the corpus mean and projected: d' = W^T (d - mu). A query is
    projected uncentred, q' = W^T q, and its score is q'.d' + q.mu. With W the top components,
    q'.d' is q's product with the best rank-dim approximation of (d - mu); with every component
    (W orthogonal) the score is q.(d - mu) + q.mu = q.d, the base encoder's score. Only the
    projected documents and one mean vector are stored; the q.mu term rides along as one extra
    dimension (query side q.mu, document side 1), so the index is plain inner product."""

    def __init__(self, base: VectorRetriever, dim: int) -> None:
        super().__init__(base)
        self._dim = dim
        self._mean: np.ndarray | None = None
        self._components: np.ndarray | None = None  # float64 [full dim, dim]

    def fit(self, docs: np.ndarray) -> None:
        n, full = docs.shape
        if self._dim > full:
            raise ValueError(f"pca: dim={self._dim} is more than the encoder's {full} dimensions; use dim<={full}")
        x = docs.astype(np.float64)
        self._mean = x.mean(axis=0)
        # Eigenvectors of the scatter matrix (full x full, whatever the corpus size, so a corpus
        # smaller than the dimension still gets a complete basis): the principal axes.
        centred = x - self._mean
        values, vectors = np.linalg.eigh(centred.T @ centred)  # once, at fit time
        order = np.argsort(-values, kind="stable")
        self._components = vectors[:, order[: self._dim]]

    def transform(self, vectors: np.ndarray, kind: str) -> np.ndarray:
        assert self._mean is not None and self._components is not None
        import torch

        # torch's matmul, not NumPy's: NumPy's BLAS would start its own thread pool beside torch's
        # (the encoder's), and the two spin against each other on a small machine.
        x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float64))
        w = torch.from_numpy(self._components)
        mean = torch.from_numpy(self._mean)
        if kind == "document":
            return torch.hstack([(x - mean) @ w, torch.ones((len(x), 1), dtype=torch.float64)]).numpy()
        return torch.hstack([x @ w, (x @ mean)[:, None]]).numpy()

    def proxies(self) -> dict[str, float]:
        out = super().proxies()
        out["dim"] = float(self._dim)  # the stored components; the +1 column is the mean's term
        return out
