"""Masks from importance scores, the N:M pattern grammar, and zero counting.

Conventions used across sparsebench.pruning:

- A *keep mask* is a bool tensor shaped like the weight, True where the weight survives.
- `nm = (n, m)` means "N:M" in NVIDIA's sense: at most `n` nonzeros in every `m` consecutive
  input weights of an output row (2:4 -> 50% sparsity, 4:8 -> 50%, 1:4 -> 75%). llm-compressor's
  and the SparseGPT/Wanda reference code's `prune_n` counts the *pruned* weights instead; the
  adapters convert (see llmc.py).
- Unstructured masks compare weights within each output row (Wanda's comparison group) and
  zero exactly `round(sparsity * in_features)` weights per row.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping

import torch
from torch import nn

_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    """"unstructured" (or None) -> None; "N:M" -> (n, m) with 1 <= n < m (n = nonzeros kept)."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be 'unstructured' or 'N:M' (e.g. '2:4'), got {pattern!r}")
    if pattern.strip().lower() == "unstructured":
        return None
    match = _NM.match(pattern)
    if not match:
        raise ValueError(f"pattern must be 'unstructured' or 'N:M' (e.g. '2:4', '4:8'), got {pattern!r}")
    n, m = int(match.group(1)), int(match.group(2))
    if not 1 <= n < m:
        raise ValueError(f"pattern {pattern!r}: N:M needs 1 <= N < M (N = nonzeros kept in every M weights)")
    return n, m


def resolve_sparsity(sparsity: float | None, pattern: str | None) -> tuple[float, tuple[int, int] | None]:
    """Validate (sparsity, pattern) and return (effective sparsity, nm).

    Unstructured: sparsity is required, a real number in [0, 1).
    N:M: the pattern fixes the sparsity at 1 - n/m; `sparsity` may be None or that value
    (within 1e-9); anything else is a ValueError rather than being silently ignored.
    """
    nm = parse_pattern(pattern)
    if nm is None:
        if sparsity is None:
            raise ValueError("unstructured pruning needs a sparsity in [0, 1), got None")
        _check_fraction(sparsity)
        return float(sparsity), None
    implied = 1.0 - nm[0] / nm[1]
    if sparsity is None:
        return implied, nm
    _check_fraction(sparsity)
    if abs(float(sparsity) - implied) > 1e-9:
        raise ValueError(f"pattern {pattern!r} implies sparsity {implied:g}; got sparsity={sparsity!r} "
                         f"(pass sparsity=None or {implied:g})")
    return implied, nm


def _check_fraction(sparsity: object) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(float(sparsity)):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of weights set to zero), got {sparsity!r}")


def check_divisible(in_features: int, m: int, name: str = "weight") -> None:
    if in_features % m:
        raise ValueError(f"{name}: in_features={in_features} is not a multiple of M={m}, "
                         f"so an N:M pattern over groups of {m} consecutive inputs does not fit")


def pruned_per_row(in_features: int, sparsity: float) -> int:
    """Weights zeroed in each output row for unstructured per-row masks: round(sparsity * in)."""
    return int(round(sparsity * in_features))


def unstructured_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep mask that zeroes the round(sparsity*in) lowest-scoring weights of every row.

    Ties are broken by column index (stable sort: earlier columns are pruned first)."""
    rows, cols = scores.shape
    k = pruned_per_row(cols, sparsity)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        idx = torch.sort(scores, dim=1, stable=True).indices[:, :k]
        keep.scatter_(1, idx, False)
    return keep


def nm_mask(scores: torch.Tensor, n: int, m: int, name: str = "weight") -> torch.Tensor:
    """Keep mask with the n highest-scoring weights in every group of m consecutive inputs."""
    rows, cols = scores.shape
    check_divisible(cols, m, name)
    groups = scores.reshape(rows, cols // m, m)
    # prune the (m - n) lowest of each group; topk(largest=False) as in Wanda's/SparseGPT's code
    idx = torch.topk(groups, m - n, dim=2, largest=False).indices
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(2, idx, False)
    return keep.reshape(rows, cols)


def mask_from_scores(scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None,
                     name: str = "weight") -> torch.Tensor:
    if nm is None:
        return unstructured_mask(scores, sparsity)
    return nm_mask(scores, nm[0], nm[1], name)


def follows_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of m consecutive inputs of every row has at most n nonzeros."""
    rows, cols = weight.shape
    if cols % m:
        return False
    nonzero = (weight != 0).reshape(rows, cols // m, m).sum(dim=2)
    return bool((nonzero <= n).all())


def count_zeros(linears: Mapping[str, nn.Module] | nn.Module) -> dict[str, tuple[int, int]]:
    """{name: (zeros, numel)} of each linear's weight; a model means its prunable linears."""
    if isinstance(linears, nn.Module):
        from .layers import prunable_linears

        linears = prunable_linears(linears)
    return {name: (int((mod.weight == 0).sum()), mod.weight.numel()) for name, mod in linears.items()}


def total_sparsity(layers: Mapping[str, tuple[int, int]] | Iterable[tuple[int, int]]) -> float:
    pairs = list(layers.values()) if isinstance(layers, Mapping) else list(layers)
    numel = sum(n for _, n in pairs)
    return sum(z for z, _ in pairs) / numel if numel else 0.0
