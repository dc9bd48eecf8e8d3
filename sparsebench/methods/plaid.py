"""A PLAID engine (ColBERTv2's centroids and residual compression, PLAID's centroid pruning) over
a multi-vector method's token vectors, through PyLate's PLAID index.

PyLate's default PLAID backend is fast-plaid, whose wheels are each built against one torch (at
most 2.11 when this was written) and crash on 2.13; the backend used here is the one PyLate
keeps from Stanford's ColBERT code (`use_fast=False`), which builds its C++ kernels with ninja
on first use (about two minutes, once per cache: they go to `<cache>/torch_extensions`). It runs
in the `late` worker environment, like `colbert`.

`plaid(maxsim(minilm),nbits=2)` indexes the same (cached) token states exact MaxSim scores, so
its record is set against exact MaxSim (recall_vs_exact@10). Search-side knobs are ColBERT's:
`ncells` centroids probed per query token, `centroid_score_threshold` for pruning, `ndocs`
candidates kept after centroid interaction (about a quarter of them are scored in full).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..datasets.types import Document
from ..extlock import extension_guard
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext
from .multivector import MultiVectorMethod, MultiVectorRetriever

log = logging.getLogger(__name__)

_COSTS = CostModel(
    proxies=(("vectors_per_doc", "count"), ("nbits", "bits"), ("ncells", "count"), ("ndocs", "count"),
             ("encoder_params", "count")),
    notes="token vectors stored as a centroid id and an nbits-per-dimension residual each (index_bytes and "
          "bytes_per_vector are measured from the index folder); search probes ncells centroids per query token "
          "and keeps ndocs candidates for decompression and exact scoring",
)


@register(
    MethodInfo(
        name="plaid",
        family="multi-vector",
        version="1",
        summary="PLAID engine (ColBERTv2 residual compression, centroid interaction and pruning) through PyLate's "
                "Stanford PLAID index",
        paper="Santhanam et al. 2022, ColBERTv2 (NAACL); Santhanam et al. 2022, PLAID: An Efficient Engine for Late "
              "Interaction Retrieval (CIKM)",
        licence="Apache-2.0 (sparsebench); PyLate MIT; ColBERT MIT",
        requires=("pylate", "ninja"),
        cost_model=_COSTS,
        example="plaid(maxsim(minilm),nbits=2)",
    )
)
@dataclass(frozen=True)
class Plaid(RetrievalMethod):
    base: MultiVectorMethod
    nbits: int = 2  # residual bits per dimension
    kmeans_niters: int = 4
    ncells: int = 2
    centroid_score_threshold: float = 0.45
    ndocs: int = 1024

    def __post_init__(self) -> None:
        if self.nbits not in (1, 2, 4, 8):
            raise ValueError(f"nbits={self.nbits} is out of range (1, 2, 4 or 8 bits per dimension)")
        for name in ("kmeans_niters", "ncells", "ndocs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is out of range (at least 1)")

    def worker_env(self) -> str | None:
        return "late"

    def open(self, ctx: RunContext) -> Retriever:
        return _PlaidRetriever(self.base.open(ctx), self, ctx)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


@contextlib.contextmanager
def _quiet():  # noqa: ANN202
    """Stanford's PLAID code prints its progress (and tensors of statistics) to stdout: kept out
    of the run's output, at debug level in the log."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        if buf.getvalue():
            log.debug("%s", buf.getvalue())


class _PlaidRetriever(Retriever):
    def __init__(self, base: MultiVectorRetriever, method: Plaid, ctx: RunContext) -> None:
        self._base = base
        self._m = method
        self._ctx = ctx
        self._folder: Path | None = None
        self._index = None
        self.doc_ids: list[str] = []
        self._vectors_per_doc = 0.0
        self._ext_dir = ctx.cache.root / "torch_extensions"

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        report = self._base.index(corpus)
        self.doc_ids = self._base.doc_ids
        tokens, offsets = self._base.doc_tokens()
        self._vectors_per_doc = len(tokens) / max(1, len(offsets) - 1)
        # The C++ kernels are compiled once per cache, not once per run.
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(self._ctx.cache.root / "torch_extensions"))
        self._ext_dir = Path(os.environ["TORCH_EXTENSIONS_DIR"])
        from pylate import indexes

        self._folder = Path(tempfile.mkdtemp(prefix="sparsebench-plaid-"))
        t0 = time.perf_counter()
        # the build and the searches load (and the first time compile) the C++ kernels
        with _quiet(), extension_guard(self._ext_dir):
            self._build(indexes, tokens, offsets)
        # k-means, residual coding and the inverted lists: the engine's own build, on top of the
        # (perhaps cached) encodings, as a compressor's fit
        build_s = time.perf_counter() - t0
        report.fit_s = (report.fit_s or 0.0) + build_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += build_s
        self._base.release()  # the index holds its own compressed copy
        return report

    def _build(self, indexes, tokens, offsets) -> None:  # noqa: ANN001 - pylate's module, arrays
        import torch

        m = self._m
        self._index = indexes.PLAID(
            index_folder=str(self._folder), index_name="index", override=True, use_fast=False, nbits=m.nbits,
            kmeans_niters=m.kmeans_niters, embedding_size=tokens.shape[1], ncells=m.ncells,
            centroid_score_threshold=m.centroid_score_threshold, ndocs=m.ndocs, device=self._ctx.device,
        )
        docs = [torch.from_numpy(tokens[offsets[i]: offsets[i + 1]]) for i in range(len(offsets) - 1)]
        self._index.add_documents(documents_ids=[str(i) for i in range(len(docs))], documents_embeddings=docs)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import torch

        if self._index is None:
            raise RuntimeError("plaid: searched before index()")
        out = []
        with extension_guard(self._ext_dir):
            for q in self._base.query_tokens(queries):  # queries differ in length: one at a time
                with _quiet():
                    res = self._index(queries_embeddings=[torch.from_numpy(q)], k=k)[0]
                out.append([(self.doc_ids[int(r["id"])], float(r["score"])) for r in res])
        return out

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._base.exact_search(queries, k)

    def save(self, directory: Path) -> None:
        if self._folder is None:
            raise RuntimeError("plaid: saved before index()")
        shutil.copytree(self._folder / "index", directory / "index")

    def vector_bytes(self) -> tuple[float, float] | None:
        # codes and residuals grow with the corpus; centroids and the rest are fixed
        if self._folder is None:
            return None
        files = [f for f in (self._folder / "index").rglob("*") if f.is_file()]
        grows = (".codes.pt", ".residuals.pt")  # per token: a centroid id and the packed residual
        per_doc = sum(f.stat().st_size for f in files
                      if f.name.endswith(grows) or f.name.startswith(("doclens.", "ivf.")))
        fixed = sum(f.stat().st_size for f in files) - per_doc
        return per_doc / max(1, len(self.doc_ids)), float(fixed)

    def proxies(self) -> dict[str, float]:
        out = {"vectors_per_doc": self._vectors_per_doc, "nbits": float(self._m.nbits), "ncells": float(self._m.ncells),
               "ndocs": float(self._m.ndocs)}
        if self._base.encoder_params() is not None:
            out["encoder_params"] = float(self._base.encoder_params())
        return out

    def __del__(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
