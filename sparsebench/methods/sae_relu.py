"""ReLU SAE with an L1 penalty (the baseline SAE), trained by dictionary_learning's StandardTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import CostModel, MethodInfo, register
from .sae_base import SAE_TASKS, FitReport, SAEMethod, TrainSettings


@register(
    MethodInfo(
        name="relu_sae",
        family="sae",
        version="1",
        summary="ReLU encoder, unit-norm decoder, L1 penalty on the latents (L0 set by l1); dictionary_learning's "
                "StandardTrainer",
        paper="Bricken et al. 2023, Towards Monosemanticity: Decomposing Language Models With Dictionary Learning",
        licence="MIT (dictionary_learning), Apache-2.0 (sparsebench)",
        requires=("dictionary_learning",),
        cost_model=CostModel(notes="parameters 2 x d x dict_size + dict_size + d"),
        tasks=SAE_TASKS,
    )
)
@dataclass(frozen=True)
class ReluSAE(SAEMethod):
    dict_size: int = 2304  # latents (4 x SmolLM2-135M's width)
    l1: float = 1.0  # L1 coefficient on activations scaled to mean squared norm d: larger, sparser

    def __post_init__(self) -> None:
        if self.dict_size < 1 or not self.l1 >= 0:
            raise ValueError(f"dict_size={self.dict_size}, l1={self.l1}: at least one latent and an L1 coefficient >= 0")

    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        from dictionary_learning.trainers.standard import StandardTrainer

        from ..sae.train import train_with

        def make(**kw: Any) -> Any:
            steps = kw["steps"]
            return StandardTrainer(dict_size=self.dict_size, l1_penalty=self.l1, sparsity_warmup_steps=max(1, steps // 20),
                                   **kw)

        return train_with(make, acts, train, "dictionary_learning StandardTrainer")
