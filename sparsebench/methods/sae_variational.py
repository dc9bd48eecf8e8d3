"""Variational TopK SAE (vSAE): Gaussian posteriors sampled in training, KL to a standard normal
prior; our loss (sparsebench.sae.variational) over dictionary_learning's TopK SAE and trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..registry import CostModel, MethodInfo, register
from .sae_base import SAE_TASKS, FitReport, SAEMethod, TrainSettings


@register(
    MethodInfo(
        name="vsae",
        family="sae",
        version="1",
        summary="TopK SAE whose pre-activations are Gaussian posterior means: trained on samples with a KL penalty "
                "toward N(0, 1) (kl), learned or unit variance; the posterior mean at inference (the paper reports it "
                "below TopK on SAEBench's core metrics)",
        paper="Baker & Li 2025, Analysis of Variational Sparse Autoencoders",
        licence="MIT (dictionary_learning), Apache-2.0 (sparsebench)",
        requires=("dictionary_learning",),
        cost_model=CostModel(notes="parameters 2 x d x dict_size + dict_size + d (a learned variance head is used in "
                                   "training only and is not counted)"),
        tasks=SAE_TASKS,
    )
)
@dataclass(frozen=True)
class VariationalSAE(SAEMethod):
    dict_size: int = 2304
    k: int = 32
    kl: float = 0.01  # weight of the KL term (summed over latents)
    learn_variance: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.dict_size or not self.kl >= 0:
            raise ValueError(f"k={self.k}, dict_size={self.dict_size}, kl={self.kl}: 1 <= k <= dict_size and kl >= 0")

    def fit(self, acts: np.ndarray, train: TrainSettings, ctx: Any) -> FitReport:
        from ..sae.train import train_with
        from ..sae.variational import classes

        _, trainer_cls = classes()

        def make(**kw: Any) -> Any:
            trainer = trainer_cls(dict_size=self.dict_size, k=self.k, kl=self.kl, learn_variance=self.learn_variance,
                                  noise_seed=train.seed, threshold_start_step=kw["steps"] // 10, **kw)
            trainer.dead_feature_threshold = min(trainer.dead_feature_threshold, acts.shape[0] // 4)
            return trainer

        report = train_with(make, acts, train, "sparsebench vSAE loss on dictionary_learning's TopKTrainer")
        # inference encodes with the posterior mean: the variance head is training-only, not held
        report.sae.module.log_var = None
        report.parameters, report.bytes = report.sae.parameters, report.sae.bytes
        return report
