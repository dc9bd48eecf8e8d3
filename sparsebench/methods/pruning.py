"""Weight pruning of the suite's model: magnitude, Wanda and SparseGPT, unstructured or N:M.

Each is one registered method over the lm task's model (`wanda(sparsity=0.5)`), applied to
every linear layer of the decoder (never embeddings or lm_head). Wanda and SparseGPT run
through llm-compressor (the maintained library; it pins transformers 5.15-5.17, so those
methods' workers start in the `prune` environment, sparsebench.envs) unless
`backend=reference` picks sparsebench's plain implementation of the papers, which runs here;
magnitude is sparsebench's own (a threshold needs no library).

N:M: `m` is the group size (0: unstructured). In every m consecutive input weights of a row,
(1 - sparsity) x m are kept, so `wanda(m=4)` is 2:4 and `wanda(m=4,sparsity=0.75)` is 1:4.
`kernel=csr` serves the pruned linears with torch sparse CSR matmuls instead of dense ones, so
the latency columns show what a sparse kernel buys on this hardware (often nothing below ~90%).
`kernel=semi24` serves a 2:4 pattern (`m=4`, sparsity 0.5) with the GPU's sparse tensor cores
(torch's semi-structured tensors); it is refused before anything runs on a profile without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..registry import CostModel, MethodInfo, register
from .lm_base import ApplyReport, Calibration, LMMethod

_COST = CostModel(
    proxies=(("nonzero_weights", "count"), ("flops_per_token", "FLOP"), ("weight_sparsity", "fraction")),
    notes="FLOPs per token = 2 x the non-zero weights of every linear layer (lm_head dense); bytes are the "
          "per-layer smallest of dense, CSR and bitmask layouts, measured by writing safetensors",
)


@dataclass(frozen=True)
class _Pruning(LMMethod):
    sparsity: float = 0.5  # fraction of each pruned layer's weights set to zero, in [0, 1)
    m: int = 0  # N:M group size; 0 = unstructured
    kernel: Literal["dense", "csr", "semi24"] = "dense"

    scheme = "magnitude"

    def __post_init__(self) -> None:
        if isinstance(self.sparsity, bool) or not 0.0 <= float(self.sparsity) < 1.0:
            raise ValueError(f"sparsity={self.sparsity!r} is out of range: the fraction of weights set to zero, in [0, 1)")
        if self.m < 0 or self.m == 1:
            raise ValueError(f"m={self.m}: the N:M group size must be at least 2 (or 0 for unstructured)")
        if self.m:
            n = (1.0 - self.sparsity) * self.m
            if abs(n - round(n)) > 1e-9 or round(n) < 1:
                raise ValueError(f"sparsity={self.sparsity} with m={self.m}: keeps {n:g} of every {self.m} weights; "
                                 f"N:M needs a whole N >= 1 (sparsity = 1 - N/{self.m})")
        if self.kernel not in ("dense", "csr", "semi24"):
            raise ValueError(f"kernel={self.kernel!r}: must be dense, csr or semi24")
        if self.kernel == "semi24" and (self.m != 4 or float(self.sparsity) != 0.5):
            raise ValueError(f"kernel=semi24 serves the 2:4 pattern only (m=4, sparsity=0.5); got {self.pattern}")

    @property
    def pattern(self) -> str:
        return f"{round((1.0 - self.sparsity) * self.m)}:{self.m}" if self.m else "unstructured"

    def check_model(self, config: Any) -> None:
        if not self.m:
            return
        hidden = getattr(config, "hidden_size", None)
        inter = getattr(config, "intermediate_size", None)
        heads = getattr(config, "num_attention_heads", None)
        head_dim = getattr(config, "head_dim", None) or (hidden // heads if hidden and heads else None)
        sizes = {"hidden_size": hidden, "intermediate_size": inter,
                 "num_attention_heads x head_dim": heads * head_dim if heads and head_dim else None}
        for what, size in sizes.items():
            if size and size % self.m:
                raise ValueError(f"N:M pattern {self.pattern} does not divide the layers: {what} = {size} is not a "
                                 f"multiple of m={self.m}; choose an m that divides {size}")

    def check_device(self, device: str) -> None:
        if self.kernel == "semi24":
            from ..pruning.semistructured import device_problem

            problem = device_problem(device)
            if problem:
                raise ValueError(problem)

    def backend_name(self) -> str:
        return "auto"

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        from ..pruning import prune
        from ..pruning.masks import count_zeros
        from ..pruning.layers import prunable_linears

        sparsity = None if self.m else self.sparsity
        report = prune(lm.model, self.scheme, sparsity, self.pattern,
                       calibration.input_ids if calibration is not None else None, self.backend_name())
        layers = count_zeros(prunable_linears(lm.model))  # measured here, whatever the backend says
        out = ApplyReport(backend=report.backend, layer_sparsity={k: z / n for k, (z, n) in layers.items()},
                          extra={"pattern": self.pattern, "prune_seconds": report.seconds, **report.extra})
        if self.kernel != "dense":
            out.extra["stored_before_kernel"] = _swap_kernel(lm, out, self.kernel)
        return out


def _swap_kernel(lm: Any, out: ApplyReport, kernel: str) -> bool:
    """Swap the pruned linears for sparse-kernel ones; costs that read nn.Linear weights are
    taken first (bytes as stored are the same whichever kernel serves them)."""
    from ..lm.cost import model_costs

    out.costs.update(model_costs(lm.model))
    if kernel == "csr":
        from ..pruning.sparse_format import to_sparse_csr_linear

        to_sparse_csr_linear(lm.model)
    else:
        from ..pruning.semistructured import to_semi_structured_linears

        swapped = to_semi_structured_linears(lm.model)
        out.extra["semi24_backends"] = sorted({m.backend for m in swapped.values()})
    out.extra["kernel"] = kernel
    return True


@register(MethodInfo(
    name="magnitude", family="pruning", version="1",
    summary="zero the smallest-magnitude weights of each output row (unstructured) or of every group of m inputs (N:M)",
    paper="Han et al. 2015, Learning both Weights and Connections for Efficient Neural Networks (NeurIPS)",
    licence="Apache-2.0 (sparsebench)", requires=("torch",), cost_model=_COST, tasks=("lm",),
))
@dataclass(frozen=True)
class Magnitude(_Pruning):
    scheme = "magnitude"


@dataclass(frozen=True)
class _Calibrated(_Pruning):
    backend: Literal["llmcompressor", "reference"] = "llmcompressor"
    needs_calibration = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in ("llmcompressor", "reference"):
            raise ValueError(f"backend={self.backend!r}: must be llmcompressor or reference")

    def backend_name(self) -> str:
        return self.backend

    def worker_env(self) -> str | None:
        return "prune" if self.backend == "llmcompressor" else None


@register(MethodInfo(
    name="wanda", family="pruning", version="1",
    summary="prune by |weight| x the L2 norm of its input activation on calibration text, compared per output row",
    paper="Sun et al. 2024, A Simple and Effective Pruning Approach for Large Language Models (ICLR)",
    licence="Apache-2.0 (sparsebench, llm-compressor)", requires=("llmcompressor (prune environment) or torch",),
    cost_model=_COST, tasks=("lm",),
))
@dataclass(frozen=True)
class Wanda(_Calibrated):
    scheme = "wanda"


@register(MethodInfo(
    name="sparsegpt", family="pruning", version="1",
    summary="one-shot pruning with OBS-style reconstruction of the remaining weights from the calibration Hessian",
    paper="Frantar & Alistarh 2023, SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot (ICML)",
    licence="Apache-2.0 (sparsebench, llm-compressor)", requires=("llmcompressor (prune environment) or torch",),
    cost_model=_COST, tasks=("lm",),
))
@dataclass(frozen=True)
class SparseGPT(_Calibrated):
    scheme = "sparsegpt"


__all__ = ["Magnitude", "Wanda", "SparseGPT"]
