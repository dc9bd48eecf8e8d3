"""MUVERA over a multi-vector method: fixed dimensional encodings (`sparsebench.kernels.fde`) pick
`candidates` documents by one inner product each, and exact MaxSim reranks them.

`muvera(maxsim(minilm),reps=20,candidates=100)` reuses the wrapped method's cached token states:
the encodings are computed from them (fit_s; nothing is learned, the hyperplanes and projections
are drawn from `seed`), and reranking reads them. With candidates at or above the corpus size
every document is reranked, which is exact MaxSim (tested).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..datasets.types import Document
from ..kernels.fde import Fde, pack
from ..kernels.maxsim import maxsim_scores
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext
from .multivector import MultiVectorMethod, MultiVectorRetriever, top_hits

_COSTS = CostModel(
    proxies=(("fde_dim", "dims"), ("candidates", "count"), ("vectors_per_doc", "count"), ("bytes_per_doc", "B"),
             ("maxsim_docs_per_query", "count"), ("token_sims_per_query", "count"), ("encoder_params", "count")),
    notes="float32 encodings of fde_dim = reps * 2^ksim * min(dproj, dim) dimensions for candidate generation "
          "(2*n_docs*fde_dim FLOPs per query), then exact MaxSim over `candidates` documents: "
          "maxsim_docs_per_query against the corpus size of exhaustive MaxSim; bytes_per_doc counts the "
          "encoding and the float16 token vectors reranking reads",
)


@register(
    MethodInfo(
        name="muvera",
        family="multi-vector",
        version="1",
        summary="MUVERA: fixed dimensional encodings (SimHash partitions, +-1 projections, repetitions) retrieve "
                "candidates by inner product, exact MaxSim reranks them",
        paper="Dhulipala, Hadian, Jayaram, Lee & Mirrokni 2024, MUVERA: Multi-Vector Retrieval via Fixed "
              "Dimensional Encodings (NeurIPS)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_COSTS,
        example="muvera(maxsim(minilm),reps=10,candidates=100)",
    )
)
@dataclass(frozen=True)
class Muvera(RetrievalMethod):
    base: MultiVectorMethod
    reps: int = 20  # repetitions (independent partitionings)
    ksim: int = 4  # SimHash bits: 2^ksim partitions per repetition
    dproj: int = 16  # dimensions each token is projected to inside a partition block
    candidates: int = 100  # documents exact MaxSim reranks per query; at least the corpus: all of them
    seed: int = 0

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"candidates={self.candidates} is out of range (at least 1 document to rerank)")
        Fde(8, self.ksim, self.dproj, self.reps, self.seed)  # the same range checks as the encoder

    def open(self, ctx: RunContext) -> Retriever:
        return _MuveraRetriever(self.base.open(ctx), self)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


class _MuveraRetriever(Retriever):
    def __init__(self, base: MultiVectorRetriever, method: Muvera) -> None:
        self._base = base
        self._m = method
        self._fde: Fde | None = None
        self._docs: np.ndarray | None = None  # float32 [n_docs, fde_dim]
        self.doc_ids: list[str] = []
        self._searched = 0
        self._docs_scored = 0
        self._pairs_scored = 0

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        report = self._base.index(corpus)
        self.doc_ids = self._base.doc_ids
        tokens, offsets = self._base.doc_tokens()
        t0 = time.perf_counter()
        self._fde = Fde(tokens.shape[1], self._m.ksim, self._m.dproj, self._m.reps, self._m.seed)
        self._docs = self._fde.encode(tokens, offsets, "document")
        fit_s = time.perf_counter() - t0
        report.fit_s = (report.fit_s or 0.0) + fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += fit_s
        return report

    def _ready(self) -> tuple[Fde, np.ndarray]:
        if self._fde is None or self._docs is None:
            raise RuntimeError("muvera: searched before index()")
        return self._fde, self._docs

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import torch

        fde, docs = self._ready()
        q_tokens = self._base.query_tokens(queries)
        if not q_tokens:
            return []
        q_fde = fde.encode(*pack(q_tokens), "query")
        n = len(self.doc_ids)
        c = min(self._m.candidates, n)
        with torch.inference_mode():
            _, cand = torch.topk(torch.from_numpy(q_fde) @ torch.from_numpy(docs).T, c, dim=1)
        cand = cand.numpy()
        tokens, offsets = self._base.doc_tokens()
        lens = np.diff(offsets)
        scores = np.empty((len(q_tokens), c), dtype=np.float32)
        for i, q in enumerate(q_tokens):  # each query reranks its own candidates
            scores[i] = maxsim_scores([q], tokens, offsets, cand[i])[0]
        self._searched += len(q_tokens)
        self._docs_scored += c * len(q_tokens)
        self._pairs_scored += int(sum(len(q) * int(lens[cand[i]].sum()) for i, q in enumerate(q_tokens)))
        return top_hits(scores, cand, self.doc_ids, k)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._base.exact_search(queries, k)

    def save(self, directory: Path) -> None:
        _, docs = self._ready()
        np.save(directory / "fde.npy", docs, allow_pickle=False)
        # reranking reads the token vectors: they are part of this index
        (directory / "tokens").mkdir()
        self._base.save(directory / "tokens")

    def vector_bytes(self) -> tuple[float, float] | None:
        _, docs = self._ready()
        tokens_part = self._base.vector_bytes()
        return float(docs.shape[1] * 4) + (tokens_part[0] if tokens_part else 0.0), 0.0

    def proxies(self) -> dict[str, float]:
        fde, docs = self._ready()
        base = self._base.proxies()
        out = {k: v for k, v in base.items() if k in ("vectors_per_doc", "encoder_params")}
        out["bytes_per_doc"] = base.get("bytes_per_doc", 0.0) + docs.shape[1] * 4
        out["fde_dim"] = float(fde.out_dim)
        out["candidates"] = float(min(self._m.candidates, len(self.doc_ids)))
        if self._searched:
            out["maxsim_docs_per_query"] = self._docs_scored / self._searched
            out["token_sims_per_query"] = self._pairs_scored / self._searched
        return out
