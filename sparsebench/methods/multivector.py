"""Multi-vector (late-interaction) retrieval: token vectors per passage and per query, scored by
MaxSim (ColBERT), and what the wrappers around it read.

`maxsim(minilm)` scores a dense encoder's contextual token states (the vectors its pooling layer
would average): no ColBERT checkpoint ships in any package registry, so the offline default is an
encoder trained for mean pooling, scored token by token. Its retriever is exhaustive exact MaxSim
(`sparsebench.kernels.maxsim`), the reference every wrapper is set against: token pooling
(`pool(...)`) shrinks the stored vectors, MUVERA (`muvera(...)`) picks the candidates that exact
MaxSim reranks. Both reuse the wrapped method's cached token states.

Stored vectors are float16 (ColBERT's uncompressed index stores them so); scores are computed in
float32 from those float16 values, so the index on disk and the scores agree.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from ..cache import content_key
from ..datasets.types import Document
from ..errors import BenchError
from ..kernels.maxsim import maxsim_scores
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext
from .dense import DenseMethod
from .splade import corpus_hash

log = logging.getLogger(__name__)

# Queries scored together by the cached exact reference: bounds the similarity block.
_EXACT_BATCH = 32


class MultiVectorMethod(RetrievalMethod, abc.ABC):
    accepts: ClassVar[str] = "token vectors: maxsim(minilm), or pool(...) over it"

    @abc.abstractmethod
    def open(self, ctx: RunContext) -> MultiVectorRetriever: ...


class MultiVectorRetriever(Retriever, abc.ABC):
    """Exhaustive exact MaxSim over packed document token vectors that a wrapper may read."""

    doc_ids: list[str]

    def __init__(self) -> None:
        self.doc_ids = []
        # What search() scored, for the cost proxies: queries, documents and token pairs.
        self._searched = 0
        self._docs_scored = 0
        self._pairs_scored = 0

    @abc.abstractmethod
    def doc_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [T, dim] token vectors, int64 [n_docs + 1] offsets), in corpus order. Only
        after index(); computed again (from the cache) after release()."""

    @abc.abstractmethod
    def query_tokens(self, queries: Sequence[str]) -> list[np.ndarray]:
        """One float32 [n_tokens, dim] matrix per query."""

    @abc.abstractmethod
    def release(self) -> None:
        """Drop the document tokens: a wrapper that keeps its own does not hold them twice."""

    def count(self, queries: Sequence[np.ndarray], docs_per_query: Sequence[int], tokens_per_query: Sequence[int]) -> None:
        self._searched += len(queries)
        self._docs_scored += int(sum(docs_per_query))
        self._pairs_scored += int(sum(len(q) * t for q, t in zip(queries, tokens_per_query)))

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        tokens, offsets = self.doc_tokens()
        q = self.query_tokens(queries)
        scores = maxsim_scores(q, tokens, offsets)
        n = len(self.doc_ids)
        self.count(q, [n] * len(q), [len(tokens)] * len(q))
        return top_hits(scores, None, self.doc_ids, k)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self.search(queries, k)

    def save(self, directory: Path) -> None:
        tokens, offsets = self.doc_tokens()
        np.save(directory / "tokens.npy", tokens.astype(np.float16), allow_pickle=False)
        np.save(directory / "offsets.npy", offsets, allow_pickle=False)
        (directory / "doc_ids.txt").write_text("\n".join(self.doc_ids))

    def vector_bytes(self) -> tuple[float, float] | None:
        # per document: its float16 token vectors and its int64 offset
        tokens, offsets = self.doc_tokens()
        n = max(1, len(offsets) - 1)
        return float(tokens.shape[0] * tokens.shape[1] * 2 + 8 * (len(offsets) - 1)) / n, 0.0

    def encoder_params(self) -> float | None:
        """Parameters of the encoder the query tokens come from (a wrapper asks its base)."""
        return None

    def proxies(self) -> dict[str, float]:
        tokens, offsets = self.doc_tokens()
        n = max(1, len(offsets) - 1)
        out = {
            "vectors_per_doc": tokens.shape[0] / n,
            "bytes_per_doc": tokens.shape[0] * tokens.shape[1] * 2 / n,
        }
        if self._searched:
            out["maxsim_docs_per_query"] = self._docs_scored / self._searched
            out["token_sims_per_query"] = self._pairs_scored / self._searched
        if self.encoder_params() is not None:
            out["encoder_params"] = float(self.encoder_params())
        return out


def top_hits(scores: np.ndarray, docs: np.ndarray | None, doc_ids: Sequence[str], k: int) -> list[list[Hit]]:
    """Best k of each row of scores [n_queries, n_scored]; docs maps a column to a document
    (None: column i is document i); per row when each query scored its own documents."""
    import torch

    if scores.shape[1] == 0:
        return [[] for _ in range(len(scores))]
    top, idx = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), min(k, scores.shape[1]), dim=1)
    cols = idx.numpy()
    if docs is not None:
        cols = np.take_along_axis(docs, cols, axis=1) if docs.ndim == 2 else docs[cols]
    return [[(doc_ids[int(c)], float(s)) for c, s in zip(row_c, row_s)] for row_c, row_s in zip(cols, top.tolist())]


class TokenStatesRetriever(MultiVectorRetriever):
    """An encoder's token states per document (cached by content, float16) and exact MaxSim."""

    def __init__(self, method_id: str, encoder, ctx: RunContext) -> None:  # noqa: ANN001 - a TokenEncoder
        super().__init__()
        self._method_id = method_id
        self._encoder = encoder
        self._ctx = ctx
        self._tokens: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._corpus: Sequence[Document] = ()
        self._key = ""

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        self._corpus = corpus
        self.doc_ids = [d.id for d in corpus]
        self._key = content_key("token-encodings", self._method_id, self._encoder.fingerprint, corpus_hash(corpus))
        report = IndexReport()
        cached_tokens = self._ctx.cache.load_array("token-encodings", self._key)
        cached_offsets = self._ctx.cache.load_array("token-offsets", self._key)
        if cached_tokens is not None and cached_offsets is not None and cached_offsets[0][-1] == len(cached_tokens[0]):
            tokens16, meta = cached_tokens
            offsets = cached_offsets[0]
            report.cache_hit = True
            if meta.get("fingerprint") == self._ctx.fingerprint:
                report.cached_build_s = float(meta["encode_s"])
            log.info("token states for %s loaded from cache", self._method_id)
        else:
            t0 = time.perf_counter()
            states = self._encoder.encode_tokens([d.full_text for d in corpus], "document", self._ctx.batch_size,
                                                 self._ctx.progress)
            encode_s = time.perf_counter() - t0
            offsets = np.zeros(len(states) + 1, dtype=np.int64)
            np.cumsum([len(s) for s in states], out=offsets[1:])
            tokens16 = (np.concatenate(states) if states else np.zeros((0, self._encoder.dim), np.float32)).astype(np.float16)
            meta = {"encode_s": encode_s, "fingerprint": self._ctx.fingerprint, "method": self._method_id}
            self._ctx.cache.save_array("token-encodings", self._key, tokens16, meta)
            self._ctx.cache.save_array("token-offsets", self._key, offsets, meta)
        self._tokens = tokens16.astype(np.float32)
        self._offsets = offsets
        return report

    def doc_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        if self._tokens is None and self._corpus:
            self.index(self._corpus)
        if self._tokens is None or self._offsets is None:
            raise RuntimeError(f"{self._method_id}: document tokens asked for before index()")
        return self._tokens, self._offsets

    def query_tokens(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._encoder.encode_tokens(queries, "query", self._ctx.batch_size, False)

    def release(self) -> None:
        self._tokens = None

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        """Exhaustive MaxSim of every query, cached by encoder, corpus, queries and k, so that every
        wrapper over these token states is set against one reference computed once."""
        text_hash = hashlib.sha256("\x00".join(queries).encode()).hexdigest()
        key = content_key("maxsim-exact-topk", self._key, k, text_hash)
        cached = self._ctx.cache.load_array("exact-topk", key)
        arr = cached[0] if cached is not None and cached[0].shape[:1] == (len(queries),) else None
        if arr is None:
            arr = np.full((len(queries), k, 2), -1.0, dtype=np.float64)  # [query, rank, (doc index, score)]
            tokens, offsets = self.doc_tokens()
            for start in range(0, len(queries), _EXACT_BATCH):
                q = self.query_tokens(queries[start: start + _EXACT_BATCH])
                for i, hits in enumerate(top_hits(maxsim_scores(q, tokens, offsets), None, range(len(self.doc_ids)), k)):
                    arr[start + i, : len(hits)] = hits
            self._ctx.cache.save_array("exact-topk", key, arr, {"method": self._method_id, "k": k})
        ids = self.doc_ids
        return [[(ids[int(d)], float(s)) for d, s in row if d >= 0] for row in arr]

    def encoder_params(self) -> float | None:
        return float(self._encoder.params)


_COSTS = CostModel(
    proxies=(("vectors_per_doc", "count"), ("bytes_per_doc", "B"), ("maxsim_docs_per_query", "count"),
             ("token_sims_per_query", "count"), ("encoder_params", "count")),
    notes="float16 token vectors; exhaustive MaxSim scores every document: maxsim_docs_per_query is the corpus "
          "size and token_sims_per_query the query's tokens times the corpus' tokens (2*dim FLOPs each)",
)


@register(
    MethodInfo(
        name="maxsim",
        family="multi-vector",
        version="1",
        summary="late interaction (ColBERT MaxSim) over a dense encoder's L2-normalised contextual token states, "
                "exhaustive and exact",
        paper="Khattab & Zaharia 2020, ColBERT: Efficient and Effective Passage Search via Contextualized Late "
              "Interaction over BERT (SIGIR)",
        licence="Apache-2.0 (sparsebench)",
        requires=("sentence-transformers",),
        cost_model=_COSTS,
        example="maxsim(minilm)",
    )
)
@dataclass(frozen=True)
class MaxSim(MultiVectorMethod):
    base: DenseMethod

    def open(self, ctx: RunContext) -> MultiVectorRetriever:
        encoder = self.base.load_encoder(ctx)
        if not callable(getattr(encoder, "encode_tokens", None)):
            raise BenchError(f"{self}: {self.base} gives no token states (its encoder has no encode_tokens); "
                             "use a sentence-transformers encoder such as minilm")
        return TokenStatesRetriever(str(self), encoder, ctx)
