"""The sparse attention methods' key choices, as hook policies (sparsebench.attention.hook).

Block policies choose key blocks per query block row; prefill runs them on the block-sparse
kernel, a decode step attends the blocks of the row its position falls in (up to itself).
Loki chooses tokens in decode (its paper's setting) and key blocks in prefill, from the same
low-rank approximate scores.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import patterns
from .hook import Policy


class BlockPolicy(Policy):
    def __init__(self, density: float, block_size: int) -> None:
        self.density = float(density)
        self.block_size = int(block_size)

    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        """Layout rows `[B|1, KV|1, len(rows), n_blocks]` for the query block rows `rows`; q holds
        exactly those rows' queries (prefill) or the one decode query."""
        raise NotImplementedError

    def prefill_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        nb = -(-k.shape[2] // self.block_size)
        return self.rows_layout(module, q, k, torch.arange(nb), nb)

    def token_mask(self, module: Any, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor) -> torch.Tensor:
        nb = -(-k.shape[2] // self.block_size)
        if q.shape[2] != k.shape[2]:
            raise NotImplementedError(f"{type(self).__name__}: queries that start after position 0 in prefill "
                                      "(a chunked prefill) are not supported")
        lay = self.rows_layout(module, q, k, torch.arange(nb), nb)
        rows = (q_pos // self.block_size).to(lay.device)
        return lay[:, :, rows].repeat_interleave(self.block_size, -1)[..., : k.shape[2]]

    def decode_keys(self, module: Any, q: torch.Tensor, k: torch.Tensor, pos: int) -> torch.Tensor:
        bs = self.block_size
        row = pos // bs
        lay = self.rows_layout(module, q, k, torch.tensor([row]), row + 1)[:, :, 0]  # [B|1, KV|1, row+1]
        b, kv = q.shape[0], k.shape[1]
        lay = lay.expand(b, kv, row + 1)
        n_sel = int(lay[0, 0].sum())
        if not bool((lay.sum(-1) == n_sel).all()):
            raise RuntimeError("a decode layout must keep the same number of blocks in every head")
        blocks = torch.sort((~lay).to(torch.uint8), dim=-1, stable=True).indices[..., :n_sel]  # ascending ids
        keys = (blocks[..., None] * bs + torch.arange(bs, device=blocks.device)).reshape(b, kv, -1)
        keep = keys[0, 0] <= pos  # only the diagonal (last) block is partial: same cut in every head
        return keys[..., keep]


class WindowPolicy(BlockPolicy):
    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        return patterns.window_layout(self.density, rows, n_blocks).to(q.device)


class SinkWindowPolicy(BlockPolicy):
    def __init__(self, density: float, block_size: int, sinks: int) -> None:
        super().__init__(density, block_size)
        self.sinks = int(sinks)

    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        return patterns.sink_window_layout(self.density, rows, n_blocks, self.sinks).to(q.device)


class StridedPolicy(BlockPolicy):
    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        # The stride is chosen for the whole sequence so far (prefill: the prompt; decode: the
        # blocks up to the new token), so prefill and decode follow the same rule.
        return patterns.strided_layout(self.density, rows, n_blocks)[0].to(q.device)


class QuestPolicy(BlockPolicy):
    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        first = int(rows[0])
        return patterns.quest_layout(q, k[:, :, : n_blocks * self.block_size], self.density, self.block_size, first)

    def selection_flops(self, q_len: int, k_len: int, heads: int, head_dim: int) -> float:
        # two products of the queries with the per-block channel minima and maxima
        return 4.0 * q_len * heads * head_dim * -(-k_len // self.block_size)


class LokiPolicy(BlockPolicy):
    """Approximate scores in the top `rank` principal directions of each layer's keys (fitted on
    calibration text, post-rotary, per key/value head). Decode: the `budget` keys with the largest
    approximate scores, per query head. Prefill: per query block row, its own block and the key
    blocks whose best approximate score against the row's mean query is largest."""

    def __init__(self, density: float, block_size: int, rank: int, bases: dict[int, torch.Tensor]) -> None:
        super().__init__(density, block_size)
        self.rank = int(rank)
        self.bases = bases  # layer -> [KV, D, rank]

    def _project(self, module: Any, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.bases[module.layer_idx].to(q.device, q.dtype)  # [KV, D, r]
        g = q.shape[1] // k.shape[1]
        qp = torch.matmul(q, p.repeat_interleave(g, 0))  # [B, H, Lq, r]
        kp = torch.matmul(k, p)  # [B, KV, Lk, r]
        return qp, kp

    def rows_layout(self, module: Any, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, n_blocks: int) -> torch.Tensor:
        bs = self.block_size
        b, h, lq, _ = q.shape
        kv = k.shape[1]
        g = h // kv
        k = k[:, :, : n_blocks * bs]
        qp, kp = self._project(module, q, k)
        pad = rows.numel() * bs - lq
        if lq > 1:
            qp = torch.nn.functional.pad(qp, (0, 0, 0, pad)) if pad else qp
            counts = torch.clamp(lq - torch.arange(rows.numel(), device=q.device) * bs, max=bs).to(q.dtype)
            qmean = qp.view(b, h, rows.numel(), bs, -1).sum(3) / counts[:, None]
        else:
            qmean = qp
        # the group's heads share blocks: their approximate scores are summed
        s = torch.matmul(qmean.view(b, kv, g * rows.numel(), -1), kp.transpose(-1, -2)).view(b, kv, g, rows.numel(), -1).sum(2)
        lk = k.shape[2]
        kpad = n_blocks * bs - lk
        s = torch.nn.functional.pad(s, (0, kpad), value=-math.inf) if kpad else s
        block_score = s.view(b, kv, rows.numel(), n_blocks, bs).amax(-1)
        return _top_blocks(block_score, rows.to(q.device), self.density)

    def decode_keys(self, module: Any, q: torch.Tensor, k: torch.Tensor, pos: int) -> torch.Tensor:
        qp, kp = self._project(module, q, k)
        g = q.shape[1] // k.shape[1]
        s = torch.matmul(qp, kp.repeat_interleave(g, 1).transpose(-1, -2))[:, :, 0]  # [B, H, Lk]
        c = patterns.budget(self.density, pos + 1)
        return s.topk(c, dim=-1).indices.sort(-1).values

    def selection_flops(self, q_len: int, k_len: int, heads: int, head_dim: int) -> float:
        if q_len == 1:  # projection of the query and of the keys, then low-rank scores
            return 2.0 * heads * (head_dim * self.rank + k_len * self.rank) + 2.0 * k_len * head_dim * self.rank
        rows = -(-q_len // self.block_size)
        return 2.0 * heads * (q_len * head_dim * self.rank + rows * k_len * self.rank) + 2.0 * k_len * head_dim * self.rank


def _top_blocks(score: torch.Tensor, rows: torch.Tensor, density: float) -> torch.Tensor:
    """Each row keeps its diagonal block and its budget's worth of earlier blocks by score."""
    b, kv, n_rows, nb = score.shape
    j = torch.arange(nb, device=score.device)
    earlier = j[None, :] < rows[:, None]
    score = score.masked_fill(~earlier, -math.inf)
    c = patterns.budgets(density, rows.cpu()).to(score.device)
    keep = (j[None, :] == rows[:, None]).expand(b, kv, -1, -1).clone()
    pick = int(c.max()) - 1
    if pick > 0:
        top = score.topk(min(pick, nb), dim=-1).indices
        ok = torch.arange(top.shape[-1], device=score.device)[None, :] < (c - 1)[:, None]
        keep.scatter_(-1, top, (ok.expand_as(top) & torch.gather(earlier.expand(b, kv, -1, -1), -1, top)) | torch.gather(keep, -1, top))
    return keep


def fit_loki_bases(model: Any, input_ids: torch.Tensor, rank: int) -> dict[int, torch.Tensor]:
    """Per layer and key/value head, the top `rank` eigenvectors of the keys' second moment over
    the calibration tokens (post-rotary keys, as attention sees them): `{layer: [KV, D, rank]}`."""
    from .hook import AttentionStats, install, uninstall

    moments: dict[int, torch.Tensor] = {}

    class Capture(Policy):
        def full(self) -> bool:
            return True

    def capture(module: Any, key: torch.Tensor) -> None:
        x = key.double()  # [B, KV, L, D]
        m = torch.einsum("bhld,bhle->hde", x, x)
        moments[module.layer_idx] = moments.get(module.layer_idx, 0) + m

    install(model, Capture(), AttentionStats(enabled=False), on_keys=capture)
    try:
        with torch.inference_mode():
            for i in range(input_ids.shape[0]):
                model(input_ids=input_ids[i : i + 1].to(model.device), use_cache=False)
    finally:
        uninstall(model)
    bases = {}
    for layer, m in moments.items():
        _, vecs = torch.linalg.eigh(m)  # ascending eigenvalues
        bases[layer] = vecs[..., -rank:].flip(-1).float().contiguous()
    return bases
