"""Approximate nearest-neighbour search engines over any dense encoder or compressor (faiss).

`hnsw(minilm,ef=64)` is a graph over float vectors; `hnsw(pq(minilm,m=48),ef=64)` the same graph
over PQ codes; `ivf(int8(minilm),nlist=64,nprobe=8)` an inverted file of k-means cells whose
members are int8 codes. The knob users sweep (efSearch, nprobe) is a search-time parameter, so
its points share one build. Every record carries recall_vs_exact: the approximate top 10
against the exact top 10 of the same dense encoder, as ann-benchmarks plots recall.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import CostModel, MethodInfo, register
from .base import Retriever, RetrievalMethod, RunContext
from .codecs import Codec
from .faiss_index import BINARY, FaissPlan, FaissRetriever
from .vectors import IndexableMethod, VectorMethod

_COSTS = CostModel(
    proxies=(("dim", "dims"), ("codebook_bytes", "B"), ("encoder_params", "count"), ("rescore_bytes_per_vector", "B")),
    notes="rescore_bytes_per_vector only over binary codes; bytes_per_vector is measured from faiss's serialized index: codes plus the graph's links (hnsw) or the "
          "inverted lists' ids (ivf); codebook_bytes is the trained part (centroids, codebooks, rotation)",
)


def _split(base: IndexableMethod) -> tuple[FaissPlan, VectorMethod]:
    """The storage plan of what the engine indexes, and the float vector source under it."""
    if isinstance(base, Codec):
        return base.plan(), base.base
    assert isinstance(base, VectorMethod)
    return FaissPlan("Flat", what=str(base)), base


class _Engine(RetrievalMethod):
    base: IndexableMethod

    def engine_plan(self) -> FaissPlan:
        raise NotImplementedError

    def open(self, ctx: RunContext) -> Retriever:
        _, source = _split(self.base)
        return FaissRetriever(self.engine_plan(), source.open(ctx), ctx)

    def cost_units(self) -> dict[str, str]:
        units = dict(self.info.cost_model.proxies)
        if self.engine_plan().storage != BINARY:  # only binary codes keep float vectors for rescoring
            units.pop("rescore_bytes_per_vector")
        return units


@register(
    MethodInfo(
        name="hnsw",
        family="ann",
        version="1",
        summary="HNSW graph search (faiss) over float vectors or a compressor's codes; knob ef (efSearch)",
        paper="Malkov & Yashunin 2020, Efficient and Robust Approximate Nearest Neighbor Search Using Hierarchical "
              "Navigable Small World Graphs (TPAMI)",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu",),
        cost_model=_COSTS,
        example="hnsw(minilm,ef=64)",
    )
)
@dataclass(frozen=True)
class Hnsw(_Engine):
    base: IndexableMethod
    M: int = 32  # graph neighbours per node (2M on the bottom layer)
    ef: int = 64  # efSearch: candidate list length while searching (at least k is used)
    ef_construction: int = 40  # candidate list length while building

    def __post_init__(self) -> None:
        for name in ("M", "ef", "ef_construction"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is out of range (at least 1)")

    def engine_plan(self) -> FaissPlan:
        storage, _ = _split(self.base)
        return storage.with_engine(f"HNSW{self.M}", {"efSearch": self.ef}, {"efConstruction": self.ef_construction},
                                   0, str(self))


@register(
    MethodInfo(
        name="ivf",
        family="ann",
        version="1",
        summary="inverted file (faiss): k-means cells, search the nprobe nearest; over float vectors or codes",
        paper="Jegou, Douze & Schmid 2011, Product Quantization for Nearest Neighbor Search (TPAMI), IVFADC; "
              "Sivic & Zisserman 2003, Video Google",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu",),
        cost_model=_COSTS,
        example="ivf(minilm,nlist=64,nprobe=8)",
    )
)
@dataclass(frozen=True)
class Ivf(_Engine):
    base: IndexableMethod
    nlist: int = 64  # k-means cells
    nprobe: int = 8  # cells searched per query

    def __post_init__(self) -> None:
        if self.nlist < 1 or self.nprobe < 1:
            raise ValueError(f"nlist={self.nlist}, nprobe={self.nprobe}: both must be at least 1")
        if self.nprobe > self.nlist:
            raise ValueError(f"nprobe={self.nprobe} is more than nlist={self.nlist} (at most every cell)")

    def engine_plan(self) -> FaissPlan:
        storage, _ = _split(self.base)
        return storage.with_engine(f"IVF{self.nlist}", {"nprobe": self.nprobe}, {}, self.nlist, str(self))
