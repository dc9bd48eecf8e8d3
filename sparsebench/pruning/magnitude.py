"""Magnitude pruning: score |W|, per output row (unstructured) or per group of m inputs (N:M)."""

from __future__ import annotations

import torch
from torch import nn

from . import masks
from .layers import prunable_linears


def magnitude_prune_weight(weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                           name: str = "weight") -> torch.Tensor:
    """Pruned copy: unstructured zeroes round(sparsity*in) smallest-|w| weights of each row."""
    return weight * masks.mask_from_scores(weight.detach().abs(), sparsity, nm, name)


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, nm: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
    linears = prunable_linears(model)
    if nm is not None:  # validate every layer before changing any
        for name, lin in linears.items():
            masks.check_divisible(lin.in_features, nm[1], name)
    report = {}
    for name, lin in linears.items():
        lin.weight.data.copy_(magnitude_prune_weight(lin.weight.data, sparsity, nm, name))
        report[name] = (int((lin.weight == 0).sum()), lin.weight.numel())
    return report
