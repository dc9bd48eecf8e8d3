"""The retrieval capability: what the retrieval task's loop needs from a method.

A method is a frozen dataclass of parameters. `open(ctx)` loads whatever it needs (timed as
model load) and returns a stateful `Retriever`, which the task indexes, queries and serializes.
The task owns every timing, batching and validation step; methods only compute.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

from ..cache import ArtifactCache
from ..datasets.types import Document
from ..registry import MethodInfo

Hit = tuple[str, float]


@dataclass
class RunContext:
    cache: ArtifactCache
    threads: int
    device: str = "cpu"
    batch_size: int = 64
    progress: bool = True
    fingerprint: str = ""  # the detected hardware fingerprint, for cached timings


@dataclass
class IndexReport:
    """What indexing did: whether the heavy part came from the cache and what it cost then."""

    cache_hit: bool = False
    cached_build_s: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Retriever(abc.ABC):
    @abc.abstractmethod
    def index(self, corpus: Sequence[Document]) -> IndexReport:
        """Build the index over the whole corpus."""

    @abc.abstractmethod
    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k (doc id, score) per query, best first. Must not be called before index()."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Serialize the index into an existing empty directory; its size there is the index bytes."""

    def proxies(self) -> dict[str, float]:
        """Hardware-independent cost proxies, named as in the method's cost model."""
        return {}


class RetrievalMethod(abc.ABC):
    info: ClassVar[MethodInfo]

    @abc.abstractmethod
    def open(self, ctx: RunContext) -> Retriever:
        """Load models and prepare an empty retriever."""

    def cost_units(self) -> dict[str, str]:
        """Unit of every proxy its retriever reports; a composition names its parts' too."""
        return dict(self.info.cost_model.proxies)
