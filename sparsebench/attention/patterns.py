"""Which keys each query attends: the sparse attention patterns, as block layouts or token picks.

Density is the fraction of the causally visible key positions a query attends. A query block row
`r` (block size `bs`) sees `r + 1` key blocks and keeps `budget(density, r + 1)` of them, always
including its own (diagonal) block, so the achieved density equals the request up to rounding
(it is measured, not assumed: sparsebench.attention.hook counts what was attended). A decode step
at position p uses the row of the block p falls in, so a generated token attends what a prompt
token at the same position would. Token-level methods (Loki) keep `budget(density, p + 1)` keys.

Static patterns depend only on the number of blocks; query-aware ones (Quest) score key blocks
from the queries. All layouts are boolean `[B|1, KV|1, n_rows, n_blocks]`, rows = query blocks.
"""

from __future__ import annotations

import math

import torch


def budget(density: float, visible: int) -> int:
    """How many of `visible` blocks (or keys) a query keeps: ceil(density x visible), at least 1."""
    return max(1, min(visible, math.ceil(density * visible - 1e-9)))


def budgets(density: float, rows: torch.Tensor) -> torch.Tensor:
    """`budget` for each block row index in `rows` (a row r sees r + 1 blocks)."""
    visible = rows + 1
    return torch.clamp(torch.ceil(density * visible.double() - 1e-9).long(), min=1).minimum(visible)


def window_layout(density: float, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Sliding window: row r keeps its last budget(r) blocks, r included."""
    c = budgets(density, rows)
    j = torch.arange(n_blocks)
    return ((j[None, :] <= rows[:, None]) & (j[None, :] > rows[:, None] - c[:, None])).view(1, 1, -1, n_blocks)


def sink_window_layout(density: float, rows: torch.Tensor, n_blocks: int, sinks: int) -> torch.Tensor:
    """Attention sinks + window (StreamingLLM): the first `sinks` blocks and a window filling the
    rest of the budget; the diagonal block comes first, then the sinks, then the window."""
    c = budgets(density, rows)
    s = torch.clamp(c - 1, max=sinks)  # sink blocks this row keeps (its own block takes one)
    w = c - s  # window blocks, r included
    j = torch.arange(n_blocks)[None, :]
    r = rows[:, None]
    keep = ((j <= r) & (j > r - w[:, None])) | (j < s[:, None])
    return keep.view(1, 1, -1, n_blocks)


def strided_layout(density: float, rows: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, int]:
    """The "fixed" pattern of Child et al. 2019 at block granularity: blocks fall in chunks of
    `stride` blocks; a row keeps the blocks of its own chunk up to itself and the last block of
    every earlier chunk (the chunk's "summary"). `stride` is the one whose causal density over
    `n_blocks` rows is closest to the request (so it changes with the sequence length)."""
    best, best_err = 1, math.inf
    all_rows = torch.arange(n_blocks)
    for stride in range(1, n_blocks + 1):
        err = abs(_strided_density(stride, all_rows, n_blocks) - density)
        if err < best_err - 1e-12:
            best, best_err = stride, err
    return _strided(best, rows, n_blocks), best


def _strided(stride: int, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
    j = torch.arange(n_blocks)[None, :]
    r = rows[:, None]
    own_chunk = (j // stride == r // stride) & (j <= r)
    summary = (j % stride == stride - 1) & (j < r)
    return (own_chunk | summary).view(1, 1, -1, n_blocks)


def _strided_density(stride: int, rows: torch.Tensor, n_blocks: int) -> float:
    kept = int(_strided(stride, rows, n_blocks).sum())
    return kept / (n_blocks * (n_blocks + 1) / 2)


def block_bounds(k: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per key block and channel, the minimum and maximum key value (Quest's page metadata):
    k `[B, KV, L, D]` -> two `[B, KV, n_blocks, D]` (a partial last block uses its keys only)."""
    b, kv, length, d = k.shape
    nb = -(-length // block_size)
    pad = nb * block_size - length
    if pad:
        kmax = torch.nn.functional.pad(k, (0, 0, 0, pad), value=-math.inf)
        kmin = torch.nn.functional.pad(k, (0, 0, 0, pad), value=math.inf)
    else:
        kmax = kmin = k
    return (kmin.reshape(b, kv, nb, block_size, d).amin(3), kmax.reshape(b, kv, nb, block_size, d).amax(3))


def quest_scores(q: torch.Tensor, kmin: torch.Tensor, kmax: torch.Tensor) -> torch.Tensor:
    """Upper bounds of q.k over each key block: sum over channels of max(q_d kmin_d, q_d kmax_d).
    q `[B, H, Lq, D]`, bounds `[B, KV, nb, D]` -> `[B, H, Lq, nb]`."""
    g = q.shape[1] // kmin.shape[1]
    kmin = kmin.repeat_interleave(g, 1)
    kmax = kmax.repeat_interleave(g, 1)
    return torch.matmul(q.clamp(min=0), kmax.transpose(-1, -2)) + torch.matmul(q.clamp(max=0), kmin.transpose(-1, -2))


def quest_layout(q: torch.Tensor, k: torch.Tensor, density: float, block_size: int, first_row: int = 0) -> torch.Tensor:
    """Query-aware block top-k: each query block row keeps its own block and the earlier blocks
    with the largest Quest bounds, its budget in all. A row's bound for a block is the largest
    over its queries; the query heads of a key/value group share the pick (summed bounds), so the
    layout is per key/value head, `[B, KV, rows, nb]`. `first_row` is the block index of q's
    first position (decode: the block the new token falls in)."""
    b, h, lq, d = q.shape
    kv = k.shape[1]
    g = h // kv
    nb = -(-k.shape[2] // block_size)
    kmin, kmax = block_bounds(k, block_size)
    ub = quest_scores(q, kmin, kmax)  # [B, H, Lq, nb]
    positions = first_row * block_size + torch.arange(lq, device=q.device) if lq > 1 else None
    if positions is None:
        rows = torch.tensor([first_row], device=q.device)
        per_row = ub.view(b, kv, g, 1, nb)
    else:
        rows = torch.arange(first_row, first_row + -(-lq // block_size), device=q.device)
        pad = rows.numel() * block_size - lq
        ub = torch.nn.functional.pad(ub, (0, 0, 0, pad), value=-math.inf) if pad else ub
        per_row = ub.view(b, kv, g, rows.numel(), block_size, nb).amax(4)
    score = per_row.sum(2)  # [B, KV, rows, nb]
    j = torch.arange(nb, device=q.device)
    earlier = j[None, :] < rows[:, None]
    score = score.masked_fill(~earlier, -math.inf)
    c = budgets(density, rows.cpu()).to(q.device)
    kmax_pick = int(c.max()) - 1
    keep = (j[None, :] == rows[:, None]).expand(b, kv, -1, -1).clone()
    if kmax_pick > 0:
        top = score.topk(min(kmax_pick, nb), dim=-1).indices  # [B, KV, rows, kmax_pick]
        rank_ok = torch.arange(top.shape[-1], device=q.device)[None, :] < (c - 1)[:, None]  # [rows, kmax_pick]
        valid = rank_ok.expand_as(top) & torch.gather(earlier.expand(b, kv, -1, -1), -1, top)
        keep.scatter_(-1, top, valid | torch.gather(keep, -1, top))
    return keep
