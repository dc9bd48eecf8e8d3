"""Sparse attention inside a transformers model, through its attention-function interface.

`install(model, policy)` registers one attention function with transformers' AttentionInterface
and switches the model to it; each attention module carries the policy that decides, per call,
which keys its queries attend. No model code is copied: transformers computes the projections,
rotary embeddings and cache exactly as for its own attention, and calls us with the query, key
and value states.

Three paths, chosen per call:
- prefill (queries = keys, no padding) with a block layout: the block-sparse kernel of
  sparsebench.kernels.block_attention (a full layout is dense attention: SDPA, bit for bit);
- decode (one query after the cache): the selected keys are gathered, attention runs on them;
- anything else (token-level picks in prefill, a padding mask, a chunked prefill): dense scores
  with a token mask, correct and as slow as dense.

Every call counts the (query, key) pairs attended and the causally visible pairs, per phase,
so the record carries the density achieved and the attention FLOPs done, not the ones asked for.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..kernels.block_attention import block_sparse_attention

NAME = "sparsebench_sparse"


@dataclass
class PhaseStats:
    attended: float = 0.0  # (query, key) pairs attended, summed over query heads and layers
    visible: float = 0.0  # causally visible pairs over the same
    flops: float = 0.0  # attention FLOPs: 4 x head_dim per attended pair (QK and PV), + selection
    selection_flops: float = 0.0
    queries: float = 0.0  # query tokens x heads x layers

    def add(self, attended: float, visible: float, flops: float, selection: float, queries: float) -> None:
        self.attended += attended
        self.visible += visible
        self.flops += flops + selection
        self.selection_flops += selection
        self.queries += queries


@dataclass
class AttentionStats:
    phases: dict[str, PhaseStats] = field(default_factory=lambda: {"prefill": PhaseStats(), "decode": PhaseStats()})
    enabled: bool = True

    def reset(self) -> None:
        self.phases = {"prefill": PhaseStats(), "decode": PhaseStats()}

    def density(self, phase: str) -> float | None:
        p = self.phases[phase]
        return p.attended / p.visible if p.visible else None


class Policy(abc.ABC):
    """Decides which keys the queries of one attention call attend."""

    block_size: int = 64
    density: float = 1.0

    def full(self) -> bool:
        """True when the policy keeps every visible key (density 1): dense attention, exactly."""
        return self.density >= 1.0

    def prefill_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
        """A block layout `[B|1, KV|1, nb, nb]` for a prefill of q against k (same length), or
        None when the policy picks tokens (then `token_mask` is used)."""
        return None

    def token_mask(self, module: Any, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        """A boolean mask `[B|1, H|KV|1, Lq, Lk]` of the keys each query attends (causality is
        applied on top). The default expands the block layout of the rows the queries fall in."""
        raise NotImplementedError

    def decode_keys(self, module: Any, q: torch.Tensor, k: torch.Tensor, pos: int) -> torch.Tensor:
        """Key positions attended by the single query at `pos`: LongTensor `[B, KV or H, n]`."""
        raise NotImplementedError

    def selection_flops(self, q_len: int, k_len: int, heads: int, head_dim: int) -> float:
        """FLOPs spent choosing the keys (scores of a proxy), for the cost proxy."""
        return 0.0


def install(model: Any, policy: Policy, stats: AttentionStats, on_keys: Any = None) -> None:
    """Route every attention module of the model through `policy`; `on_keys(module, keys)`, when
    given, sees every call's keys (calibration)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, sparse_attention_forward)
    # The sdpa mask builder: None for plain causal batches, a boolean mask where there is padding.
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    n = 0
    for module in model.modules():
        if hasattr(module, "layer_idx") and hasattr(module, "q_proj") and hasattr(module, "k_proj"):
            module._sparsebench_policy = policy
            module._sparsebench_stats = stats
            module._sparsebench_on_keys = on_keys
            n += 1
    if n == 0:
        raise ValueError(f"{type(model).__name__}: no attention module with layer_idx and q/k projections to route")
    model.set_attn_implementation(NAME)


def uninstall(model: Any, implementation: str = "sdpa") -> None:
    """Back to transformers' own attention."""
    for module in model.modules():
        for attr in ("_sparsebench_policy", "_sparsebench_stats", "_sparsebench_on_keys"):
            if hasattr(module, attr):
                delattr(module, attr)
    model.set_attn_implementation(implementation)


def sparse_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float | None = None,
                             dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q `[B, H, Lq, D]`, k and v `[B, KV, Lk, D]`
    -> (`[B, Lq, H, D]`, None)."""
    policy: Policy = module._sparsebench_policy
    stats: AttentionStats = module._sparsebench_stats
    if module._sparsebench_on_keys is not None:
        module._sparsebench_on_keys(module, key)
    b, h, lq, d = query.shape
    lk = key.shape[2]
    scale = scaling if scaling is not None else 1.0 / math.sqrt(d)
    g = h // key.shape[1]
    first = lk - lq  # position of the first query (keys cover 0..lk-1)
    visible = float(b * h * (lq * first + lq * (lq + 1) / 2))
    # transformers hands a mask only where plain causality does not describe the batch (padding).
    padded = attention_mask is not None
    phase = "decode" if lq == 1 and lk > 1 else "prefill"

    if policy.full() and not padded:
        out = F.scaled_dot_product_attention(query, key, value, scale=scale, is_causal=lq > 1 and lq == lk,
                                             enable_gqa=g > 1) if lq == lk or lq == 1 else _masked(query, key, value, None, first, scale)
        _count(stats, phase, visible, visible, d, 0.0, b * h * lq)
        return out.transpose(1, 2).contiguous(), None

    if phase == "decode" and not padded:
        pos = lk - 1
        keys = policy.decode_keys(module, query, key, pos)  # [B, KV|H, n]
        out = _gathered(query, key, value, keys, scale)
        attended = float(keys.shape[-1] * b * h)  # every query head attends n keys (shared or its own)
        sel = policy.selection_flops(1, lk, h, d) * b
        _count(stats, phase, attended, visible, d, sel, b * h)
        return out.transpose(1, 2).contiguous(), None

    layout = policy.prefill_layout(module, query, key) if lq == lk and not padded else None
    if layout is not None:
        out = block_sparse_attention(query, key, value, layout, policy.block_size, scale)
        attended = _layout_pairs(layout, policy.block_size, lq) * g * (b if layout.shape[0] == 1 else 1) \
            * (key.shape[1] if layout.shape[1] == 1 else 1)
        _count(stats, phase, attended, visible, d, policy.selection_flops(lq, lk, h, d) * b, b * h * lq)
        return out.transpose(1, 2).contiguous(), None

    q_pos = torch.arange(first, lk, device=query.device)
    mask = policy.token_mask(module, query, key, q_pos)
    if attention_mask is not None:
        mask = mask & (attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0)
    causal = q_pos[:, None] >= torch.arange(lk, device=query.device)[None, :]
    mask = mask & causal
    out = _masked(query, key, value, mask, first, scale)
    heads_in_mask = mask.shape[1]
    attended = float(mask.sum()) * (h // heads_in_mask) * (b if mask.shape[0] == 1 else 1)
    _count(stats, phase, attended, visible, d, policy.selection_flops(lq, lk, h, d) * b, b * h * lq)
    return out.transpose(1, 2).contiguous(), None


def _count(stats: AttentionStats, phase: str, attended: float, visible: float, d: int, selection: float, queries: float) -> None:
    if stats.enabled:
        stats.phases[phase].add(attended, visible, 4.0 * d * attended, selection, queries)


def _layout_pairs(layout: torch.Tensor, bs: int, length: int) -> float:
    """(query, key) pairs a causal block layout attends, summed over its batch and head rows."""
    nb = layout.shape[-1]
    lay = layout & torch.ones(nb, nb, dtype=torch.bool, device=layout.device).tril()
    sizes = torch.clamp(length - torch.arange(nb, device=layout.device) * bs, max=bs).double()  # tokens per block
    off = lay & ~torch.eye(nb, dtype=torch.bool, device=layout.device)
    pairs = (off.double() @ sizes) * sizes  # full off-diagonal blocks: queries x keys
    diag = lay.diagonal(dim1=-2, dim2=-1).double() * sizes * (sizes + 1) / 2
    return float((pairs + diag).sum())


def _gathered(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """One query per sequence against the gathered keys: keys `[B, KV, n]` (shared by a group's
    query heads) or `[B, H, n]` (per query head)."""
    b, h, _, d = q.shape
    kv = k.shape[1]
    idx = keys[..., None].expand(-1, -1, -1, d)
    if keys.shape[1] == h and h != kv:
        kk, vv = k.repeat_interleave(h // kv, 1), v.repeat_interleave(h // kv, 1)
        return F.scaled_dot_product_attention(q, kk.gather(2, idx), vv.gather(2, idx), scale=scale)
    return F.scaled_dot_product_attention(q, k.gather(2, idx), v.gather(2, idx), scale=scale, enable_gqa=h != kv)


def _masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, first: int, scale: float) -> torch.Tensor:
    """Dense attention with a boolean mask `[B|1, H|KV|1, Lq, Lk]` (None: causal from `first`)."""
    b, h, lq, d = q.shape
    kv = k.shape[1]
    if mask is None:
        mask = torch.arange(first, first + lq, device=q.device)[:, None] >= torch.arange(k.shape[2], device=q.device)[None, :]
        mask = mask.view(1, 1, lq, -1)
    if mask.shape[1] not in (1, h):
        mask = mask.repeat_interleave(h // mask.shape[1], 1)
    if h != kv:
        k, v = k.repeat_interleave(h // kv, 1), v.repeat_interleave(h // kv, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    # A query with no key at all attends nothing (SDPA would give NaN): zeros, as the reference.
    return torch.nan_to_num(out, nan=0.0)
