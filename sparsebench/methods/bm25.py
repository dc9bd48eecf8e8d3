"""BM25 through bm25s (sparse-matrix BM25; scores match Lucene's variant by default)."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from ..datasets.types import Document
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext


@register(
    MethodInfo(
        name="bm25",
        family="sparse-encoder",
        version="1",
        summary="Okapi BM25 over stemmed, stopword-filtered word tokens (bm25s)",
        paper="Robertson & Zaragoza 2009, The Probabilistic Relevance Framework: BM25 and Beyond",
        licence="MIT (bm25s)",
        requires=("bm25s", "PyStemmer"),
        cost_model=CostModel(
            proxies=(("postings", "count"), ("vocab_size", "terms")),
            notes="index size is the posting count; query cost grows with the postings of its terms",
        ),
    )
)
@dataclass(frozen=True)
class BM25(RetrievalMethod):
    k1: float = 1.2
    b: float = 0.75
    variant: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"

    def __post_init__(self) -> None:
        # Refused here, when the id is built, so bad input never reaches a worker or a record.
        if self.k1 < 0:
            raise ValueError(f"k1={self.k1} is out of range (k1 >= 0; 0 ignores term frequency)")
        if not 0 <= self.b <= 1:
            raise ValueError(f"b={self.b} is out of range (0 <= b <= 1)")
        if self.stemmer is not None:
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise ValueError(f"unknown stemmer {self.stemmer!r} (PyStemmer has: {', '.join(Stemmer.algorithms())}; or stemmer=none)")
        if self.stopwords not in (None, "en"):  # the default needs no check (and no bm25s import)
            from bm25s.tokenization import _infer_stopwords

            try:
                _infer_stopwords(self.stopwords)
            except ValueError as e:
                raise ValueError(f"unknown stopwords {self.stopwords!r} for bm25s ({e}); or stopwords=none") from e

    def open(self, ctx: RunContext) -> Retriever:
        return _BM25Retriever(self, ctx)


def _import_bm25s() -> Any:
    """bm25s, imported without numba unless something already loaded it.

    bm25s imports numba whenever it is installed (about 55 MiB and a second), although its
    numpy backend, the one used here, never calls it; numba is installed for sparsebench's own
    kernels, so without this bm25's cost would depend on another method's requirement.
    """
    if "bm25s" in sys.modules or "numba" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # type: ignore[assignment]  # `import numba` raises ImportError meanwhile
    try:
        import bm25s
    finally:
        del sys.modules["numba"]
    return bm25s


class _BM25Retriever(Retriever):
    def __init__(self, method: BM25, ctx: RunContext) -> None:
        bm25s = _import_bm25s()
        from bm25s.tokenization import Tokenizer

        # bm25s sets its own logger to DEBUG when imported; keep its per-call chatter out.
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        stem = None
        if method.stemmer:
            import Stemmer

            stem = Stemmer.Stemmer(method.stemmer).stemWord
        self._tokenizer = Tokenizer(stopwords=method.stopwords or [], stemmer=stem)
        self._bm25 = bm25s.BM25(k1=method.k1, b=method.b, method=method.variant)
        self._ctx = ctx
        self._doc_ids: list[str] = []

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        self._doc_ids = [d.id for d in corpus]
        ids = self._tokenizer.tokenize(
            [d.full_text for d in corpus], update_vocab=True, return_as="ids", show_progress=self._ctx.progress
        )
        self._bm25.index(ids, show_progress=self._ctx.progress)
        return IndexReport()

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        tokens = self._tokenizer.tokenize(list(queries), update_vocab=False, return_as="ids", show_progress=False)
        k = min(k, len(self._doc_ids))
        # Batches use the profile's threads; a single query gains nothing from a thread pool.
        threads = self._ctx.threads if len(queries) > 1 else 1
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=threads)
        # bm25s pads with zero-score documents; a document that matches no query term is not
        # retrieved (as in Lucene), so it must not reach the run file.
        return [
            [(self._doc_ids[int(d)], float(s)) for d, s in zip(row_d, row_s) if s > 0]
            for row_d, row_s in zip(docs, scores)
        ]

    def save(self, directory: Path) -> None:
        self._bm25.save(str(directory), show_progress=False)
        self._tokenizer.save_vocab(str(directory))
        (directory / "doc_ids.json").write_text(json.dumps(self._doc_ids))

    def proxies(self) -> dict[str, float]:
        scores: Any = self._bm25.scores
        return {"postings": float(len(scores["data"])), "vocab_size": float(len(self._tokenizer.get_vocab_dict()))}
