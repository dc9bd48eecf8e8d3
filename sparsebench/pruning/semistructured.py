"""2:4 semi-structured sparse linears on NVIDIA GPUs (torch's `to_sparse_semi_structured`).

A 2:4 pruned weight (at most two non-zeros in every four consecutive inputs of a row) can be
stored compressed (half the values plus 2-bit position metadata) and multiplied by the sparse
tensor cores of Ampere and later GPUs (cuSPARSELt, or CUTLASS). This is the one weight-sparsity
pattern with a hardware fast path, so `kernel=semi24` lets the lm suite's latency columns show
what it buys on a GPU profile. On a CPU there is no such kernel: the method refuses to run there
(`require_device`) rather than record a meaningless number.

The layer computes exactly what the dense pruned layer computes up to floating-point summation
order; fp32 weights go through the kernels' TF32 path, so the comparison in the tests and the
benchmark states its tolerance. Two backends: cuSPARSELt (fp16, bf16, int8, fp8) and CUTLASS
(also fp32, which the lm suite's fp32 models need); `auto` takes cuSPARSELt where it takes the
dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .layers import prunable_linears
from .masks import follows_nm

MIN_CAPABILITY = (8, 0)  # sparse tensor cores: Ampere (sm80) and later


def device_problem(device: str, dtype: torch.dtype = torch.float32) -> str | None:
    """Why 2:4 semi-structured kernels cannot run on `device` for weights of `dtype`, or None
    when they can. The lm suite measures fp32 models, hence the default."""
    if device != "cuda":
        return (f"kernel=semi24 runs torch's 2:4 semi-structured sparse kernels, which need an NVIDIA GPU of "
                f"compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or later; this profile's device is {device}. "
                "Use kernel=dense or kernel=csr here, or run under a GPU profile")
    if not torch.cuda.is_available():
        return "kernel=semi24 needs CUDA, but torch here has no usable CUDA device (torch.cuda.is_available() is False)"
    cap = torch.cuda.get_device_capability()
    if cap < MIN_CAPABILITY:
        return (f"kernel=semi24 needs compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or later (sparse tensor "
                f"cores); {torch.cuda.get_device_name()} has {cap[0]}.{cap[1]}")
    try:
        resolve_backend("auto", dtype)
    except ValueError as e:
        return f"kernel=semi24: {e}"
    return None


def _cutlass() -> Any:
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    return SparseSemiStructuredTensorCUTLASS


def _cusparselt() -> Any:
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT

    return SparseSemiStructuredTensorCUSPARSELT


_BACKENDS = {"cutlass": _cutlass, "cusparselt": _cusparselt}


def resolve_backend(backend: str, dtype: torch.dtype) -> str:
    """`auto`: cuSPARSELt where it takes the dtype (not fp32), else CUTLASS.

    torch builds its CUTLASS 2:4 kernels for compute capability 8.x only (measured on an H200,
    9.0: "Supported only on GPUs with compute capability 8.x"), so on Hopper fp32 weights have
    no 2:4 kernel at all; that is refused here rather than failing inside the first matmul."""
    if backend == "auto":
        backend = "cusparselt" if dtype in _cusparselt()._DTYPE_SHAPE_CONSTRAINTS else "cutlass"
    elif backend not in _BACKENDS:
        raise ValueError(f"semi-structured backend {backend!r}: one of auto, {', '.join(_BACKENDS)}")
    if dtype not in _BACKENDS[backend]()._DTYPE_SHAPE_CONSTRAINTS:
        raise ValueError(f"the {backend} 2:4 kernels do not take {dtype}")
    if backend == "cutlass" and torch.cuda.is_available():
        cap = torch.cuda.get_device_capability()
        if cap[0] != 8:
            raise ValueError(f"{dtype} weights need torch's CUTLASS 2:4 kernels, which run on compute capability 8.x "
                             f"only; {torch.cuda.get_device_name()} is {cap[0]}.{cap[1]}, where the 2:4 kernels "
                             "(cuSPARSELt) take fp16, bf16, int8 and fp8 weights")
    return backend


class SemiStructuredLinear(nn.Module):
    """nn.Linear replacement computing y = x W^T + b with W held as a 2:4 semi-structured tensor."""

    def __init__(self, linear: nn.Linear, name: str = "weight", backend: str = "auto"):
        super().__init__()
        w = linear.weight.detach()
        if not follows_nm(w, 2, 4):
            raise ValueError(f"{name}: not 2:4 sparse (a group of 4 consecutive inputs has more than 2 non-zeros); "
                             "prune with m=4, sparsity=0.5 first")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.backend = resolve_backend(backend, w.dtype)
        self.weight_24 = _BACKENDS[self.backend]().from_dense(w.contiguous())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The kernels take a 2-D dense operand (padded inside torch to their minimum row count,
        # which decode's single token needs).
        flat = x.reshape(-1, self.in_features)
        y = torch.nn.functional.linear(flat, self.weight_24, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)


def to_semi_structured_linears(model: nn.Module, backend: str = "auto") -> dict[str, SemiStructuredLinear]:
    """Replace every prunable linear (already 2:4 pruned) by a SemiStructuredLinear, in place."""
    replaced: dict[str, SemiStructuredLinear] = {}
    for name, lin in prunable_linears(model).items():
        parent_name, _, child = name.rpartition(".")
        parent: Any = model.get_submodule(parent_name) if parent_name else model
        new = SemiStructuredLinear(lin, name, backend)
        setattr(parent, child, new)
        replaced[name] = new
    return replaced
