"""The one place that talks to faiss: a composed codec / engine id becomes one faiss index.

`int8(minilm)`, `pq(minilm,m=48)`, `hnsw(opq(minilm,m=48),ef=64)` and `ivf(binary(minilm),nprobe=8)`
each describe a `FaissPlan` (pre-transform, storage, engine, search parameters); the retriever
builds it with faiss's index factory over the wrapped encoder's document vectors (taken from that
encoder's retriever, so its cached encodings are reused), trains it (fit_s), adds the corpus,
and then lets the encoder go. Bytes per vector come from faiss's own serialization: the index
with the corpus minus the same trained index with none, over the number of documents.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..datasets.types import Document
from ..errors import BenchError
from .base import Hit, IndexReport, Retriever, RunContext
from .vectors import VectorRetriever

log = logging.getLogger(__name__)
# faiss's loader logs each CPU-specific build it tries at INFO: noise in every worker's log.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

BINARY = "binary"  # storage: 1 bit per dimension, Hamming search (faiss's binary indexes)


@dataclass(frozen=True)
class FaissPlan:
    """What to build. storage: "Flat", "SQ8", "PQ{m}x{nbits}" or BINARY; engine: "" (flat scan),
    "HNSW{M}" or "IVF{nlist}"."""

    storage: str
    pretransform: str = ""  # "OPQ{m}": a learned rotation before PQ
    engine: str = ""
    search: dict[str, int] = field(default_factory=dict)  # efSearch / nprobe
    build: dict[str, int] = field(default_factory=dict)  # efConstruction
    rescore: int = 0  # binary: float rescoring of the top rescore * k Hamming candidates (0: none)
    min_train: int = 0  # documents the training needs (k-means centroids)
    sub_vectors: int = 0  # PQ's m, which must divide the dimension
    what: str = ""  # the method id, for messages

    def factory(self) -> str:
        if self.storage == BINARY:
            return {"": "BFlat"}.get(self.engine, f"B{self.engine}")
        if self.engine.startswith("HNSW"):
            body = self.engine if self.storage == "Flat" else f"{self.engine}_{self.storage}"
        elif self.engine.startswith("IVF"):
            body = f"{self.engine},{self.storage}"
        else:
            body = self.storage
        return f"{self.pretransform},{body}" if self.pretransform else body

    def with_engine(self, engine: str, search: dict[str, int], build: dict[str, int], min_train: int, what: str) -> FaissPlan:
        return FaissPlan(self.storage, self.pretransform, engine, search, build, self.rescore,
                         max(self.min_train, min_train), self.sub_vectors, what)


class FaissRetriever(Retriever):
    def __init__(self, plan: FaissPlan, source: VectorRetriever, ctx: RunContext) -> None:
        import faiss

        self._plan = plan
        self._source = source
        self._ctx = ctx
        faiss.omp_set_num_threads(max(1, ctx.threads))
        self._index: Any = None
        self._empty_bytes = 0  # the trained index with no vectors: codebooks, rotations, centroids
        self._floats: np.ndarray | None = None  # binary rescoring only
        self._dim = 0
        self.doc_ids: list[str] = []

    # --- build ---------------------------------------------------------------------------------

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        import faiss

        plan = self._plan
        report = self._source.index(corpus)
        self.doc_ids = list(self._source.doc_ids)
        docs = np.ascontiguousarray(self._source.doc_vectors(), dtype=np.float32)
        n, self._dim = docs.shape
        if plan.sub_vectors and self._dim % plan.sub_vectors:
            raise BenchError(f"{plan.what}: m={plan.sub_vectors} does not divide the vectors' {self._dim} dimensions; "
                             f"use a divisor of {self._dim}")
        if n < plan.min_train:
            raise BenchError(f"{plan.what}: training needs at least {plan.min_train} documents (k-means centroids), "
                             f"the corpus has {n}; use a smaller nbits or nlist")
        t0 = time.perf_counter()
        if plan.storage == BINARY:
            index = faiss.index_binary_factory(self._dim, plan.factory())
            codes = binarize(docs)
            for key, value in plan.build.items():
                setattr(_hnsw(index), key, value)
            t_train = time.perf_counter()
            index.train(codes)
            fit_s = time.perf_counter() - t_train
            index.add(codes)
            if plan.rescore:
                self._floats = docs.copy()
            self._empty_bytes = len(faiss.serialize_index_binary(_emptied(index, binary=True)))
        else:
            index = _float_index(plan, self._dim)
            _no_polysemous(index)
            for key, value in plan.build.items():
                setattr(_hnsw(index), key, value)
            t_train = time.perf_counter()
            index.train(docs)
            fit_s = time.perf_counter() - t_train
            index.add(docs)
            self._empty_bytes = len(faiss.serialize_index(_emptied(index, binary=False)))
        build_s = time.perf_counter() - t0
        self._set_search_params(index)
        self._index = index
        self._source.release()
        report.fit_s = (report.fit_s or 0.0) + fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += build_s
        report.extra = {**report.extra, "faiss_build_s": build_s}
        return report

    def _set_search_params(self, index: Any) -> None:
        import faiss

        for key, value in self._plan.search.items():
            if key == "efSearch":
                _hnsw(index).efSearch = value
            elif key == "nprobe":
                if self._plan.storage == BINARY:
                    index.nprobe = value
                else:
                    faiss.extract_index_ivf(index).nprobe = value

    # --- search --------------------------------------------------------------------------------

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        q = np.ascontiguousarray(self._source.query_vectors(queries), dtype=np.float32)
        n = len(self.doc_ids)
        if n == 0:
            return [[] for _ in queries]
        if self._plan.storage != BINARY:
            scores, labels = self._index.search(q, min(k, n))
            return [_hits(self.doc_ids, row_l, row_s) for row_l, row_s in zip(labels.tolist(), scores.tolist())]
        candidates = min(n, max(k, self._plan.rescore * k)) if self._plan.rescore else min(k, n)
        distances, labels = self._index.search(binarize(q), candidates)
        if not self._plan.rescore:
            # Hamming distance h between +-1 vectors is an inner product: d - 2h.
            return [_hits(self.doc_ids, row_l, [self._dim - 2 * h for h in row_d])
                    for row_l, row_d in zip(labels.tolist(), distances.tolist())]
        assert self._floats is not None
        out = []
        for qi, row in enumerate(labels):
            row = row[row >= 0]
            scores = self._floats[row] @ q[qi]
            # stable: equal float scores keep the Hamming order, as exact search keeps doc order
            order = np.argsort(-scores, kind="stable")[:k]
            out.append([(self.doc_ids[int(row[j])], float(scores[j])) for j in order])
        return out

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._source.exact_search(queries, k)

    # --- what it costs -------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        import faiss

        if self._plan.storage == BINARY:
            faiss.write_index_binary(self._index, str(directory / "index.faissb"))
            if self._floats is not None:  # what rescoring reads; counted in index_bytes, not bytes_per_vector
                np.save(directory / "rescore_vectors.npy", self._floats, allow_pickle=False)
        else:
            faiss.write_index(self._index, str(directory / "index.faiss"))
        (directory / "doc_ids.txt").write_text("\n".join(self.doc_ids))

    def serialized_bytes(self) -> int:
        import faiss

        if self._plan.storage == BINARY:
            return len(faiss.serialize_index_binary(self._index))
        return len(faiss.serialize_index(self._index))

    def vector_bytes(self) -> tuple[float, float] | None:
        n = len(self.doc_ids)
        if n == 0:
            return None
        return (self.serialized_bytes() - self._empty_bytes) / n, float(self._empty_bytes)

    def proxies(self) -> dict[str, float]:
        base = self._source.proxies()
        out = {"dim": float(self._dim), "codebook_bytes": float(self._empty_bytes)}
        if "encoder_params" in base:
            out["encoder_params"] = base["encoder_params"]
        if self._plan.storage == BINARY:
            out["rescore_bytes_per_vector"] = float(4 * self._dim if self._plan.rescore else 0)
        return out


def _float_index(plan: FaissPlan, dim: int) -> Any:
    """The factory's index, inner product throughout. The factory builds HNSW over PQ codes with
    the L2 metric whatever it is asked (faiss 1.8 to 1.15), so that one is built by hand."""
    import faiss

    ip = faiss.METRIC_INNER_PRODUCT
    if plan.engine.startswith("HNSW") and plan.storage.startswith("PQ"):
        m, nbits = (int(x) for x in plan.storage[2:].split("x"))
        index = faiss.IndexHNSWPQ(dim, m, int(plan.engine[4:]), nbits, ip)
        if plan.pretransform:
            index = faiss.IndexPreTransform(faiss.OPQMatrix(dim, int(plan.pretransform[3:])), index)
    else:
        index = faiss.index_factory(dim, plan.factory(), ip)
    metric = _inner(index).metric_type
    if metric != ip:  # scores would be distances, and the ranking of unnormalised vectors wrong
        raise BenchError(f"{plan.what}: faiss built {plan.factory()} with metric {metric}, not inner product")
    return index


def binarize(vectors: np.ndarray) -> np.ndarray:
    """1 bit per dimension, set where the value is positive, packed 8 per byte: sentence-transformers'
    `quantize_embeddings(..., precision="ubinary")`."""
    from sentence_transformers.quantization import quantize_embeddings

    return np.ascontiguousarray(quantize_embeddings(np.asarray(vectors, dtype=np.float32), precision="ubinary"))


def _hits(doc_ids: list[str], labels: list[int], scores: Sequence[float]) -> list[Hit]:
    return [(doc_ids[i], float(s)) for i, s in zip(labels, scores) if i >= 0]  # -1: fewer than k found


def _inner(index: Any) -> Any:
    import faiss

    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index


def _hnsw(index: Any) -> Any:
    import faiss

    if isinstance(index, faiss.IndexBinary):
        return faiss.downcast_IndexBinary(index).hnsw
    return _inner(index).hnsw


def _no_polysemous(index: Any) -> None:
    # IndexPQ trains a polysemous code ordering by default: minutes on a few thousand vectors, and
    # used only by polysemous Hamming filtering, which no method here runs.
    import faiss

    inner = _inner(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    if isinstance(inner, faiss.IndexPQ):
        inner.do_polysemous_training = False


def _emptied(index: Any, binary: bool) -> Any:
    """A copy of the trained index with every vector removed."""
    import faiss

    if binary:
        copy = faiss.deserialize_index_binary(faiss.serialize_index_binary(index))
    else:
        copy = faiss.deserialize_index(faiss.serialize_index(index))
    copy.reset()
    return copy
