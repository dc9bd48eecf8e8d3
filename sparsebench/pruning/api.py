"""One entry point: `prune(model, scheme, sparsity, pattern, calibration, backend)`.

Decisions:

- sparsity is the fraction of zeroed weights, in [0, 1); anything else is a ValueError.
- N:M ("2:4", "4:8"; N = nonzeros kept per M consecutive inputs) fixes the sparsity at
  1 - N/M. Pass sparsity=None (or exactly 1 - N/M); a different value is a ValueError rather
  than silently ignored or combined.
- sparsity 0 leaves the model bit-identical. Magnitude and Wanda get there without any special
  case (they zero round(0*in) = 0 weights and multiply the rest by exactly 1). SparseGPT's own
  mask rule (`<=` the int(numel*s)-th smallest score per block, from the paper's code, kept in
  both backends) prunes one weight per 128-column block even at s=0, so for SparseGPT s=0 is
  an explicit no-op (reported with backend "noop").
- backend "auto": llm-compressor for Wanda/SparseGPT when `llmcompressor` is importable,
  else the reference implementation; magnitude is always sparsebench's own ("sparsebench").
  The report says which ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from . import masks
from .layers import prunable_linears

SCHEMES = ("magnitude", "wanda", "sparsegpt")
BACKENDS = ("auto", "llmcompressor", "reference")


@dataclass
class PruneReport:
    seconds: float
    backend: str  # "sparsebench" (magnitude), "llmcompressor", "reference" or "noop"
    layers: dict[str, tuple[int, int]]  # pruned weight name -> (zeros, numel)
    scheme: str = ""
    sparsity: float = 0.0  # the effective target (implied by N:M when a pattern is given)
    pattern: str = "unstructured"
    extra: dict = field(default_factory=dict)

    @property
    def achieved_sparsity(self) -> float:
        return masks.total_sparsity(self.layers)

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "backend": self.backend, "scheme": self.scheme, "sparsity": self.sparsity,
                "pattern": self.pattern, "achieved_sparsity": self.achieved_sparsity,
                "layers": {k: list(v) for k, v in self.layers.items()}, **self.extra}


def resolve_backend(scheme: str, backend: str = "auto") -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if scheme == "magnitude":
        return "sparsebench"
    if backend == "auto":
        from .llmc import available

        return "llmcompressor" if available() else "reference"
    return backend


def prune(model: nn.Module, scheme: str, sparsity: float | None, pattern: str = "unstructured",
          calibration: torch.Tensor | None = None, backend: str = "auto", *, blocksize: int = 128,
          percdamp: float = 0.01) -> PruneReport:
    """Prune the decoder linears of a causal LM in place (never embeddings or lm_head).

    calibration: token ids [n_samples, seq_len] (needed by wanda and sparsegpt)."""
    eff, nm = masks.resolve_sparsity(sparsity, pattern)
    chosen = resolve_backend(scheme, backend)
    linears = prunable_linears(model)
    if not linears:
        raise ValueError(f"{type(model).__name__}: no prunable nn.Linear found in its decoder layers")
    if nm is not None:
        for name, lin in linears.items():
            masks.check_divisible(lin.in_features, nm[1], name)
    if scheme != "magnitude":
        if calibration is None:
            raise ValueError(f"{scheme} needs calibration token ids [n_samples, seq_len]; got None")
        if not isinstance(calibration, torch.Tensor) or calibration.dim() != 2 or calibration.numel() == 0:
            raise ValueError("calibration must be a non-empty LongTensor [n_samples, seq_len]")
    common = dict(scheme=scheme, sparsity=eff, pattern=pattern)
    start = time.perf_counter()
    if scheme == "sparsegpt" and eff == 0.0:
        return PruneReport(time.perf_counter() - start, "noop", masks.count_zeros(linears), **common)
    if chosen == "sparsebench":
        from .magnitude import magnitude_prune

        layers = magnitude_prune(model, eff, nm)
        return PruneReport(time.perf_counter() - start, chosen, layers, **common)
    if chosen == "llmcompressor":
        from .llmc import prune_llmcompressor

        return prune_llmcompressor(model, scheme, sparsity, pattern, calibration, blocksize, percdamp)
    from .reference import prune_reference

    layers = prune_reference(model, scheme, eff, nm, calibration, blocksize, percdamp)
    return PruneReport(time.perf_counter() - start, chosen, layers, **common)
