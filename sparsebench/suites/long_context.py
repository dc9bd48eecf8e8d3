"""The long-context task: passkey and multi-key needle recall in real prose, by exact match.

The suite's model is loaded and the method applied exactly as in the lm task (the same method
classes run in both); then every case (sparsebench.lm.needles) is prefilled and answered by greedy
decoding with the KV cache, each prefill and decode step timed. Per-case exact match goes to the
sidecar, so `bench compare` pairs methods case by case. The costs are those of the longest
context: prefill latency and decode latency per token there, the attention density achieved
and the attention FLOPs per prompt token over all cases, and peak memory.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import memory
from ..errors import ConfigError
from ..lm.data import LMData
from ..methods.lm_base import LMMethod
from ..typedload import from_data
from .axes import TASK_COST_AXES
from .lm import LMTask
from .tasks import TaskResult

log = logging.getLogger(__name__)

KINDS = ("passkey", "multikey")


@dataclass(frozen=True)
class LongContextSettings:
    model: str = "smollm2-135m"
    lengths: str = "1024,2048,4096"  # prompt lengths in tokens, comma-separated
    depths: str = "0.1,0.5,0.9"  # needle depths (fraction of the haystack before it)
    kinds: str = "passkey,multikey"
    keys: int = 4  # needles per multikey case
    text: str = "austen"  # which embedded text is the haystack (its evaluation part)
    max_new_tokens: int = 8
    seed: int = 0
    calibration_samples: int = 16
    calibration_length: int = 256
    timeout_s: int = 7200

    def parsed(self) -> tuple[list[int], list[float], list[str]]:
        return ([int(x) for x in self.lengths.split(",") if x.strip()], [float(x) for x in self.depths.split(",") if x.strip()],
                [x.strip() for x in self.kinds.split(",") if x.strip()])


class LongContextTask(LMTask):
    name = "long-context"
    cost_axes = TASK_COST_AXES["long-context"]
    method_type = LMMethod
    capability = "language-model methods (the unmodified model, sparse attention)"
    item_name = "cases"

    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None:
        for i, name in enumerate(metrics):
            base, _, part = name.partition("/")
            ok = base == "accuracy" and (not part or part in KINDS or (part.startswith("L") and part[1:].isdigit()))
            if not ok:
                raise ConfigError(f"{file}: metrics[{i}]: {name!r} is not a long-context metric (accuracy, "
                                  f"accuracy/KIND with KIND one of {', '.join(KINDS)}, or accuracy/L<length>)")

    def settings_from(self, data: dict[str, Any], file: str) -> LongContextSettings:  # type: ignore[override]
        # One length or depth given on the command line (--set lengths=2048) arrives as a number.
        data = {k: (str(v) if k in ("lengths", "depths", "kinds") and isinstance(v, (int, float)) and not isinstance(v, bool)
                    else v) for k, v in data.items()}
        s = from_data(LongContextSettings, data, file, "settings")
        try:
            lengths, depths, kinds = s.parsed()
        except ValueError as e:
            raise ConfigError(f"{file}: settings: lengths and depths are comma-separated numbers ({e})") from e
        if not lengths or any(n < 256 for n in lengths):
            raise ConfigError(f"{file}: settings.lengths: {s.lengths!r}; give lengths of at least 256 tokens")
        if not depths or any(not 0.0 <= d <= 1.0 for d in depths):
            raise ConfigError(f"{file}: settings.depths: {s.depths!r}; depths are fractions in [0, 1]")
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ConfigError(f"{file}: settings.kinds: {s.kinds!r}; choose from {', '.join(KINDS)}")
        for key in ("keys", "max_new_tokens", "calibration_samples", "calibration_length", "timeout_s"):
            if getattr(s, key) < 1:
                raise ConfigError(f"{file}: settings.{key}: {getattr(s, key)} is out of range")
        if s.keys < 2 and "multikey" in kinds:
            raise ConfigError(f"{file}: settings.keys: {s.keys}; a multikey case needs at least 2 needles")
        return s

    def preflight(self, settings: Any, methods: list[Any], cache_dir: Path, device: str = "cpu") -> None:  # type: ignore[override]
        super().preflight(settings, methods, cache_dir, device)
        from ..lm.model import model_config

        config = model_config(settings.model, cache_dir)
        longest = max(settings.parsed()[0]) + settings.max_new_tokens
        limit = getattr(config, "max_position_embeddings", None)
        if limit and longest > limit:
            raise ConfigError(f"long-context: {longest} tokens exceed model {settings.model}'s {limit} positions; lower lengths")

    def run(self, method: LMMethod, data: LMData, metrics: tuple[str, ...], settings: LongContextSettings,  # type: ignore[override]
            ctx: Any, run_file: Path | None = None) -> TaskResult:
        import torch

        from ..attention.cost import decode_proxy, prefill_proxies
        from ..kv.measure import kv_costs
        from ..lm.model import load_causal_lm
        from ..lm.needles import make_cases
        from ..lm.windows import calibration_samples

        torch.manual_seed(settings.seed)
        lengths, depths, kinds = settings.parsed()
        texts = {t.name: t for t in data.texts}
        if settings.text not in texts:
            raise ConfigError(f"long-context: settings.text {settings.text!r} is not one of the suite's texts ({', '.join(texts)})")
        mem_base = memory.start()
        t0 = time.perf_counter()
        lm = load_causal_lm(settings.model, ctx.cache.root, ctx.device)
        model_load_s = time.perf_counter() - t0
        cases = make_cases(lm.tokenizer, texts[settings.text].eval_text, kinds, lengths, depths, settings.keys, settings.seed)

        calibration, samples = None, []
        if method.needs_calibration:
            from ..methods.lm_base import Calibration

            ids, samples = calibration_samples(lm.tokenizer, data.texts, settings.calibration_samples,
                                               settings.calibration_length, settings.seed)
            calibration = Calibration(ids, samples)
        t0 = time.perf_counter()
        report = method.apply(lm, calibration, ctx)
        calibration_s = time.perf_counter() - t0

        per_case: dict[str, dict[str, float]] = {}
        answers: dict[str, str] = {}
        prefill: dict[int, list[float]] = {n: [] for n in lengths}
        decode: dict[int, list[float]] = {n: [] for n in lengths}
        new_cache = report.kv.new_cache if report.kv is not None else None
        longest = max(lengths)
        kv_sizes: dict[str, Any] = {}
        for case in cases:
            text, pre_ms, steps, sizes = _answer(lm, case.ids, settings.max_new_tokens, new_cache)
            if case.length == longest and not kv_sizes:
                kv_sizes = sizes
            from ..lm.needles import exact_match

            hit = float(exact_match(text, case.answer))
            answers[case.id] = text
            prefill[case.length].append(pre_ms)
            decode[case.length].extend(steps)
            per_case[case.id] = {"accuracy": hit, f"accuracy/{case.kind}": hit, f"accuracy/L{case.length}": hit,
                                 "prefill_ms": pre_ms, "needle_distance": float(case.length - case.needle_position)}
            log.info("%s: %s (answer %s, wrote %r)", case.id, "hit" if hit else "miss", case.answer, text)

        attention = prefill_proxies(report.attention, lm.model.config, [c.length for c in cases])
        attention.update(decode_proxy(report.attention))
        peak_rss_mb, peak_note = memory.method_peak_mib(mem_base)
        costs: dict[str, dict[str, Any]] = {
            "model_load_s": {"value": model_load_s, "unit": "s", "n": 1},
            "calibration_s": {"value": calibration_s, "unit": "s", "n": 1},
            "prefill_ms": {"value": statistics.median(prefill[longest]), "unit": "ms", "n": len(prefill[longest]),
                           "tokens": longest},
            "decode_ms_per_token": {"value": statistics.median(decode[longest]), "unit": "ms", "n": len(decode[longest]),
                                    "after_prefill_tokens": longest},
            "peak_rss_mb": {"value": peak_rss_mb, "unit": "MiB", "n": 1, **({"note": peak_note} if peak_note else {})},
            "process_peak_rss_mb": {"value": memory.process_peak_mib(), "unit": "MiB", "n": 1},
            **attention,
            **kv_costs(kv_sizes, lm.model.config, longest, settings.max_new_tokens - 1,
                       next(lm.model.parameters()).element_size()),
        }
        metric_values = {m: _accuracy(m, per_case) for m in metrics}
        extra = {
            "model": lm.info,
            "cases": len(cases),
            "backend": report.backend,
            "layer_sparsity": report.layer_sparsity,  # a pruned model under a KV method says how pruned
            "prefill_ms_by_length": {str(n): statistics.median(v) for n, v in prefill.items() if v},
            "answers": answers,
            "calibration": {"samples": samples} if samples else None,
            "settings_parsed": {"lengths": lengths, "depths": depths, "kinds": kinds},
            **report.extra,
        }
        return TaskResult(metrics=metric_values, costs=costs, per_query=per_case, extra=extra)


def _answer(lm: Any, prompt: tuple[int, ...], max_new: int,
            new_cache: Any = None) -> tuple[str, float, list[float], dict[str, Any]]:
    """Greedy continuation of the prompt: (text, prefill ms, decode ms per step, KV sizes after
    the prefill and after the last step)."""
    import torch

    from ..kv.measure import cache_size
    from ..lm.cached import cache_keyword, extend, prefill

    model = lm.model
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=model.device)
    kw = cache_keyword(model)
    sync = torch.cuda.synchronize if ids.device.type == "cuda" else (lambda: None)
    out_ids: list[int] = []
    steps: list[float] = []
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter_ns()
        out, past = prefill(model, ids, new_cache, kw)
        sync()
        pre = (time.perf_counter_ns() - t0) / 1e6
        sizes = {"prefill": cache_size(past)}
        nxt = out.logits[:, -1:].argmax(-1)
        for i in range(max_new - 1):
            out_ids.append(int(nxt))
            sync()
            s0 = time.perf_counter_ns()
            out, past = extend(model, nxt, past, len(prompt) + i, kw)
            sync()
            steps.append((time.perf_counter_ns() - s0) / 1e6)
            nxt = out.logits[:, -1:].argmax(-1)
        out_ids.append(int(nxt))
        sizes["decode"] = cache_size(past)
    return lm.tokenizer.decode(out_ids, skip_special_tokens=True), pre, steps, sizes


def _accuracy(metric: str, per_case: dict[str, dict[str, float]]) -> dict[str, Any]:
    xs = [v[metric] for v in per_case.values() if metric in v]
    n = len(xs)
    if not n:
        raise ConfigError(f"long-context: metric {metric!r} has no case in these settings (check lengths and kinds)")
    mean = sum(xs) / n
    stderr = (sum((x - mean) ** 2 for x in xs) / (n - 1) / n) ** 0.5 if n > 1 else None
    return {"value": mean, "stderr": stderr, "n": n, "unit": "", "direction": "higher",
            "aggregation": "exact match, mean over cases"}
