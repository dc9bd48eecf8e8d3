"""Sparse attention inside the suite's model: each method decides which keys every query attends.

All five take `density`, the fraction of the causally visible key positions a query attends
(sparsebench.attention.patterns says how a budget is counted; the density achieved is measured
and recorded). Density 1 is the dense model exactly. They apply through transformers'
attention-function interface (sparsebench.attention.hook), in prefill and in decode; the block
patterns run on the block-sparse kernel (sparsebench.kernels.block_attention) in prefill.

- `window`: a sliding window of the most recent key blocks.
- `sink_window`: attention sinks + window (StreamingLLM): the first `sinks` blocks always kept.
- `strided`: the "fixed" pattern of Sparse Transformers at block granularity (own chunk of
  blocks + each earlier chunk's last block).
- `quest`: query-aware block top-k (Quest's page selection: per-block channel min / max bounds).
- `loki`: approximate scores in a low-rank projection of the keys (Loki's PCA, fitted on
  calibration text): top-k tokens per head in decode, top-k blocks per row in prefill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..registry import CostModel, MethodInfo, register
from .lm_base import ApplyReport, Calibration, LMMethod

_TASKS = ("lm", "long-context")
_COST = CostModel(
    proxies=(("attention_density", "fraction"), ("attention_density_decode", "fraction"),
             ("attention_flops_per_token", "FLOP")),
    notes="density = (query, key) pairs attended / causally visible pairs, counted per call over every layer and "
          "head; attention FLOPs = 4 x head_dim per attended pair (QK and PV) + the method's key-selection FLOPs",
)


@dataclass(frozen=True)
class _SparseAttention(LMMethod):
    density: float = 0.25  # fraction of the visible keys each query attends, in (0, 1]
    block: int = 64  # key block size of the pattern (tokens)

    def __post_init__(self) -> None:
        if isinstance(self.density, bool) or not 0.0 < float(self.density) <= 1.0:
            raise ValueError(f"density={self.density!r} is out of range: the fraction of visible keys attended, in (0, 1]")
        if isinstance(self.block, bool) or int(self.block) < 1:
            raise ValueError(f"block={self.block!r}: the key block size must be a positive number of tokens")

    def check_model(self, config: Any) -> None:
        heads = getattr(config, "num_attention_heads", None)
        kv = getattr(config, "num_key_value_heads", None) or heads
        if heads and kv and heads % kv:
            raise ValueError(f"{heads} query heads are not a multiple of {kv} key/value heads")

    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        raise NotImplementedError

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        from ..attention.hook import AttentionStats, install

        stats = AttentionStats()
        install(lm.model, self.policy(lm, calibration), stats)
        return ApplyReport(backend="sparsebench block-sparse kernel (torch flash attention per block group)",
                           attention=stats, extra={"attention": {"density_requested": float(self.density),
                                                                 "block_size": int(self.block)}})


_PAPER_WINDOW = "Beltagy et al. 2020, Longformer: The Long-Document Transformer (sliding-window attention)"


@register(MethodInfo(
    name="window", family="sparse-attention", version="1",
    summary="sliding-window attention: each query attends its most recent key blocks (density x visible)",
    paper=_PAPER_WINDOW, licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"),
    cost_model=_COST, tasks=_TASKS,
))
@dataclass(frozen=True)
class Window(_SparseAttention):
    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        from ..attention.policies import WindowPolicy

        return WindowPolicy(self.density, self.block)


@register(MethodInfo(
    name="sink_window", family="sparse-attention", version="1",
    summary="attention sinks + sliding window (StreamingLLM): the first blocks are always attended",
    paper="Xiao et al. 2024, Efficient Streaming Language Models with Attention Sinks (arXiv:2309.17453)",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"), cost_model=_COST, tasks=_TASKS,
))
@dataclass(frozen=True)
class SinkWindow(_SparseAttention):
    sinks: int = 1  # sink blocks at the start of the sequence

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.sinks, bool) or int(self.sinks) < 1:
            raise ValueError(f"sinks={self.sinks!r}: at least one sink block")

    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        from ..attention.policies import SinkWindowPolicy

        return SinkWindowPolicy(self.density, self.block, self.sinks)


@register(MethodInfo(
    name="strided", family="sparse-attention", version="1",
    summary="fixed strided pattern (Sparse Transformers) at block granularity: own chunk + every chunk's summary block",
    paper="Child et al. 2019, Generating Long Sequences with Sparse Transformers (arXiv:1904.10509)",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"), cost_model=_COST, tasks=_TASKS,
))
@dataclass(frozen=True)
class Strided(_SparseAttention):
    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        from ..attention.policies import StridedPolicy

        return StridedPolicy(self.density, self.block)


@register(MethodInfo(
    name="quest", family="sparse-attention", version="1",
    summary="query-aware block top-k: key blocks ranked by per-channel min/max upper bounds of q.k (Quest pages)",
    paper="Tang et al. 2024, Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference (arXiv:2406.10774); "
          "Yang et al. 2024, TidalDecode (arXiv:2410.05076)",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"),
    cost_model=CostModel(proxies=_COST.proxies, notes=_COST.notes + "; selection = 2 products of the queries with "
                                                                   "each block's channel minima and maxima"),
    tasks=_TASKS,
))
@dataclass(frozen=True)
class Quest(_SparseAttention):
    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        from ..attention.policies import QuestPolicy

        return QuestPolicy(self.density, self.block)


@register(MethodInfo(
    name="loki", family="sparse-attention", version="1",
    summary="approximate attention scores in the top principal directions of the keys pick the keys (top-k)",
    paper="Singhania et al. 2024, Loki: Low-Rank Keys for Efficient Sparse Attention (arXiv:2406.02542)",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"),
    cost_model=CostModel(proxies=_COST.proxies, notes=_COST.notes + "; selection = low-rank projections and scores"),
    tasks=_TASKS,
))
@dataclass(frozen=True)
class Loki(_SparseAttention):
    rank: int = 16  # principal directions kept per key/value head
    needs_calibration = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rank, bool) or int(self.rank) < 1:
            raise ValueError(f"rank={self.rank!r}: at least one principal direction")

    def check_model(self, config: Any) -> None:
        super().check_model(config)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if self.rank > head_dim:
            raise ValueError(f"rank={self.rank} is larger than the head dimension {head_dim}")

    def policy(self, lm: Any, calibration: Calibration | None) -> Any:
        from ..attention.policies import LokiPolicy, fit_loki_bases

        assert calibration is not None
        return LokiPolicy(self.density, self.block, self.rank, fit_loki_bases(lm.model, calibration.input_ids, self.rank))
