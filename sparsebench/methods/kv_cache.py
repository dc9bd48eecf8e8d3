"""KV-cache compression over a language model: kvpress's presses, and KIVI quantization.

Each method wraps the method whose model the cache belongs to (`snapkv(dense,ratio=0.5)`,
`snapkv(magnitude(sparsity=0.5),ratio=0.5)`): the inner method changes the model first, then
this one decides what the cache holds. The tasks prefill into that cache and run every later
token (the lm task's scored continuation, the long-context answer) against what it kept, so
quality, KV bytes and decode latency are all measured after compression.

- Eviction presses come from NVIDIA's kvpress, one small adapter (`_Press`) for all of them:
  each registered name maps to a press class and its parameters. kvpress pins transformers
  <5.3, so these methods' workers run in the `kv` environment (scripts/setup.sh --env kv).
  `ratio` is kvpress's compression_ratio: the fraction of the prefilled positions evicted.
  Compression happens once, at the end of the prefill (kvpress's contract); decoded tokens are
  appended uncompressed.
- `qfilter` uses Q-Filters computed offline from the suite's calibration text
  (sparsebench.kv.qfilters): the published ones sit on the model hub.
- `quanto` is transformers' own QuantizedCache with its optimum-quanto backend (2 or 4 bits,
  keys and values quantized the same way, a full-precision residual of recent tokens). It may
  wrap a press (`quanto(snapkv(dense,ratio=0.5),bits=4)`): kvpress re-quantizes what it keeps.
- `kivi` is ours, for what that cache does not do: KIVI's split (keys per channel, values per
  token) and 8 bits, bit-packed (sparsebench.kv.quant).
- `cq` is ours too: coupled quantization (sparsebench.kv.coupled), `channels` contiguous channels
  coded jointly by one of 2^bits centroids learned on the suite's calibration text.
- bits=16 is the unquantized cache for all three, the identity point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..registry import CostModel, MethodInfo, register
from .lm_base import ApplyReport, Calibration, KVCachePlan, LMMethod

_TASKS = ("lm", "long-context")
# kvpress 0.5.5's SUPPORTED_MODELS (kvpress/presses/base_press.py), by architecture name, so the
# main environment can refuse a model before any worker starts; tests/test_kvpress.py checks the
# list against kvpress itself in the kv environment.
KVPRESS_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM",
                         "Qwen3ForCausalLM", "Gemma3ForConditionalGeneration")
_COST = CostModel(
    proxies=(("kv_kept_fraction", "fraction"),),
    notes="KV bytes are measured on the cache after the prefill and after the decode steps (kv_bytes, "
          "kv_bytes_decode); kv_kept_fraction = positions held after the prefill / positions prefilled, over layers",
)


def _check_quantizer(bits: int, allowed: tuple[int, ...], what: str, size_name: str, size: int, residual: int,
                     also: str = "") -> None:
    """The parameters every KV quantizer shares: its bit widths (16 = unquantized, the identity
    point), a group size of at least 1 and a full-precision residual of at least 0 tokens."""
    if isinstance(bits, bool) or bits not in (*allowed, 16):
        raise ValueError(f"bits={bits!r}: {what} {', '.join(map(str, allowed))} bits (16 = unquantized){also}")
    if size < 1 or residual < 0:
        raise ValueError(f"{size_name}={size}, residual={residual}: {size_name} must be at least 1 and residual at "
                         "least 0 (tokens kept in full precision)")


@dataclass(frozen=True)
class _KVMethod(LMMethod):
    base: LMMethod

    def __post_init__(self) -> None:
        if isinstance(self.base, _KVMethod):
            raise ValueError(f"{self.base} already decides what the KV cache holds; one KV-cache method per model, "
                             "except quanto over a press (quanto(snapkv(dense,ratio=0.5),bits=4) quantizes what it keeps)")

    @property
    def needs_calibration(self) -> bool:  # type: ignore[override]
        return self.base.needs_calibration or self.own_calibration()

    def own_calibration(self) -> bool:
        return False

    def check_model(self, config: Any) -> None:
        self.base.check_model(config)

    def check_device(self, device: str) -> None:
        self.base.check_device(device)

    def cost_units(self) -> dict[str, str]:
        return {**self.base.cost_units(), **dict(self.info.cost_model.proxies)}


@dataclass(frozen=True)
class _Press(_KVMethod):
    ratio: float = 0.5  # kvpress compression_ratio: fraction of the prefilled positions evicted, in [0, 1)
    press_class: ClassVar[str] = ""
    needs_attentions: ClassVar[bool] = False  # scores need the attention weights (eager attention)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.ratio, bool) or not 0.0 <= float(self.ratio) < 1.0:
            raise ValueError(f"ratio={self.ratio!r} is out of range: the fraction of prefilled positions evicted, in [0, 1)")
        if self.needs_attentions and self.base.info.family == "sparse-attention":
            raise ValueError(f"{self.info.name} scores from the attention weights of eager attention, which a sparse "
                             f"attention method ({self.base}) replaces")

    def worker_env(self) -> str | None:
        return "kv"

    def check_model(self, config: Any) -> None:
        super().check_model(config)
        archs = list(getattr(config, "architectures", None) or [])
        if not any(a in KVPRESS_ARCHITECTURES for a in archs):
            raise ValueError(f"kvpress press {self.press_class} ({self.info.name}) does not support architecture "
                             f"{', '.join(archs) or 'unknown'} (kvpress 0.5.5 supports {', '.join(KVPRESS_ARCHITECTURES)})")

    def press_kwargs(self, lm: Any, calibration: Calibration | None) -> dict[str, Any]:
        return {}

    def prepare(self, press: Any, lm: Any, calibration: Calibration | None) -> None:
        """Anything the press needs before its hooks go in (Q-Filters: the filters)."""

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        import kvpress

        report = self.base.apply(lm, calibration, ctx)
        if self.needs_attentions:
            lm.model.set_attn_implementation("eager")
        press = getattr(kvpress, self.press_class)(compression_ratio=float(self.ratio), **self.press_kwargs(lm, calibration))
        self.prepare(press, lm, calibration)
        # kvpress installs its hooks in a context manager; the model keeps them for the whole
        # run (they compress only a prefill, so every later forward passes through).
        hooks = press(lm.model)
        hooks.__enter__()
        lm.model._sparsebench_kvpress = hooks
        backend = f"kvpress {getattr(kvpress, '__version__', '')} {self.press_class}".replace("  ", " ")
        _set_kv(report, KVCachePlan(new_cache=None, backend=backend))
        report.extra["kv"] = {"press": self.press_class, "compression_ratio": float(self.ratio),
                              "attention": lm.model.config._attn_implementation}
        return report


def _set_kv(report: ApplyReport, plan: KVCachePlan) -> None:
    """Install the cache plan and name its backend in the record's `backend` too, after whatever
    the wrapped method's was (sparse attention's kernel; a press under a quantized cache)."""
    if report.kv is not None:
        plan = KVCachePlan(new_cache=plan.new_cache, backend=f"{report.kv.backend} + {plan.backend}")
    report.kv = plan
    prior = report.backend if report.backend and report.backend != "none" else ""
    # The press already named itself in `backend`: name only what this layer adds.
    added = plan.backend.split(" + ")[-1]
    report.backend = f"{prior}; {added}" if prior else added


def _press(name: str, press_class: str, summary: str, paper: str, needs_attentions: bool = False) -> Any:
    def wrap(cls: type) -> type:
        cls.press_class = press_class
        cls.needs_attentions = needs_attentions
        return register(MethodInfo(
            name=name, family="kv-cache", version="1", summary=summary, paper=paper,
            licence="Apache-2.0 (kvpress, NVIDIA)", requires=("kvpress", "transformers<5.3"), cost_model=_COST,
            tasks=_TASKS, example=f"{name}(dense,ratio=0.5)",
        ))(dataclass(frozen=True)(cls))
    return wrap


@_press("streaming_llm", "StreamingLLMPress",
        "attention sinks + recent window (StreamingLLM): keep the first n_sink positions and the most recent ones",
        "Xiao et al. 2024, Efficient Streaming Language Models with Attention Sinks (arXiv:2309.17453)")
class StreamingLLM(_Press):
    n_sink: int = 4

    def press_kwargs(self, lm: Any, calibration: Calibration | None) -> dict[str, Any]:
        return {"n_sink": int(self.n_sink)}


@_press("snapkv", "SnapKVPress",
        "SnapKV: keep the positions the last window of prompt queries attend most (pooled per head)",
        "Li et al. 2024, SnapKV: LLM Knows What You are Looking for Before Generation (arXiv:2404.14469)")
class SnapKV(_Press):
    window_size: int = 64
    kernel_size: int = 5

    def press_kwargs(self, lm: Any, calibration: Calibration | None) -> dict[str, Any]:
        return {"window_size": int(self.window_size), "kernel_size": int(self.kernel_size)}


@_press("pyramidkv", "PyramidKVPress",
        "PyramidKV: SnapKV's scores with a per-layer budget that shrinks with depth (same total)",
        "Cai et al. 2024, PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling "
        "(arXiv:2406.02069)")
class PyramidKV(_Press):
    window_size: int = 64
    kernel_size: int = 5
    beta: int = 20

    def press_kwargs(self, lm: Any, calibration: Calibration | None) -> dict[str, Any]:
        return {"window_size": int(self.window_size), "kernel_size": int(self.kernel_size), "beta": int(self.beta)}


@_press("h2o", "ObservedAttentionPress",
        "heavy hitters (H2O): keep the positions with the most attention accumulated over the prompt (eager attention)",
        "Zhang et al. 2023, H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models "
        "(arXiv:2306.14048)", needs_attentions=True)
class H2O(_Press):
    pass


@_press("knorm", "KnormPress", "key norm: keep the positions whose keys have the smallest L2 norm",
        "Devoto et al. 2024, A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression (arXiv:2406.11430)")
class KNorm(_Press):
    pass


@_press("tova", "TOVAPress", "TOVA: keep the positions the last prompt token attends most (averaged over heads)",
        "Oren et al. 2024, Transformers are Multi-State RNNs (arXiv:2401.06104)")
class TOVA(_Press):
    pass


@_press("expected_attention", "ExpectedAttentionPress",
        "expected attention: scores from the attention future queries are expected to pay (query statistics)",
        "Devoto et al. 2025, Expected Attention: KV cache compression by estimating attention from future queries "
        "distribution (arXiv:2510.00636)")
class ExpectedAttention(_Press):
    n_future_positions: int = 512
    n_sink: int = 4

    def press_kwargs(self, lm: Any, calibration: Calibration | None) -> dict[str, Any]:
        return {"n_future_positions": int(self.n_future_positions), "n_sink": int(self.n_sink)}


@_press("qfilter", "QFilterPress",
        "Q-Filters: keep the keys furthest along the queries' principal direction (filters computed on calibration text)",
        "Godey et al. 2025, Q-Filters: Leveraging QK Geometry for Efficient KV Cache Compression (arXiv:2503.02812)")
class QFilter(_Press):
    def own_calibration(self) -> bool:
        return True

    def prepare(self, press: Any, lm: Any, calibration: Calibration | None) -> None:
        from ..kv.qfilters import compute_qfilters

        assert calibration is not None
        # QFilterPress fetches published filters in post_init_from_model: it gets ours instead.
        press.q_filters = compute_qfilters(lm.model, calibration.input_ids)
        press.post_init_from_model = lambda model: None


@register(MethodInfo(
    name="kivi", family="kv-cache", version="1",
    summary="KIVI KV quantization: keys per channel over token groups, values per token, bit-packed, recent tokens "
            "in full precision",
    paper="Liu et al. 2024, KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache (arXiv:2402.02750)",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"), cost_model=CostModel(
        notes="KV bytes measured as held: packed codes + float16 scales and minima + the full-precision residual"),
    tasks=_TASKS, example="kivi(dense,bits=4)",
))
@dataclass(frozen=True)
class KIVI(_KVMethod):
    bits: int = 4  # 2, 4 or 8; 16 = the unquantized cache (the identity point)
    group: int = 32  # tokens per key group; channels per value group
    residual: int = 0  # most recent tokens always kept in full precision (besides a partial key group)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_quantizer(self.bits, (2, 4, 8), "KIVI quantizes the cache to", "group", self.group, self.residual)

    def check_model(self, config: Any) -> None:
        super().check_model(config)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        if self.bits != 16 and head_dim % self.group:
            raise ValueError(f"head dimension {head_dim} is not a multiple of group={self.group} (value channel groups)")

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        from ..kv.quant import kivi_cache

        report = self.base.apply(lm, calibration, ctx)
        layers = lm.model.config.num_hidden_layers
        bits, group, residual = int(self.bits), int(self.group), int(self.residual)
        if bits == 16:
            _set_kv(report, KVCachePlan(new_cache=None, backend="unquantized cache"))
        else:
            _set_kv(report, KVCachePlan(new_cache=lambda: kivi_cache(layers, bits, group, residual),
                                        backend="sparsebench KIVI cache (bit-packed codes, float16 scales)"))
        report.extra["kv"] = {"bits": bits, "group": group, "residual": residual}
        return report


@register(MethodInfo(
    name="quanto", family="kv-cache", version="1",
    summary="transformers' QuantizedCache (optimum-quanto backend): keys and values quantized in groups, a "
            "full-precision residual of recent tokens",
    paper="Liu et al. 2024, KIVI (arXiv:2402.02750), as implemented by transformers' QuantizedCache "
          "(quantization per channel for keys and values alike)",
    licence="Apache-2.0 (transformers, optimum-quanto)", requires=("transformers", "optimum-quanto"),
    cost_model=CostModel(notes="KV bytes measured as held: quanto's packed codes, scales and shifts + the residual"),
    tasks=_TASKS, example="quanto(dense,bits=4)",
))
@dataclass(frozen=True)
class Quanto(_KVMethod):
    bits: int = 4  # 2 or 4 (the quanto backend's); 16 = the unquantized cache (the identity point)
    group: int = 64  # q_group_size
    residual: int = 128  # residual_length: recent tokens kept in full precision before re-quantizing

    def __post_init__(self) -> None:
        # Unlike kivi this may wrap a press: kvpress re-quantizes a QuantizedCache after evicting.
        if isinstance(self.base, (KIVI, Quanto)):
            raise ValueError(f"{self.base} already quantizes the KV cache; one KV quantization per model")
        _check_quantizer(self.bits, (2, 4), "the quanto backend quantizes to", "group", self.group, self.residual,
                         also="; kivi covers 8")

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        report = self.base.apply(lm, calibration, ctx)
        bits, group, residual = int(self.bits), int(self.group), int(self.residual)
        report.extra["kv"] = {**report.extra.get("kv", {}), "bits": bits, "group": group, "residual": residual}
        if bits == 16:
            if report.kv is None:
                _set_kv(report, KVCachePlan(new_cache=None, backend="unquantized cache"))
            return report
        from transformers import QuantizedCache

        config = lm.model.config

        def new_cache() -> Any:
            return QuantizedCache(backend="quanto", config=config, nbits=bits, q_group_size=group, residual_length=residual)

        new_cache()  # fails here, before anything is timed, when optimum-quanto is missing
        _set_kv(report, KVCachePlan(new_cache=new_cache, backend="transformers QuantizedCache (optimum-quanto)"))
        return report


@register(MethodInfo(
    name="cq", family="kv-cache", version="1",
    summary="coupled quantization: `channels` contiguous key (and value) channels coded jointly by the nearest of "
            "2^bits centroids learned by k-means on calibration text (bits / channels bits per channel); "
            "fisher=true weights the k-means by each vector's diagonal Fisher information",
    paper="Zhang et al. 2024, KV Cache is 1 Bit Per Channel: Efficient Large Language Model Inference with Coupled "
          "Quantization (arXiv:2405.03917): uniform and Fisher-guided centroid learning",
    licence="Apache-2.0 (sparsebench)", requires=("torch", "transformers"), cost_model=CostModel(
        notes="KV bytes measured as held: one code byte (or packed codes) per coupled group and token + the "
              "full-precision residual; the codebooks, a per-model constant shared by every sequence, are "
              "reported apart (extra.kv.codebook_bytes, float16)"),
    tasks=_TASKS, example="cq(dense,channels=8)",
))
@dataclass(frozen=True)
class CoupledQuantization(_KVMethod):
    channels: int = 4  # channels coupled into one code (CQ-<channels>c<bits>b)
    bits: int = 8  # bits per code: 2, 4 or 8; 16 = the unquantized cache (the identity point)
    residual: int = 0  # most recent tokens kept in full precision
    fisher: bool = False  # Fisher-guided centroids: k-means weighted by squared loss gradients of the cache

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_quantizer(self.bits, (2, 4, 8), "coupled codes are", "channels", self.channels, self.residual)

    def own_calibration(self) -> bool:
        return self.bits != 16

    def check_model(self, config: Any) -> None:
        super().check_model(config)
        heads = config.num_attention_heads
        width = (getattr(config, "num_key_value_heads", None) or heads) * (
            getattr(config, "head_dim", None) or config.hidden_size // heads)
        if self.bits != 16 and (width % self.channels or (width // self.channels) % (8 // self.bits)):
            raise ValueError(f"{width} key/value channels per layer do not split into groups of channels={self.channels} "
                             f"whose {self.bits}-bit codes fill whole bytes")

    def apply(self, lm: Any, calibration: Calibration | None, ctx: Any) -> ApplyReport:
        from ..kv.coupled import coupled_cache, learn_codebooks

        report = self.base.apply(lm, calibration, ctx)
        channels, bits, residual = int(self.channels), int(self.bits), int(self.residual)
        kv = {"channels": channels, "bits": bits, "residual": residual, "bits_per_channel": bits / channels,
              "centroids": "fisher-guided" if self.fisher and bits != 16 else "uniform"}
        if bits == 16:
            _set_kv(report, KVCachePlan(new_cache=None, backend="unquantized cache"))
        else:
            assert calibration is not None
            books = learn_codebooks(lm.model, calibration.input_ids, channels, bits, fisher=bool(self.fisher))
            kv["codebook_bytes"] = sum(k.nbytes + v.nbytes for k, v in books)
            kv["calibration_tokens"] = int(calibration.input_ids.numel())
            _set_kv(report, KVCachePlan(new_cache=lambda: coupled_cache(books, residual),
                                        backend="sparsebench coupled-quantization cache (k-means codebooks"
                                                + (", Fisher-guided)" if self.fisher else ")")))
        report.extra["kv"] = kv
        return report
