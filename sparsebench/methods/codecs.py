"""Embedding compressors over any dense encoder: int8 scalar quantization, binary codes with
float rescoring, product quantization (PQ) and optimized PQ (OPQ).

Each wraps a vector source (`int8(minilm)`, `pq(pca(minilm,dim=192),m=24)`), reuses that
encoder's cached corpus encodings, and is one faiss index (`faiss_index`); an approximate-search
engine can wrap it in turn (`hnsw(pq(minilm,m=48),ef=64)`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from ..registry import CostModel, MethodInfo, register
from .base import Retriever, RunContext
from .faiss_index import BINARY, FaissPlan, FaissRetriever
from .vectors import IndexableMethod, VectorMethod

_COSTS = CostModel(
    proxies=(("dim", "dims"), ("codebook_bytes", "B"), ("encoder_params", "count")),
    notes="bytes_per_vector is measured from faiss's serialized index (with the corpus minus without it); "
          "codebook_bytes is the trained part that does not grow with the corpus",
)


class Codec(IndexableMethod, abc.ABC):
    """A compressor of float vectors into codes; `base` is the vector source it compresses."""

    base: VectorMethod

    @abc.abstractmethod
    def plan(self) -> FaissPlan: ...

    def open(self, ctx: RunContext) -> Retriever:
        return FaissRetriever(self.plan(), self.base.open(ctx), ctx)

    def cost_units(self) -> dict[str, str]:
        return dict(self.info.cost_model.proxies)


@register(
    MethodInfo(
        name="int8",
        family="compressor",
        version="1",
        summary="int8 scalar quantization, per-dimension ranges calibrated on the corpus (1 byte per dimension)",
        paper="the calibrated int8 recipe of sentence-transformers' quantize_embeddings; faiss ScalarQuantizer QT_8bit",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu",),
        cost_model=_COSTS,
        example="int8(minilm)",
    )
)
@dataclass(frozen=True)
class Int8(Codec):
    base: VectorMethod

    def plan(self) -> FaissPlan:
        # QT_8bit with faiss's default min-max range statistic: each dimension's corpus minimum
        # and maximum map to codes 0 and 255, as quantize_embeddings' calibration does (there
        # to -128..127). Queries stay float: asymmetric distance to the decoded codes.
        return FaissPlan("SQ8", what=str(self))


@register(
    MethodInfo(
        name="binary",
        family="compressor",
        version="1",
        summary="1 bit per dimension (sign), Hamming search, optional float rescoring of the top rescore x k",
        paper="Shakir, Aarsen & Lee 2024, Binary and Scalar Embedding Quantization for Significantly Faster & Cheaper "
              "Retrieval (sentence-transformers quantize_embeddings 'ubinary'); Yamada et al. 2021, BPR (ACL)",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu", "sentence-transformers"),
        cost_model=CostModel(
            proxies=(*_COSTS.proxies, ("rescore_bytes_per_vector", "B")),
            notes="bytes_per_vector is the Hamming index (dim/8 bytes per vector); rescoring reads float32 vectors "
                  "kept beside it (rescore_bytes_per_vector, counted in index_bytes)",
        ),
        example="binary(minilm,rescore=4)",
    )
)
@dataclass(frozen=True)
class Binary(Codec):
    base: VectorMethod
    # Hamming candidates per result rescored with float vectors, as a multiple of k (0: none).
    rescore: int = 0

    def __post_init__(self) -> None:
        if self.rescore < 0:
            raise ValueError(f"rescore={self.rescore} is out of range (0: no rescoring; r: rescore the top r x k)")

    def plan(self) -> FaissPlan:
        return FaissPlan(BINARY, rescore=self.rescore, what=str(self))


def _check_pq(m: int, nbits: int) -> None:
    if m < 1:
        raise ValueError(f"m={m} is out of range (at least 1 sub-vector)")
    if not 1 <= nbits <= 16:
        raise ValueError(f"nbits={nbits} is out of range (1 to 16 bits per sub-vector code)")


@register(
    MethodInfo(
        name="pq",
        family="compressor",
        version="1",
        summary="product quantization: m sub-vectors, each coded by one of 2^nbits k-means centroids (m*nbits/8 bytes)",
        paper="Jegou, Douze & Schmid 2011, Product Quantization for Nearest Neighbor Search (TPAMI)",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu",),
        cost_model=_COSTS,
        example="pq(minilm,m=48)",
    )
)
@dataclass(frozen=True)
class PQ(Codec):
    base: VectorMethod
    m: int = 48  # sub-vectors; must divide the dimension
    nbits: int = 8  # bits per sub-vector code

    def __post_init__(self) -> None:
        _check_pq(self.m, self.nbits)

    def plan(self) -> FaissPlan:
        return FaissPlan(f"PQ{self.m}x{self.nbits}", min_train=2 ** self.nbits, sub_vectors=self.m,
                         what=str(self))


@register(
    MethodInfo(
        name="opq",
        family="compressor",
        version="1",
        summary="optimized product quantization: a learned rotation, then PQ (m sub-vectors of 2^nbits centroids)",
        paper="Ge, He, Ke & Sun 2013, Optimized Product Quantization for Approximate Nearest Neighbor Search (CVPR)",
        licence="Apache-2.0 (sparsebench); faiss MIT",
        requires=("faiss-cpu",),
        cost_model=_COSTS,
        example="opq(minilm,m=48)",
    )
)
@dataclass(frozen=True)
class OPQ(Codec):
    base: VectorMethod
    m: int = 48
    nbits: int = 8

    def __post_init__(self) -> None:
        _check_pq(self.m, self.nbits)

    def plan(self) -> FaissPlan:
        # faiss trains the rotation with 8-bit sub-quantizers whatever nbits the codes use.
        return FaissPlan(f"PQ{self.m}x{self.nbits}", pretransform=f"OPQ{self.m}", min_train=max(256, 2 ** self.nbits),
                         sub_vectors=self.m,
                         what=str(self))
