"""TEAL: training-free activation sparsity in the MLPs of the suite's model.

Inputs of each decoder layer's MLP linears whose magnitude is at most a per-layer threshold are
zeroed at inference; thresholds are calibrated on calibration text so that the achieved fraction
equals `sparsity` (measured again on the evaluation windows and recorded). Dense matmuls still
run, so the latency shows no gain on this hardware without a sparse kernel; FLOPs per token are
counted as if the zeroed inputs' columns were skipped (what a sparse kernel would do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import CostModel, MethodInfo, register
from .lm_base import ApplyReport, Calibration, LMMethod


@register(MethodInfo(
    name="teal", family="pruning", version="1",
    summary="zero the smallest-magnitude MLP input activations at inference (per-layer thresholds calibrated to a sparsity)",
    paper="Liu et al. 2024, Training-Free Activation Sparsity in Large Language Models (arXiv:2408.14690)",
    licence="Apache-2.0 (sparsebench)", requires=("torch",),
    cost_model=CostModel(
        proxies=(("activation_sparsity", "fraction"), ("effective_flops_per_token", "FLOP")),
        notes="effective FLOPs skip the weight columns whose input is zero, at the sparsity measured on calibration text",
    ),
    tasks=("lm",),
))
@dataclass(frozen=True)
class TEAL(LMMethod):
    sparsity: float = 0.5  # fraction of MLP input activations zeroed, in [0, 1)
    needs_calibration = True

    def __post_init__(self) -> None:
        if isinstance(self.sparsity, bool) or not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity={self.sparsity!r} is out of range: the fraction of activations zeroed, in [0, 1)")

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        from ..lm.cost import nnz_and_flops
        from ..pruning import activation

        assert calibration is not None
        thresholds = activation.calibrate_thresholds(lm.model, calibration.input_ids, self.sparsity)
        achieved = activation.measure(lm.model, thresholds, calibration.input_ids)
        overall = achieved.pop("__overall__")
        activation.apply(lm.model, thresholds)  # stays on for evaluation and timing
        modules = dict(lm.model.named_modules())
        saved = sum(2.0 * achieved[n] * modules[n].weight.numel() for n in achieved)
        _, _, flops = nnz_and_flops(lm.model)
        return ApplyReport(backend="sparsebench", layer_sparsity=achieved,
                           proxies={"activation_sparsity": overall, "effective_flops_per_token": flops - saved},
                           extra={"thresholds": thresholds})
