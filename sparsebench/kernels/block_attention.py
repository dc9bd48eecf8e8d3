"""Block-sparse causal attention: a dense reference, FlexAttention, and our grouped flash kernel.

A block layout says which key blocks each query block attends: a boolean tensor
`[B or 1, KV or 1, n_q_blocks, n_k_blocks]`, one row per query block of `block_size` positions,
shared by the query heads of a key/value head group (grouped-query attention: the heads that read
the same keys read the same blocks). Attention is causal inside the diagonal block and blocks
above the diagonal are ignored. Three implementations compute the same thing:

- `reference_attention`: the layout expanded to a token mask, dense scores in float64. Plain and
  slow; what the others are tested against.
- `flex_attention_blocks`: torch's FlexAttention with a BlockMask built from the layout, compiled
  (inductor generates the CPU or GPU kernel and skips the empty blocks).
- `block_sparse_attention`: ours. Query blocks are grouped by how many key blocks they attend
  (and whether the diagonal is among them); each group is one call of torch's fused flash
  attention kernel on gathered key/value blocks, with the query heads of a group stacked into one
  tall query (they share keys, so the matrix products are G times taller), the diagonal block
  placed last so that one small causal mask serves the whole group. The work done is the layout's
  blocks and nothing else, in the same fused kernel dense attention uses, which is why it keeps
  close to the work-ratio limit where FlexAttention's generated CPU kernel does not.

Sequence lengths that are not a multiple of the block size are padded; the padded keys fall in
the last diagonal block after every real query, so its causal mask hides them, and the padded
queries are dropped.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F


def causal_layout(n_q_blocks: int, n_k_blocks: int | None = None) -> torch.Tensor:
    """Every block on or below the diagonal: the dense causal layout `[1, 1, nq, nk]`."""
    nk = n_q_blocks if n_k_blocks is None else n_k_blocks
    return torch.ones(n_q_blocks, nk, dtype=torch.bool).tril().view(1, 1, n_q_blocks, nk)


def layout_density(layout: torch.Tensor) -> float:
    """Kept blocks over causal blocks (blocks above the diagonal do not count either way)."""
    nq, nk = layout.shape[-2:]
    causal = torch.ones(nq, nk, dtype=torch.bool, device=layout.device).tril()
    kept = (layout & causal).sum(dim=(-2, -1)).double()
    return float(kept.mean() / causal.sum())


def token_mask(layout: torch.Tensor, block_size: int, q_len: int, k_len: int) -> torch.Tensor:
    """The layout as a boolean token mask `[B|1, KV|1, q_len, k_len]`, causal."""
    m = layout.repeat_interleave(block_size, -2).repeat_interleave(block_size, -1)[..., :q_len, :k_len]
    return m & torch.ones(q_len, k_len, dtype=torch.bool, device=layout.device).tril()


def topk_layout(n_blocks: int, density: float, batch: int = 1, heads: int = 1, seed: int = 0) -> torch.Tensor:
    """A seeded random layout `[batch, heads, nb, nb]` shaped like a query-aware top-k selection:
    query block row r keeps its diagonal block and randomly chosen earlier blocks, so that it
    attends `min(r + 1, ceil(density * (r + 1)))` blocks (at least one: the diagonal). Each
    (batch, head) row gets its own choice, as a per-head top-k would."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density {density}: want 0 < density <= 1")
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(1, n_blocks + 1, dtype=torch.float64)
    # The small slack keeps an exact product (0.5 * 4 = 2.0) from rounding up to the next block.
    count = torch.ceil(density * rows - 1e-9).clamp(1).long()  # [nb]
    score = torch.rand(batch, heads, n_blocks, n_blocks, generator=gen)
    score.diagonal(dim1=-2, dim2=-1).fill_(2.0)  # ranks first: the diagonal is always kept
    score.masked_fill_(~torch.ones(n_blocks, n_blocks, dtype=torch.bool).tril(), -1.0)  # never above it
    rank = score.argsort(-1, descending=True).argsort(-1)
    return rank < count[:, None]


def sliding_window_layout(n_blocks: int, window: int) -> torch.Tensor:
    """Each query block attends itself and the `window - 1` blocks before it: `[1, 1, nb, nb]`."""
    if window < 1:
        raise ValueError(f"window {window}: want at least 1 block")
    causal = torch.ones(n_blocks, n_blocks, dtype=torch.bool).tril()
    return (causal & ~causal.tril(-window)).view(1, 1, n_blocks, n_blocks)


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor, block_size: int) -> None:
    """Raise ValueError naming what is wrong with the shapes of an attention call."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 4:
            raise ValueError(f"{name} has shape {tuple(x.shape)}: want 4-D [B, H or KV, L, D]")
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ: want the same [B, KV, L, D]")
    b, h, length, d = q.shape
    if k.shape[0] != b or k.shape[2] != length or k.shape[3] != d:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)}: want the same batch, length and head dim")
    kv = k.shape[1]
    if kv == 0 or h % kv:
        raise ValueError(f"q has {h} heads, k and v {kv}: the query heads must be a multiple of the key/value heads")
    if block_size < 1:
        raise ValueError(f"block size {block_size}: want at least 1")
    if layout.dtype != torch.bool:
        raise ValueError(f"layout dtype {layout.dtype}: want torch.bool")
    nb = -(-length // block_size)
    if layout.dim() != 4 or layout.shape[-2:] != (nb, nb):
        raise ValueError(f"layout {tuple(layout.shape)}: want [B|1, KV|1, {nb}, {nb}] blocks for length {length} "
                         f"at block size {block_size}")
    if layout.shape[0] not in (1, b) or layout.shape[1] not in (1, kv):
        raise ValueError(f"layout {tuple(layout.shape)}: its batch and head dims must be 1 or B={b} and KV={kv}")


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor,
                        block_size: int, scale: float | None = None) -> torch.Tensor:
    """Dense masked attention in float64: q `[B, H, L, D]`, k and v `[B, KV, L, D]` -> `[B, H, L, D]`.

    A query row with no key at all (its block row of the layout keeps no block on or below the
    diagonal) returns zeros, as `block_sparse_attention` does."""
    check_inputs(q, k, v, layout, block_size)
    b, h, lq, d = q.shape
    kv = k.shape[1]
    g = h // kv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    kk = k.double().repeat_interleave(g, 1)
    vv = v.double().repeat_interleave(g, 1)
    mask = token_mask(layout.to(q.device), block_size, lq, k.shape[2])
    if mask.shape[1] > 1:
        # One row per key/value head: repeated for its query heads. A layout shared by all heads
        # (size 1 there) broadcasts as it is; repeating it would give G rows, not H.
        mask = mask.repeat_interleave(g, 1)
    out = torch.empty(b, h, lq, d, dtype=torch.float64, device=q.device)
    # Query rows in chunks: float64 scores for all of L=4096 and 9 heads would be 1.2 GB, and
    # softmax and masking copy them a few times.
    step = 512
    for start in range(0, lq, step):
        rows = slice(start, start + step)
        s = torch.matmul(q[:, :, rows].double(), kk.transpose(-1, -2)) * scale
        s = s.masked_fill(~mask[:, :, rows], float("-inf"))
        p = torch.softmax(s, -1).nan_to_num(0.0)
        out[:, :, rows] = torch.matmul(p, vv)
    return out.to(q.dtype)


def _pad(x: torch.Tensor, length: int) -> torch.Tensor:
    return x if x.shape[2] == length else F.pad(x, (0, 0, 0, length - x.shape[2]))


@lru_cache(maxsize=64)
def _diag_mask(g: int, block_size: int, count: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask `[1, 1, g*bs, count*bs]`: causal inside the last (diagonal) block."""
    m = torch.zeros(block_size, count * block_size, dtype=dtype, device=device)
    m[:, -block_size:] = torch.full((block_size, block_size), float("-inf"), dtype=dtype, device=device).triu(1)
    return m.repeat(g, 1).view(1, 1, g * block_size, count * block_size)


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    if q.device.type == "cpu":
        # The fused CPU flash kernel directly: it takes a broadcast additive mask without
        # materializing it (the public SDPA may route a masked call to the math path).
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=mask, scale=scale)[0]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor,
                           block_size: int, scale: float | None = None) -> torch.Tensor:
    """Causal attention over the layout's blocks: q `[B, H, L, D]`, k and v `[B, KV, L, D]`
    (H a multiple of KV), layout `[B|1, KV|1, ceil(L/bs), ceil(L/bs)]` -> `[B, H, L, D]`."""
    check_inputs(q, k, v, layout, block_size)
    b, h, length, d = q.shape
    kv = k.shape[1]
    g = h // kv
    bs = block_size
    nb = -(-length // bs)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    padded = nb * bs
    q, k, v = _pad(q, padded), _pad(k, padded), _pad(v, padded)
    lay = (layout.to(q.device) & torch.ones(nb, nb, dtype=torch.bool, device=q.device).tril()).expand(b, kv, nb, nb)
    diag = lay.diagonal(dim1=-2, dim2=-1)  # [b, kv, nb]
    off = lay & ~torch.eye(nb, dtype=torch.bool, device=q.device)
    n_off = off.sum(-1)  # [b, kv, nb]
    # Selected off-diagonal blocks first, in ascending order: a stable sort of "not selected".
    order = torch.sort((~off).to(torch.uint8), dim=-1, stable=True).indices

    # Gathers are index_select over rows of whole blocks (a memcpy each), not element indexing.
    qv = q.reshape(b, kv, g, nb, bs * d).transpose(2, 3).reshape(b * kv * nb, g * bs * d)
    kb = k.reshape(b * kv * nb, bs * d)
    vb = v.reshape(b * kv * nb, bs * d)
    out = q.new_zeros(b * kv * nb, g * bs * d)
    key = n_off * 2 + diag.long()
    for group in torch.unique(key).tolist():
        count_off, has_diag = divmod(int(group), 2)
        count = count_off + has_diag
        if count == 0:
            continue  # no key: the output stays zero, as in the reference
        bi, hi, ri = (key == group).nonzero(as_tuple=True)
        blocks = order[bi, hi, ri, :count_off]
        if has_diag:
            blocks = torch.cat([blocks, ri[:, None]], 1)
        n = bi.numel()
        rows = (bi * kv + hi) * nb + ri
        src = ((bi * kv + hi) * nb)[:, None] + blocks
        qg = qv.index_select(0, rows).view(n, 1, g * bs, d)
        kg = kb.index_select(0, src.reshape(-1)).view(n, 1, count * bs, d)
        vg = vb.index_select(0, src.reshape(-1)).view(n, 1, count * bs, d)
        # No separate padding mask: the padded keys all lie in the last block, which only the last
        # query row can attend (causal), and only as its diagonal block, whose causal mask already
        # hides every key after the row's real queries (the padded queries are dropped).
        mask = _diag_mask(g, bs, count, str(q.device), q.dtype) if has_diag else None
        out.index_copy_(0, rows, _flash(qg, kg, vg, mask, scale).reshape(n, g * bs * d))
    return out.view(b, kv, nb, g, bs, d).transpose(2, 3).reshape(b, h, padded, d)[:, :, :length]


_compiled_flex: Any = None


def flex_attention_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor,
                          block_size: int, scale: float | None = None) -> torch.Tensor:
    """The same attention through torch's FlexAttention (compiled once per process)."""
    check_inputs(q, k, v, layout, block_size)
    mask = flex_block_mask(layout, block_size, q.shape[2], q.device, q.shape[1])
    return flex_attention_masked(q, k, v, mask, scale)


def flex_attention_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any,
                          scale: float | None = None) -> torch.Tensor:
    """Compiled FlexAttention with a BlockMask built beforehand (`flex_block_mask`): a model
    builds the mask once per layout and shares it across layers, so a benchmark times the two
    apart."""
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])


def flex_block_mask(layout: torch.Tensor, block_size: int, length: int, device: Any, q_heads: int) -> Any:
    """A FlexAttention BlockMask for the layout, built from block indices (no mask function is
    evaluated per token): off-diagonal blocks are full, the diagonal block is partial (causal).
    The layout's rows per key/value head are repeated for the query heads of its group."""
    from torch.nn.attention.flex_attention import BlockMask

    nb = layout.shape[-1]
    lay = (layout.to(device) & torch.ones(nb, nb, dtype=torch.bool, device=device).tril())
    if lay.shape[1] > 1:
        lay = lay.repeat_interleave(q_heads // lay.shape[1], 1)
    eye = torch.eye(nb, dtype=torch.bool, device=device)
    full, partial = lay & ~eye, lay & eye

    def indices(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.sort((~m).to(torch.uint8), dim=-1, stable=True).indices.to(torch.int32)
        return m.sum(-1).to(torch.int32), order

    def causal(b: Any, h: Any, qi: Any, ki: Any) -> Any:
        return qi >= ki

    num, idx = indices(partial)
    full_num, full_idx = indices(full)
    return BlockMask.from_kv_blocks(num, idx, full_num, full_idx, BLOCK_SIZE=block_size, mask_mod=causal,
                                    seq_lengths=(length, length))
