"""Methods that yield dense float vectors, and what the wrappers around them read.

A dense encoder (minilm) or a float transform of one (truncate, pca) opens a `VectorRetriever`:
exact inner-product search over its document vectors, plus the vectors themselves, so that a
compressor or an approximate-search engine wrapped around it (`int8(minilm)`,
`hnsw(pq(minilm,m=48))`) takes the corpus encodings it already computed (and cached) instead of
encoding again, and can ask it for the exact top k of the same representation
(`recall_vs_exact`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from ..datasets.types import Document
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext

_VECTOR_SOURCES = "a dense-encoder method (minilm) or truncate(...) / pca(...) over one"


class IndexableMethod(RetrievalMethod, abc.ABC):
    """What an approximate-search engine (hnsw, ivf) can be built over: float vectors or a codec."""

    # Said when a composition puts another kind of method where this one is expected.
    accepts: ClassVar[str] = f"dense vectors: {_VECTOR_SOURCES}, or a compressor over one (int8, pq, opq, binary)"


class VectorMethod(IndexableMethod, abc.ABC):
    """A method whose retriever is a `VectorRetriever`: float vectors, inner-product scores."""

    accepts: ClassVar[str] = f"dense float vectors: {_VECTOR_SOURCES}"

    @abc.abstractmethod
    def open(self, ctx: RunContext) -> VectorRetriever: ...


class VectorRetriever(Retriever, abc.ABC):
    """Exact inner-product search over float document vectors that a wrapper may read."""

    doc_ids: list[str]

    @abc.abstractmethod
    def doc_vectors(self) -> np.ndarray:
        """float32 [n_docs, dim], in corpus order. Only after index() and before release()."""

    @abc.abstractmethod
    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """float32 [n_queries, dim], scored against doc_vectors() by inner product."""

    @abc.abstractmethod
    def release(self) -> None:
        """Drop the document vectors: a wrapper that keeps only codes does not hold them twice.
        doc_vectors() computes them again (from the encoding cache) if asked later."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return exact_search(self.query_vectors(queries), self.doc_vectors(), self.doc_ids, k)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        # The reference is the dense encoder's own exact search; a transform asks its base.
        return self.search(queries, k)

    def save(self, directory: Path) -> None:
        np.save(directory / "embeddings.npy", self.doc_vectors(), allow_pickle=False)
        (directory / "doc_ids.txt").write_text("\n".join(self.doc_ids))

    def vector_bytes(self) -> tuple[float, float] | None:
        # float32 rows in a .npy: the per-vector part is exactly dim * 4 bytes, the header fixed.
        n, dim = self.doc_vectors().shape
        return float(dim * 4), 0.0


def exact_search(queries: np.ndarray, docs: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[Hit]]:
    """Top-k inner products (float32, torch.topk), best first."""
    import torch

    from ..kernels.topk import topk_torch

    if len(doc_ids) == 0:
        return [[] for _ in range(len(queries))]
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    scores, idx = topk_torch(q, d, k)
    return [[(doc_ids[i], s) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(idx.tolist(), scores.tolist())]


class WrappedVectors(VectorRetriever):
    """A float transform of another vector source (truncate, pca): same queries' encoder, new vectors.

    Subclasses implement `fit` (on the base's document vectors, timed as fit_s) and `transform`.
    """

    def __init__(self, base: VectorRetriever) -> None:
        self._base = base
        self.doc_ids = []
        self._docs: np.ndarray | None = None
        self.fit_s = 0.0

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        import time

        report = self._base.index(corpus)
        self.doc_ids = self._base.doc_ids
        docs = self._base.doc_vectors()
        t0 = time.perf_counter()
        self.fit(docs)
        self._docs = np.ascontiguousarray(self.transform(docs, "document"), dtype=np.float32)
        self.fit_s = time.perf_counter() - t0
        self._base.release()
        report.fit_s = (report.fit_s or 0.0) + self.fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += self.fit_s
        return report

    def doc_vectors(self) -> np.ndarray:
        if self._docs is None:  # released: computed again from the base (its cache) and the same fit
            self._docs = np.ascontiguousarray(self.transform(self._base.doc_vectors(), "document"), dtype=np.float32)
            self._base.release()
        return self._docs

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._base.exact_search(queries, k)

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return np.ascontiguousarray(self.transform(self._base.query_vectors(queries), "query"), dtype=np.float32)

    def release(self) -> None:
        self._docs = None

    def proxies(self) -> dict[str, float]:
        n, dim = self.doc_vectors().shape
        return {**self._base.proxies(), "bytes_per_doc": float(dim * 4), "search_flops_per_query": float(2 * n * dim),
                "dim": float(dim)}

    @abc.abstractmethod
    def fit(self, docs: np.ndarray) -> None: ...

    @abc.abstractmethod
    def transform(self, vectors: np.ndarray, kind: str) -> np.ndarray: ...
