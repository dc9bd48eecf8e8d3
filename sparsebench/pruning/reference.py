"""Plain reference implementations of Wanda and SparseGPT on one nn.Linear, and a sequential
model-level driver that uses them (the fallback backend when llm-compressor is not installed).

Written from the papers and their reference code, for clarity rather than speed:

- Wanda (Sun et al. 2023, arXiv:2306.11695): score S_ij = |W_ij| * ||X_j||_2 (the L2 norm of
  input feature j over all calibration tokens); per output row, zero the lowest-scoring
  round(sparsity * in) weights, or for N:M keep the n highest in every m consecutive inputs.
  No weight update.
- SparseGPT (Frantar & Alistarh 2023, arXiv:2301.00774; code IST-DASLab/sparsegpt
  `SparseGPT.fasterprune`): Hessian H = 2/n X^T X, dampened by percdamp * mean(diag H),
  upper Cholesky factor of H^-1; columns are processed in blocks of `blocksize`; in each block
  the mask is chosen adaptively from w^2 / [H^-1]_jj^2 (unstructured: one threshold over the
  whole block, all rows together, `<=` the int(numel*sparsity)-th smallest value, exactly as
  the reference code; N:M: per row and group of m), and each pruned weight's error is spread
  over the not-yet-processed columns (the OBS update).

Two properties of the paper's SparseGPT rule that differ from the per-row masks elsewhere:
the per-layer zero fraction is int(numel_block*s)+1 per block (the `<=` keeps the threshold
element too), not exactly round(s*in) per row; and at sparsity 0 it still zeroes one weight
per block. `api.prune` therefore treats sparsity 0 as a no-op for SparseGPT.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from . import masks
from .layers import (capture_first_layer_inputs, decoder_layers, hook_input_stats, layer_linears, run_layer)

DEFAULT_BLOCKSIZE = 128
DEFAULT_PERCDAMP = 0.01


# ---------------------------------------------------------------------------------------- Wanda
def wanda_scores(weight: torch.Tensor, col_sumsq: torch.Tensor) -> torch.Tensor:
    """|W| * ||X_j||_2, from the per-input-column sum of squares of the calibration inputs."""
    return weight.abs().to(torch.float32) * torch.sqrt(col_sumsq.to(torch.float32)).reshape(1, -1)


def wanda_from_stats(weight: torch.Tensor, col_sumsq: torch.Tensor, sparsity: float,
                     nm: tuple[int, int] | None = None, name: str = "weight") -> torch.Tensor:
    keep = masks.mask_from_scores(wanda_scores(weight, col_sumsq), sparsity, nm, name)
    return weight * keep


def wanda_reference(weight: torch.Tensor, x: torch.Tensor, sparsity: float,
                    nm: tuple[int, int] | None = None, name: str = "weight") -> torch.Tensor:
    """Wanda-pruned copy of `weight` [out, in] given calibration inputs x [tokens, in]."""
    x = x.reshape(-1, x.shape[-1]).to(torch.float64)
    return wanda_from_stats(weight, (x * x).sum(dim=0), sparsity, nm, name)


# ------------------------------------------------------------------------------------ SparseGPT
def hessian(x: torch.Tensor) -> torch.Tensor:
    """H = 2/n X^T X for x [tokens, in] (n = tokens; any constant factor leaves SparseGPT's result
    unchanged, since the dampening is relative and the mask scores and updates are scale-free)."""
    x = x.reshape(-1, x.shape[-1]).to(torch.float64)
    return 2.0 / x.shape[0] * (x.T @ x)


@torch.no_grad()
def sparsegpt_from_hessian(weight: torch.Tensor, H: torch.Tensor, sparsity: float,
                           nm: tuple[int, int] | None = None, blocksize: int = DEFAULT_BLOCKSIZE,
                           percdamp: float = DEFAULT_PERCDAMP, name: str = "weight",
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """SparseGPT's `fasterprune` on one weight [out, in] with Hessian H [in, in]."""
    rows, cols = weight.shape
    if nm is not None:
        masks.check_divisible(cols, nm[1], name)
        prune_n, prune_m = nm[1] - nm[0], nm[1]  # the reference code counts pruned weights
    W = weight.detach().clone().to(dtype)
    H = H.detach().clone().to(dtype)

    dead = torch.diag(H) == 0  # inputs that never fire: weight is irrelevant, prune it
    H[dead, dead] = 1
    W[:, dead] = 0

    damp = percdamp * torch.mean(torch.diag(H))
    idx = torch.arange(cols)
    H[idx, idx] += damp
    Hinv = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(Hinv)
    Hinv = torch.linalg.cholesky(Hinv, upper=True)  # rows of the upper factor drive the updates

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]

        if nm is None:
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh  # True = pruned
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if nm is not None and i % prune_m == 0:
                tmp = W1[:, i:i + prune_m] ** 2 / (torch.diag(Hinv1)[i:i + prune_m].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1

        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W.to(weight.dtype)


def sparsegpt_reference(weight: torch.Tensor, x: torch.Tensor, sparsity: float,
                        nm: tuple[int, int] | None = None, blocksize: int = DEFAULT_BLOCKSIZE,
                        percdamp: float = DEFAULT_PERCDAMP, name: str = "weight") -> torch.Tensor:
    """SparseGPT-pruned copy of `weight` [out, in] given calibration inputs x [tokens, in]."""
    return sparsegpt_from_hessian(weight, hessian(x), sparsity, nm, blocksize, percdamp, name)


# ------------------------------------------------------------------------------ model-level driver
@torch.no_grad()
def prune_reference(model: nn.Module, scheme: str, sparsity: float, nm: tuple[int, int] | None,
                    calibration: torch.Tensor, blocksize: int = DEFAULT_BLOCKSIZE,
                    percdamp: float = DEFAULT_PERCDAMP, chunk_size: int = 8) -> dict[str, tuple[int, int]]:
    """Prune every decoder layer's linears in place, layer by layer: layer i's calibration
    inputs come from the already-pruned layers 0..i-1 (Wanda's and SparseGPT's `prune_*`
    drivers, and llm-compressor's sequential pipeline with error propagation). Within a layer
    all linears see the inputs of the still-dense layer (one calibration pass per layer), then
    are pruned together. Returns {name: (zeros, numel)}."""
    if scheme not in ("wanda", "sparsegpt"):
        raise ValueError(f"reference backend schemes are 'wanda' and 'sparsegpt', got {scheme!r}")
    was_training = model.training
    model.eval()
    try:
        _, layers = decoder_layers(model)
        inputs = capture_first_layer_inputs(model, calibration, chunk_size)
        report: dict[str, tuple[int, int]] = {}
        for i, layer in enumerate(layers):
            linears = layer_linears(model, i)
            stats, handles = hook_input_stats(linears, hessian=scheme == "sparsegpt")
            try:
                run_layer(layer, inputs)
            finally:
                for h in handles:
                    h.remove()
            for name, lin in linears.items():
                st = stats[name]
                if st.tokens == 0:
                    raise RuntimeError(f"{name}: received no calibration input")
                if scheme == "wanda":
                    new = wanda_from_stats(lin.weight.data, st.sumsq, sparsity, nm, name)
                else:
                    H = 2.0 / st.samples * st.xtx  # the reference code's normalisation (n = sequences)
                    new = sparsegpt_from_hessian(lin.weight.data, H, sparsity, nm, blocksize, percdamp, name)
                lin.weight.data.copy_(new)
                report[name] = (int((lin.weight == 0).sum()), lin.weight.numel())
            if i + 1 < len(layers):
                inputs.hidden = run_layer(layer, inputs)  # propagate through the pruned layer
        return report
    finally:
        model.train(was_training)
