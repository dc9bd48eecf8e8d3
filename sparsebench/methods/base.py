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
    # Training or fitting a compressor on the corpus vectors (PCA, PQ codebooks, an SAE), seconds;
    # None for a method that fits nothing. Part of the build time too.
    fit_s: float | None = None
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

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        """The exact top k of the same representation, for recall_vs_exact: brute force over
        the uncompressed vectors, or exhaustive scoring of the same index, each query as search()
        answers it alone. None: no such reference (a fusion, a method that is its own only form).
        Called after everything is measured."""
        return None

    def vector_bytes(self) -> tuple[float, float] | None:
        """(bytes per document vector, fixed bytes such as codebooks) of the serialized index, for
        a vector index; None for other indexes."""
        return None


class RetrievalMethod(abc.ABC):
    info: ClassVar[MethodInfo]

    @abc.abstractmethod
    def open(self, ctx: RunContext) -> Retriever:
        """Load models and prepare an empty retriever."""

    def cost_units(self) -> dict[str, str]:
        """Unit of every proxy its retriever reports; a composition names its parts' too."""
        return dict(self.info.cost_model.proxies)
