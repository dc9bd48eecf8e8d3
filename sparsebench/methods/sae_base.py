"""The SAE capability: what the sae task's loop needs from a method, and the identity row.

The task extracts (and caches) the residual-stream activations the SAE trains on, times the
training, and measures every metric and cost identically for every method; a method only trains
on the activations it is given and hands back something with `encode` and `decode`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..registry import CostModel, MethodInfo, register

SAE_TASKS = ("sae",)


@dataclass(frozen=True)
class TrainSettings:
    """How long and on what the task lets a method train (the suite's settings)."""

    epochs: float
    batch_size: int
    seed: int
    layer: int
    model: str


@dataclass
class FitReport:
    sae: Any  # sparsebench.sae.metrics.Autoencoder
    latents: int
    parameters: int
    bytes: int
    backend: str
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class SAEMethod(abc.ABC):
    info: ClassVar[MethodInfo]

    @abc.abstractmethod
    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        """Train on activations [tokens, d] (float32, the model's own scale)."""

    def check_model(self, config: Any) -> None:
        """Raise ValueError when the method cannot apply to a model of this config."""

    def check_device(self, device: str) -> None:
        """Raise ValueError when the method cannot run on the profile's device."""

    def worker_env(self) -> str | None:
        return "sae"  # dictionary_learning's trainers

    def cost_units(self) -> dict[str, str]:
        return dict(self.info.cost_model.proxies)


@dataclass(frozen=True)
class _Identity:
    def encode(self, x: Any) -> Any:
        return x

    def decode(self, f: Any) -> Any:
        return f


@register(
    MethodInfo(
        name="identity_sae",
        family="sae",
        version="1",
        summary="no SAE: the activations are their own latents (L0 = width, nothing lost); the sae suite's baseline "
                "row and the identity point of CE loss recovered (1.0)",
        paper="Karvonen et al. 2025, SAEBench: A Comprehensive Benchmark for Sparse Autoencoders (the metrics)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=CostModel(notes="no parameters; latents = the residual width"),
        tasks=SAE_TASKS,
    )
)
@dataclass(frozen=True)
class IdentitySAE(SAEMethod):
    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        return FitReport(_Identity(), latents=int(acts.shape[1]), parameters=0, bytes=0, backend="none")

    def worker_env(self) -> str | None:
        return None
