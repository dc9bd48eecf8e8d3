"""TopK SAE: the k largest ReLU latents per token are kept (L0 = k), trained by
dictionary_learning's TopKTrainer (with the paper's AuxK loss for dead latents)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import CostModel, MethodInfo, register
from .sae_base import SAE_TASKS, FitReport, SAEMethod, TrainSettings


@register(
    MethodInfo(
        name="topk_sae",
        family="sae",
        version="1",
        summary="TopK activation (L0 = k exactly, no sparsity penalty), AuxK loss on dead latents; "
                "dictionary_learning's TopKTrainer",
        paper="Gao et al. 2024, Scaling and evaluating sparse autoencoders",
        licence="MIT (dictionary_learning), Apache-2.0 (sparsebench)",
        requires=("dictionary_learning",),
        cost_model=CostModel(notes="parameters 2 x d x dict_size + dict_size + d"),
        tasks=SAE_TASKS,
    )
)
@dataclass(frozen=True)
class TopKSAE(SAEMethod):
    dict_size: int = 2304
    k: int = 32  # latents kept per token

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.dict_size:
            raise ValueError(f"k={self.k}, dict_size={self.dict_size}: k latents per token, 1 <= k <= dict_size")

    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        from dictionary_learning.trainers.top_k import TopKTrainer

        from ..sae.train import train_with

        def make(**kw: Any) -> Any:
            trainer = TopKTrainer(dict_size=self.dict_size, k=self.k, threshold_start_step=kw["steps"] // 10, **kw)
            # a latent that has not fired for this many tokens counts as dead for AuxK (the
            # library's 10M assumes runs of billions of tokens)
            trainer.dead_feature_threshold = min(trainer.dead_feature_threshold, acts.shape[0] // 4)
            return trainer

        return train_with(make, acts, train, "dictionary_learning TopKTrainer")
