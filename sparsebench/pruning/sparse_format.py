"""What a pruned model costs when stored sparsely, a FLOPs-per-token proxy, and CSR linears.

Storage, per pruned weight, the smallest of three layouts (values keep the weight's dtype):
  dense   numel values
  csr     nnz values + nnz int32 column indices + (rows+1) int32 row pointers
  bitmask ceil(numel/8) bytes of packed keep bits (row-major) + nnz values
Everything else (embeddings, norms, lm_head; a tied lm_head once) is stored dense. The real
size is measured by writing all tensors to one safetensors file in a temporary folder (so the
header is counted too); the estimate from the formulas above is reported beside it.

FLOPs per token (proxy): 2 * nnz for every pruned linear, 2 * numel for the other linear
weights (lm_head), plus, if `context` > 0, attention's score and value products,
4 * layers * context * (heads * head_dim). Norms, activations and softmax are left out.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .layers import decoder_layers, prunable_linears



def _to_csr(w: torch.Tensor) -> torch.Tensor:
    # torch notes on CSR construction that its CSR support is "beta"; the kernels used here
    # (to_sparse_csr, sparse.mm) are checked against dense in the tests, so the notice is noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return w.to_sparse_csr()


def layout_bytes(weight: torch.Tensor) -> dict[str, int]:
    rows, cols = weight.shape
    numel = weight.numel()
    nnz = int((weight != 0).sum())
    item = weight.element_size()
    return {"dense": numel * item, "csr": nnz * item + nnz * 4 + (rows + 1) * 4,
            "bitmask": -(-numel // 8) + nnz * item}


def encode(name: str, weight: torch.Tensor, layout: str) -> dict[str, torch.Tensor]:
    w = weight.detach().cpu().contiguous()
    if layout == "dense":
        return {name: w}
    if layout == "csr":
        csr = _to_csr(w)
        return {f"{name}.csr_values": csr.values().contiguous(),
                f"{name}.csr_col_indices": csr.col_indices().to(torch.int32).contiguous(),
                f"{name}.csr_crow_indices": csr.crow_indices().to(torch.int32).contiguous(),
                f"{name}.csr_shape": torch.tensor(list(w.shape), dtype=torch.int64)}
    if layout == "bitmask":
        keep = (w != 0).reshape(-1).numpy()
        bits = torch.from_numpy(np.packbits(keep))
        return {f"{name}.bitmask": bits, f"{name}.bitmask_values": w.reshape(-1)[torch.from_numpy(keep)].contiguous(),
                f"{name}.bitmask_shape": torch.tensor(list(w.shape), dtype=torch.int64)}
    raise ValueError(f"unknown layout {layout!r}")


def decode(tensors: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Inverse of `encode` (used by tests to check the stored form is lossless)."""
    if name in tensors:
        return tensors[name]
    if f"{name}.csr_values" in tensors:
        shape = tuple(tensors[f"{name}.csr_shape"].tolist())
        return torch.sparse_csr_tensor(tensors[f"{name}.csr_crow_indices"].long(), tensors[f"{name}.csr_col_indices"].long(),
                                       tensors[f"{name}.csr_values"], size=shape,
                                       check_invariants=True).to_dense()
    shape = tuple(tensors[f"{name}.bitmask_shape"].tolist())
    numel = int(np.prod(shape))
    keep = torch.from_numpy(np.unpackbits(tensors[f"{name}.bitmask"].numpy())[:numel].astype(bool))
    out = torch.zeros(numel, dtype=tensors[f"{name}.bitmask_values"].dtype)
    out[keep] = tensors[f"{name}.bitmask_values"]
    return out.reshape(shape)


@dataclass
class SparseStorage:
    bytes_on_disk: int  # the safetensors file, header included
    dense_bytes_on_disk: int  # the same model written dense, for comparison
    estimated_bytes: int  # sum of the layout formulas plus dense parts (no header)
    nnz: int  # nonzeros of the pruned linears
    numel: int  # their total size
    layouts: dict[str, tuple[str, int]] = field(default_factory=dict)  # weight -> (layout, bytes)

    @property
    def ratio(self) -> float:
        return self.bytes_on_disk / self.dense_bytes_on_disk


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Named parameters and buffers, tied tensors once (by storage)."""
    seen: set[int] = set()
    out = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        key = t.data_ptr()
        if key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().cpu().contiguous()
    return out


def storage(model: nn.Module, folder: str | None = None) -> SparseStorage:
    from safetensors.torch import save_file

    linears = {f"{n}.weight": m for n, m in prunable_linears(model).items()}
    tensors = _state_tensors(model)
    dense = {n: t.clone() if t.dim() else t for n, t in tensors.items()}
    sparse: dict[str, torch.Tensor] = {}
    layouts = {}
    estimated = nnz = numel = 0
    for name, t in tensors.items():
        if name in linears:
            sizes = layout_bytes(t)
            best = min(sizes, key=lambda k: (sizes[k], k != "dense"))
            layouts[name] = (best, sizes[best])
            sparse.update(encode(name, t, best))
            estimated += sizes[best]
            nnz += int((t != 0).sum())
            numel += t.numel()
        else:
            sparse[name] = t
            estimated += t.numel() * t.element_size()
    with tempfile.TemporaryDirectory(prefix="sparsebench-sparse-", dir=folder) as tmp:
        sp, dp = os.path.join(tmp, "sparse.safetensors"), os.path.join(tmp, "dense.safetensors")
        save_file(sparse, sp)
        save_file(dense, dp)
        size, dsize = os.path.getsize(sp), os.path.getsize(dp)
    return SparseStorage(size, dsize, estimated, nnz, numel, layouts)


def flops_per_token(model: nn.Module, context: int = 0) -> dict[str, int]:
    pruned = prunable_linears(model)
    ids = {id(m) for m in pruned.values()}
    sparse_part = sum(2 * int((m.weight != 0).sum()) for m in pruned.values())
    dense_part = sum(2 * m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in ids)
    attn = 0
    if context:
        cfg = getattr(model, "config", None)
        heads = getattr(cfg, "num_attention_heads", 0)
        head_dim = getattr(cfg, "head_dim", None) or (getattr(cfg, "hidden_size", 0) // max(1, heads))
        attn = 4 * len(decoder_layers(model)[1]) * context * heads * head_dim
    dense_linears = sum(2 * m.weight.numel() for m in pruned.values())
    return {"flops": sparse_part + dense_part + attn, "linear_sparse": sparse_part, "linear_dense_part": dense_part,
            "attention": attn, "dense_model_flops": dense_linears + dense_part + attn}


class CSRLinear(nn.Module):
    """nn.Linear replacement computing y = x W^T + b with W stored as torch sparse CSR."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight_csr = _to_csr(linear.weight.detach())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight_csr, flat.T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def to_sparse_csr_linear(model: nn.Module) -> dict[str, CSRLinear]:
    """Replace every prunable linear by a CSRLinear (in place; for CPU inference speed tests)."""
    replaced = {}
    for name, lin in prunable_linears(model).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = CSRLinear(lin)
        setattr(parent, child, new)
        replaced[name] = new
    return replaced


@torch.no_grad()
def benchmark_csr(out_features: int = 1536, in_features: int = 576, sparsity: float = 0.9, tokens: int = 256,
                  repeats: int = 20, threads: int | None = None, seed: int = 0) -> dict[str, float]:
    """Median milliseconds of one random magnitude-pruned linear, dense vs CSR, on CPU."""
    from .magnitude import magnitude_prune_weight

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(seed)
        lin = nn.Linear(in_features, out_features, bias=False)
        lin.weight.data = magnitude_prune_weight(torch.randn(out_features, in_features, generator=g), sparsity)
        x = torch.randn(tokens, in_features, generator=g)
        csr = CSRLinear(lin)
        assert torch.allclose(lin(x), csr(x), atol=1e-4, rtol=1e-4)

        def timed(fn) -> float:
            fn(x)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t)
            return 1000 * float(np.median(times))

        dense_ms, csr_ms = timed(lin), timed(csr)
    finally:
        torch.set_num_threads(old_threads)
    return {"dense_ms": dense_ms, "csr_ms": csr_ms, "speedup": dense_ms / csr_ms, "sparsity": sparsity,
            "shape": (out_features, in_features), "tokens": tokens}
