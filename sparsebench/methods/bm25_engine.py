"""BM25 served from our inverted-index engine: the same tokens and the same impacts as `bm25`.

bm25s precomputes every (term, document) BM25 impact; this variant takes that impact matrix
as it is and answers queries with `sparsebench.kernels.inverted` (block-max pruning by default,
safe unless `alpha` < 1), so the leaderboard sets the two engines side by side on identical
scores. Only `search` and the serialized index differ from `bm25`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ..datasets.types import Document
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, Retriever, RunContext
from .bm25 import BM25, _BM25Retriever


@register(
    MethodInfo(
        name="bm25_engine",
        family="sparse-encoder",
        version="2",
        summary="BM25 (bm25s tokens and impacts) answered by sparsebench's inverted index with block-max pruning",
        paper="Mallia et al. 2024, Faster Learned Sparse Retrieval with Block-Max Pruning (SIGIR)",
        licence="Apache-2.0 (sparsebench); MIT (bm25s)",
        requires=("bm25s", "PyStemmer", "numba"),
        cost_model=CostModel(
            proxies=(("postings", "count"), ("vocab_size", "terms"), ("blocks", "count")),
            notes="index size is the posting count plus one maximum per (term, block) it occurs in",
        ),
    )
)
@dataclass(frozen=True)
class BM25Engine(BM25):
    pruning: Literal["blockmax", "exhaustive"] = "blockmax"
    alpha: float = 1.0  # block-max: 1 is safe (the exhaustive top k); below 1 stops earlier
    # 256 documents per block: on the faq corpora (3k-25k passages) safe block-max was fastest at
    # 256 of 64-512 for BM25, and faster at 256 than at 64 (the only sizes compared) for SPLADE-tiny
    # (benchmarks/README.md); version 2 since 64 was the default.
    block_size: int = 256
    # Document order in the index: none (corpus order) or bp (recursive graph bisection, which
    # packs documents sharing terms into the same blocks). Hits and their order are the same
    # either way; bp costs build time and pays off where the corpus order is not already clustered.
    reorder: Literal["none", "bp"] = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha} is out of range (0 < alpha <= 1; 1 is exact)")
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size} is out of range (at least 1 document)")

    def open(self, ctx: RunContext) -> Retriever:
        return _EngineRetriever(self, ctx)


class _EngineRetriever(_BM25Retriever):
    def __init__(self, method: BM25Engine, ctx: RunContext) -> None:
        super().__init__(method, ctx)
        self._method = method
        self._index = None

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        from ..kernels.inverted import from_postings

        report = super().index(corpus)
        s = self._bm25.scores
        self._index = from_postings(int(s["num_docs"]), s["indptr"], s["indices"], s["data"], self._method.block_size,
                                    self._method.reorder)
        return report

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self._search(queries, k, self._method.pruning, self._method.alpha)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        # The same index scored exhaustively: what block-max approximate (alpha < 1) is set against.
        return self._search(queries, k, "exhaustive", 1.0)

    def _search(self, queries: Sequence[str], k: int, pruning: str, alpha: float) -> list[list[Hit]]:
        from ..kernels.inverted import query_batch_from_tokens, search_batch_arrays

        tokens = self._tokenizer.tokenize(list(queries), update_vocab=False, return_as="ids", show_progress=False)
        # bm25s sums a term's impact once per occurrence in the query: the count is its weight.
        batch = query_batch_from_tokens(self._index, tokens)
        # Batches use the profile's threads; a single query gains nothing from a thread pool.
        threads = self._ctx.threads if len(queries) > 1 else 1
        ids, scores, counts = search_batch_arrays(self._index, batch, k, pruning, alpha, threads)
        doc_ids = self._doc_ids
        return [[(doc_ids[d], s) for d, s in zip(rd[:n], rs[:n])]
                for rd, rs, n in zip(ids.tolist(), scores.tolist(), counts.tolist())]

    def save(self, directory: Path) -> None:
        ix = self._index
        np.savez(directory / "index.npz", **ix.arrays())  # ext included: positions -> document numbers
        self._tokenizer.save_vocab(str(directory))
        (directory / "doc_ids.txt").write_text("\n".join(self._doc_ids))

    def proxies(self) -> dict[str, float]:
        return {**super().proxies(), "blocks": float(len(self._index.bblock))}
