"""Token pooling: fewer stored vectors per passage by clustering each passage's token vectors
(Clavié et al. 2024, "Reducing the Footprint of Multi-Vector Retrieval with Minimal Performance
Impact via Token Pooling").

Each document's token vectors (after the first `protected`, which stay as they are: the [CLS]
state, as in the paper's implementation) are clustered by Ward hierarchical clustering (scipy)
into len // factor clusters; each cluster is replaced by the mean of its vectors. Queries are not
pooled. Factor 1 keeps every vector, so it is exactly the wrapped method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..datasets.types import Document
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RunContext
from .multivector import MultiVectorMethod, MultiVectorRetriever


def pool_document(vectors: np.ndarray, factor: int, protected: int) -> np.ndarray:
    """One document's pooled vectors: the protected leading ones, then one mean per cluster (in
    the order of each cluster's first token, so the output does not depend on label numbering)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    keep, rest = vectors[:protected], vectors[protected:]
    clusters = max(len(rest) // factor, 1)
    if factor == 1 or len(rest) <= clusters:
        return vectors
    labels = fcluster(linkage(rest.astype(np.float64), method="ward"), t=clusters, criterion="maxclust")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # clusters in the order they first appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    slot = rank[inverse]
    sums = np.zeros((len(order), rest.shape[1]), dtype=np.float64)
    np.add.at(sums, slot, rest.astype(np.float64))
    means = sums / np.bincount(slot, minlength=len(order))[:, None]
    return np.concatenate([keep, means.astype(np.float32)])


def pool_tokens(tokens: np.ndarray, offsets: np.ndarray, factor: int, protected: int) -> tuple[np.ndarray, np.ndarray]:
    """Every document pooled; the result rounded to float16 as the index stores it."""
    if factor == 1:
        return tokens, offsets
    docs = [pool_document(tokens[offsets[i]: offsets[i + 1]], factor, protected) for i in range(len(offsets) - 1)]
    new_offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=new_offsets[1:])
    packed = np.concatenate(docs) if docs else tokens[:0]
    return packed.astype(np.float16).astype(np.float32), new_offsets


_COSTS = CostModel(
    proxies=(("vectors_per_doc", "count"), ("bytes_per_doc", "B"), ("maxsim_docs_per_query", "count"),
             ("token_sims_per_query", "count"), ("encoder_params", "count")),
    notes="float16 pooled vectors; exhaustive MaxSim over them, so the token similarities per query fall "
          "with the pool factor; fit_s is the clustering of every document",
)


@register(
    MethodInfo(
        name="pool",
        family="compressor",
        version="1",
        summary="token pooling: Ward clustering of each passage's token vectors into len/factor means",
        paper="Clavié, Chaffin & Adams 2024, Reducing the Footprint of Multi-Vector Retrieval with Minimal "
              "Performance Impact via Token Pooling",
        licence="Apache-2.0 (sparsebench); scipy BSD-3-Clause",
        requires=("scipy",),
        cost_model=_COSTS,
        example="pool(maxsim(minilm),factor=2)",
    )
)
@dataclass(frozen=True)
class TokenPooling(MultiVectorMethod):
    base: MultiVectorMethod
    factor: int = 2  # 1 keeps every vector: the wrapped method exactly
    protected: int = 1  # leading vectors never pooled (the [CLS] state)

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"factor={self.factor} is out of range (at least 1; 1 pools nothing)")
        if self.protected < 0:
            raise ValueError(f"protected={self.protected} is out of range (0 or more leading vectors)")

    def open(self, ctx: RunContext) -> MultiVectorRetriever:
        return _Pooled(self.base.open(ctx), self.factor, self.protected)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


class _Pooled(MultiVectorRetriever):
    def __init__(self, base: MultiVectorRetriever, factor: int, protected: int) -> None:
        super().__init__()
        self._base = base
        self._factor = factor
        self._protected = protected
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        report = self._base.index(corpus)
        self.doc_ids = self._base.doc_ids
        t0 = time.perf_counter()
        self._tokens, self._offsets = pool_tokens(*self._base.doc_tokens(), self._factor, self._protected)
        fit_s = time.perf_counter() - t0
        if self._factor > 1:
            self._base.release()  # only the pooled vectors are kept
        report.fit_s = (report.fit_s or 0.0) + fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += fit_s
        return report

    def doc_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tokens is None or self._offsets is None:
            raise RuntimeError("pool: document tokens asked for before index()")
        return self._tokens, self._offsets

    def query_tokens(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._base.query_tokens(queries)

    def release(self) -> None:
        pass  # the pooled vectors are this retriever's only copy; clustering again costs more than keeping them

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._base.exact_search(queries, k)

    def encoder_params(self) -> float | None:
        return self._base.encoder_params()
