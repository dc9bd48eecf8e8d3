"""The language-model capability: what the lm task's loop needs from a method.

The task loads the suite's model (the unmodified model is the baseline row); a method changes
it in place, once, before anything is measured: pruning rewrites weights, activation sparsity
installs hooks. The task owns calibration sampling, evaluation and every timing, identically
for every method; methods only compute. Calibration text is disjoint from evaluation text.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..registry import MethodInfo


@dataclass
class Calibration:
    """Token windows drawn from the calibration half of each text, and where each was drawn."""

    input_ids: Any  # torch.LongTensor [n_samples, length]
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"text", "start", "length"} per row


@dataclass
class KVCachePlan:
    """How a KV-cache method holds the cache. The tasks prefill every prompt into `new_cache()`
    (None: the model's own dynamic cache) and run every later token against what the prefill
    left there, at its true positions; the lm task scores the tokens after a prefix through
    it (sparsebench.lm.evaluate.score_windows_after_prefix)."""

    new_cache: Callable[[], Any] | None = None
    backend: str = ""


@dataclass
class ApplyReport:
    """What applying the method did, for the record."""

    backend: str = ""  # the library or implementation that did the work
    # name -> fraction of zeros measured after applying (weights), or achieved activation sparsity
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    proxies: dict[str, float] = field(default_factory=dict)  # overrides or adds to the task's proxies
    # Costs measured by the method itself before it changed how the model is held (a sparse
    # kernel's modules are not nn.Linear): the task uses these instead of measuring again.
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # Sparse attention methods' live counters (sparsebench.attention.hook.AttentionStats): the
    # task reads the density achieved and the attention FLOPs after it evaluated and timed.
    attention: Any = None
    # KV-cache methods (eviction presses, quantized caches): how the cache is held.
    kv: KVCachePlan | None = None


class LMMethod(abc.ABC):
    info: ClassVar[MethodInfo]
    needs_calibration: ClassVar[bool] = False

    @abc.abstractmethod
    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        """Change `lm.model` in place (the task times this as calibration_s)."""

    def check_model(self, config: Any) -> None:
        """Raise ValueError when the method cannot apply to a model of this config (checked
        before anything runs)."""

    def check_device(self, device: str) -> None:
        """Raise ValueError when the method cannot run on the profile's device (`cpu`, `cuda`),
        checked before anything runs."""

    def worker_env(self) -> str | None:
        """The worker environment this method needs (sparsebench.envs), or None for this one."""
        return None

    def cost_units(self) -> dict[str, str]:
        return dict(self.info.cost_model.proxies)
