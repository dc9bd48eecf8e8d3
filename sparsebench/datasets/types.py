"""The in-memory form every retrieval loader produces, whatever the source format."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""

    @property
    def full_text(self) -> str:
        """Title and body as one string: what encoders see (BEIR convention)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True)
class RetrievalDataset:
    """A corpus, its queries and graded relevance judgments (qrels[query_id][doc_id] = grade).

    `id` is the canonical id the user gave (`faq`, `beir:/path`, `irds:beir/scifact/test`,
    `mteb:SciFact`); `checksum` is computed from the content, so a changed folder is a new key.
    """

    id: str
    corpus: tuple[Document, ...]
    queries: tuple[Query, ...]
    qrels: Mapping[str, Mapping[str, int]]
    checksum: str = field(default="")
    # MTEB's convention for tasks whose queries are also documents (ArguAna, Quora, ...): a hit
    # whose document id equals the query id is dropped before scoring. It changes scores, so it
    # is part of the checksum (only when set, so every other dataset keeps its checksum).
    ignore_identical_ids: bool = False
    # Where the content came from, for the record (e.g. {"revision": ..., "subset": ...} of an
    # MTEB task); not part of the checksum, which is about the content alone.
    source_info: Mapping[str, str] = field(default_factory=dict)
    # MTEB scores every query it has judgments for, also one whose judgments are all grade 0 (it
    # scores 0); trec_eval's convention, the default, leaves such a query out. Changes scores, so
    # part of the checksum when set.
    score_queries_without_positives: bool = False

    def __post_init__(self) -> None:
        if not self.checksum:
            object.__setattr__(self, "checksum", content_checksum(self))

    @property
    def counts(self) -> dict[str, int]:
        return {
            "documents": len(self.corpus),
            "queries": len(self.queries),
            "qrels": sum(len(v) for v in self.qrels.values()),
        }

    def judged_queries(self) -> tuple[Query, ...]:
        """The queries metrics are computed over: those with a positive judgment (or, with
        `score_queries_without_positives`, any judgment)."""
        if self.score_queries_without_positives:
            return tuple(q for q in self.queries if self.qrels.get(q.id))
        return self.positive_queries()

    def positive_queries(self) -> tuple[Query, ...]:
        return tuple(q for q in self.queries if any(g > 0 for g in self.qrels.get(q.id, {}).values()))


def content_checksum(ds: RetrievalDataset) -> str:
    """sha256 over a canonical serialization (order-sensitive for corpus and queries)."""
    h = hashlib.sha256()
    for d in ds.corpus:
        h.update(json.dumps([d.id, d.title, d.text], ensure_ascii=False).encode())
        h.update(b"\n")
    h.update(b"--queries--\n")
    for q in ds.queries:
        h.update(json.dumps([q.id, q.text], ensure_ascii=False).encode())
        h.update(b"\n")
    h.update(b"--qrels--\n")
    for qid in sorted(ds.qrels):
        for did in sorted(ds.qrels[qid]):
            h.update(json.dumps([qid, did, int(ds.qrels[qid][did])]).encode())
            h.update(b"\n")
    if ds.ignore_identical_ids:
        h.update(b"--ignore-identical-ids--\n")
    if ds.score_queries_without_positives:
        h.update(b"--score-queries-without-positives--\n")
    return h.hexdigest()
