"""Hybrid retrieval: two retrievers' ranked lists fused into one, as composed methods.

`rrf(bm25,minilm)` and `interp(bm25,minilm,alpha=0.3)` open both parts exactly as they run
alone (so a dense part reuses its cached corpus encodings), ask each for its top `depth`, and
fuse; only the fusion rule differs between the two. The task times `search` as a whole, so a
hybrid's latency is measured end to end, never summed from its parts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..datasets.types import Document
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext

_PARTS = ("first", "second")


@dataclass(frozen=True)
class Fusion(RetrievalMethod):
    first: RetrievalMethod
    second: RetrievalMethod
    depth: int = 100  # candidates taken from each part (at least the task's k)

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} is out of range (at least 1 candidate per part)")

    def fuse(self, first: list[Hit], second: list[Hit], k: int) -> list[Hit]:
        raise NotImplementedError

    def open(self, ctx: RunContext) -> Retriever:
        return _FusionRetriever(self, ctx)

    def cost_units(self) -> dict[str, str]:
        # The composition's cost model is both parts' proxies, each under its part's name.
        units: dict[str, str] = {}
        for part in _PARTS:
            for name, unit in getattr(self, part).cost_units().items():
                units[f"{part}.{name}"] = unit
        return units


class _FusionRetriever(Retriever):
    def __init__(self, method: Fusion, ctx: RunContext) -> None:
        self._method = method
        self._parts = [getattr(method, p).open(ctx) for p in _PARTS]

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        reports, measured = [], []
        for part in self._parts:
            t0 = time.perf_counter()
            reports.append(part.index(corpus))
            measured.append(time.perf_counter() - t0)
        hit = any(r.cache_hit for r in reports)
        if not hit:
            return IndexReport()
        # A part whose work came from the cache costs what it cost when it was computed; the
        # other part was just measured. Unknown (cached elsewhere) anywhere makes the sum unknown.
        build: float | None = 0.0
        for r, s in zip(reports, measured):
            cost = (r.cached_build_s if r.cache_hit else s)
            build = None if build is None or cost is None else build + cost
        return IndexReport(cache_hit=True, cached_build_s=build)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, self._method.depth)
        a, b = (part.search(queries, depth) for part in self._parts)
        return [self._method.fuse(x, y, k) for x, y in zip(a, b)]

    def save(self, directory: Path) -> None:
        for name, part in zip(_PARTS, self._parts):
            sub = directory / name
            sub.mkdir()
            part.save(sub)

    def proxies(self) -> dict[str, float]:
        return {f"{name}.{key}": value for name, part in zip(_PARTS, self._parts) for key, value in part.proxies().items()}


def _ranked(scores: dict[str, float], order: dict[str, tuple[float, float]], k: int) -> list[Hit]:
    # Ties go to the document ranked higher by the first part, then by the second, so that the
    # identity points (alpha=1: the first part alone) reproduce a part's list exactly.
    return sorted(scores.items(), key=lambda kv: (-kv[1], *order[kv[0]]))[:k]


def _ranks(first: list[Hit], second: list[Hit]) -> dict[str, tuple[float, float]]:
    ra = {d: i for i, (d, _) in enumerate(first)}
    rb = {d: i for i, (d, _) in enumerate(second)}
    return {d: (ra.get(d, math.inf), rb.get(d, math.inf)) for d in ra.keys() | rb.keys()}


_FUSION_COSTS = CostModel(
    proxies=(),
    notes="both parts' proxies, named first.* and second.*; latency is the fused search measured end to end",
)


@register(
    MethodInfo(
        name="rrf",
        family="hybrid",
        version="1",
        summary="reciprocal rank fusion of two retrievers: sum of 1/(k + rank) over both lists",
        paper="Cormack, Clarke & Buettcher 2009, Reciprocal Rank Fusion outperforms Condorcet and individual rank learning methods",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_FUSION_COSTS,
        example="rrf(bm25,minilm)",
    )
)
@dataclass(frozen=True)
class RRF(Fusion):
    k: int = 60  # the rank constant; larger flattens the difference between top ranks

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 0:
            raise ValueError(f"k={self.k} is out of range (k >= 0)")

    def fuse(self, first: list[Hit], second: list[Hit], k: int) -> list[Hit]:
        scores: dict[str, float] = {}
        for hits in (first, second):
            for rank, (doc, _) in enumerate(hits, 1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (self.k + rank)
        return _ranked(scores, _ranks(first, second), k)


@register(
    MethodInfo(
        name="interp",
        family="hybrid",
        version="1",
        summary="convex combination of two retrievers' normalised scores: alpha*first + (1-alpha)*second",
        paper="Bruch, Gai & Ingber 2023, An Analysis of Fusion Functions for Hybrid Retrieval (ACM TOIS)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_FUSION_COSTS,
        example="interp(bm25,minilm,alpha=0.3)",
    )
)
@dataclass(frozen=True)
class Interp(Fusion):
    alpha: float = 0.5  # weight of the first part; 1 is the first part alone, 0 the second
    norm: Literal["minmax", "zscore"] = "minmax"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha} is out of range (0 <= alpha <= 1)")

    def fuse(self, first: list[Hit], second: list[Hit], k: int) -> list[Hit]:
        a, b = self._normalise(first), self._normalise(second)
        # A document missing from one list gets that list's floor (0 after min-max: its minimum).
        floor_a = min(a.values(), default=0.0)
        floor_b = min(b.values(), default=0.0)
        scores = {d: self.alpha * a.get(d, floor_a) + (1 - self.alpha) * b.get(d, floor_b) for d in a.keys() | b.keys()}
        return _ranked(scores, _ranks(first, second), k)

    def _normalise(self, hits: list[Hit]) -> dict[str, float]:
        if not hits:
            return {}
        values = [s for _, s in hits]
        if self.norm == "minmax":
            lo, hi = min(values), max(values)
            span = hi - lo
            return {d: (s - lo) / span if span > 0 else 1.0 for d, s in hits}
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return {d: (s - mean) / sd if sd > 0 else 0.0 for d, s in hits}
