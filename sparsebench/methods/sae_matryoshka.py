"""Matryoshka SAE: nested dictionaries (the first group alone, the first two, ... each must
reconstruct), BatchTopK activation; dictionary_learning's MatryoshkaBatchTopKTrainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import CostModel, MethodInfo, register
from .sae_base import SAE_TASKS, FitReport, SAEMethod, TrainSettings

# Nested prefixes of 1/16, 1/8, 1/4, 1/2 and all of the dictionary, equally weighted.
GROUP_FRACTIONS = (1 / 16, 1 / 16, 1 / 8, 1 / 4, 1 / 2)


@register(
    MethodInfo(
        name="matryoshka_sae",
        family="sae",
        version="1",
        summary="nested dictionaries (prefixes of 1/16, 1/8, 1/4, 1/2 and all latents each reconstruct), BatchTopK "
                "(k per token on average; a learned threshold at inference); dictionary_learning's "
                "MatryoshkaBatchTopKTrainer",
        paper="Bussmann, Nabeshima, Karvonen & Nanda 2025, Learning Multi-Level Features with Matryoshka Sparse "
              "Autoencoders",
        licence="MIT (dictionary_learning), Apache-2.0 (sparsebench)",
        requires=("dictionary_learning",),
        cost_model=CostModel(notes="parameters 2 x d x dict_size + dict_size + d"),
        tasks=SAE_TASKS,
    )
)
@dataclass(frozen=True)
class MatryoshkaSAE(SAEMethod):
    dict_size: int = 2304
    k: int = 32  # latents per token, on average over a batch

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.dict_size or self.dict_size < 16:
            raise ValueError(f"k={self.k}, dict_size={self.dict_size}: 1 <= k <= dict_size, and at least 16 latents "
                             "for the smallest nested group")

    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer

        from ..sae.train import train_with

        def make(**kw: Any) -> Any:
            # the inference threshold is an average over training steps after this one
            trainer = MatryoshkaBatchTopKTrainer(dict_size=self.dict_size, k=self.k, group_fractions=list(GROUP_FRACTIONS),
                                                 threshold_start_step=kw["steps"] // 10, **kw)
            trainer.dead_feature_threshold = min(trainer.dead_feature_threshold, acts.shape[0] // 4)
            return trainer

        report = train_with(make, acts, train, "dictionary_learning MatryoshkaBatchTopKTrainer")
        report.extra["group_sizes"] = [int(s) for s in report.sae.module.group_sizes]
        return report
