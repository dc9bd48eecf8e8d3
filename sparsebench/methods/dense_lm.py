"""The unmodified model: the lm suite's baseline row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import CostModel, MethodInfo, register
from .lm_base import ApplyReport, Calibration, LMMethod


@register(
    MethodInfo(
        name="dense",
        family="language-model",
        version="1",
        summary="the suite's language model as loaded, unmodified (the baseline every LM method is set against)",
        paper="Allal et al. 2025, SmolLM2: When Smol Goes Big (the default model; any causal LM by id or folder)",
        licence="Apache-2.0 (sparsebench)",
        requires=("transformers",),
        cost_model=CostModel(notes="every weight dense; FLOPs per token = 2 x the linear layers' weights"),
        tasks=("lm", "long-context"),
    )
)
@dataclass(frozen=True)
class DenseLM(LMMethod):
    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        return ApplyReport(backend="none")
