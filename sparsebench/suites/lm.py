"""The lm task: a causal LM's perplexity and next-token accuracy on held-back text windows,
and what the method costs to apply and to run.

Everything a method's numbers depend on happens here, identically for every method: loading the
suite's model, drawing calibration samples from the calibration text, applying the method
(timed), scoring the evaluation windows, timing prefill and decode, and measuring the bytes,
non-zeros and FLOPs of the model as the method left it. Per-window values go to the sidecar,
so `bench compare` runs paired tests over the same windows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import memory
from ..errors import ConfigError, DatasetError
from ..lm.data import LMData, load_lm_data, read_snapshot, write_snapshot
from ..methods.lm_base import LMMethod
from ..typedload import from_data
from .axes import TASK_COST_AXES
from .tasks import Task, TaskResult

log = logging.getLogger(__name__)

BASE_METRICS = {"perplexity": "lower", "nll": "lower", "token_accuracy": "higher"}


@dataclass(frozen=True)
class LMSettings:
    model: str = "smollm2-135m"  # a name sparsebench ships, a local folder or a hub id
    context_length: int = 512
    windows_per_text: int = 16
    batch_size: int = 4
    calibration_samples: int = 32
    calibration_length: int = 256
    seed: int = 0
    prefill_tokens: int = 256
    decode_tokens: int = 16
    latency_repeats: int = 3
    timeout_s: int = 3600


class LMTask(Task):
    name = "lm"
    cost_axes = TASK_COST_AXES["lm"]
    method_type = LMMethod
    capability = "language-model methods (the unmodified model, pruning, activation sparsity, sparse attention)"
    item_name = "windows"

    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None:
        from .. import lmtext

        texts = lmtext.available()
        for i, name in enumerate(metrics):
            base, _, text = name.partition("/")
            if base not in BASE_METRICS or (text and text not in texts) or name.endswith("/"):
                raise ConfigError(f"{file}: metrics[{i}]: {name!r} is not an lm metric (one of {', '.join(BASE_METRICS)}, "
                                  f"optionally per text as NAME/TEXT with TEXT one of {', '.join(texts)})")

    def settings_from(self, data: dict[str, Any], file: str) -> LMSettings:
        s = from_data(LMSettings, data, file, "settings")
        for key, value in asdict(s).items():
            if key == "model":
                if not str(value).strip():
                    raise ConfigError(f"{file}: settings.model: empty; name a model (smollm2-135m, a folder or a hub id)")
                continue
            if value < 0 or (value == 0 and key not in ("seed", "decode_tokens")):
                raise ConfigError(f"{file}: settings.{key}: {value} is out of range")
        if s.context_length < 2:
            raise ConfigError(f"{file}: settings.context_length: {s.context_length}; a window needs at least 2 tokens")
        return s

    def load_data(self, suite: Any, ref: str | None, name: str | None = None) -> LMData:
        if name is not None:
            raise DatasetError("--dataset-name names your own beir: folders; the lm suite's texts are declared by the suite")
        ref = ref or suite.default_dataset
        decl = suite.dataset(ref)
        data = load_lm_data(decl.source if decl else ref, decl.id if decl else ref)
        if decl is not None and decl.sha256 and data.checksum != decl.sha256:
            raise DatasetError(f"texts {decl.id!r}: checksum {data.checksum} differs from the {decl.sha256} that "
                               f"{suite.ref} pins; the shipped text changed: bump the suite version")
        return data

    def write_snapshot(self, cache_dir: Path, data: LMData) -> Path:  # type: ignore[override]
        return write_snapshot(cache_dir, data)

    def read_snapshot(self, path: Path) -> LMData:
        return read_snapshot(path)

    def describe(self, data: LMData) -> str:  # type: ignore[override]
        c = data.counts
        return (f"texts {data.id}: {', '.join(t.name for t in data.texts)} ({c['eval_words']} evaluation words, "
                f"{c['calibration_words']} calibration words)")

    def preflight(self, settings: LMSettings, methods: list[Any], cache_dir: Path,  # type: ignore[override]
                  device: str = "cpu") -> None:
        """The model must be loadable here (a GGUF is converted now, once, so workers time the
        load of the plain checkpoint) and every method must fit it and the device."""
        from ..lm.model import model_config

        for m in methods:
            try:
                m.check_device(device)
            except ValueError as e:
                raise ConfigError(f"{m}: {e}") from e
        config = model_config(settings.model, cache_dir)
        for m in methods:
            try:
                m.check_model(config)
            except ValueError as e:
                raise ConfigError(f"{m} on model {settings.model}: {e}") from e

    def subject(self, settings: LMSettings) -> dict[str, str]:  # type: ignore[override]
        return {"id": settings.model}

    def run(  # type: ignore[override]
        self,
        method: LMMethod,
        data: LMData,
        metrics: tuple[str, ...],
        settings: LMSettings,
        ctx: Any,
        run_file: Path | None = None,
    ) -> TaskResult:
        import torch

        from ..attention.cost import decode_proxy, prefill_proxies
        from ..lm.cost import model_costs, prefill_decode_ms
        from ..kv.measure import kv_costs
        from ..lm.evaluate import score_windows, score_windows_after_prefix
        from ..lm.model import load_causal_lm
        from ..lm.windows import calibration_samples, eval_windows

        if run_file is not None:
            log.warning("--save-runs writes ranked lists of retrieval runs; the lm task has none to write")
        torch.manual_seed(settings.seed)
        mem_base = memory.start()
        t0 = time.perf_counter()
        lm = load_causal_lm(settings.model, ctx.cache.root, ctx.device)
        model_load_s = time.perf_counter() - t0
        windows = eval_windows(lm.tokenizer, data.texts, settings.context_length, settings.windows_per_text)
        vocab = lm.model.get_input_embeddings().weight.shape[0]

        calibration = None
        samples: list[dict] = []
        if method.needs_calibration:
            from ..methods.lm_base import Calibration

            ids, samples = calibration_samples(lm.tokenizer, data.texts, settings.calibration_samples,
                                               settings.calibration_length, settings.seed)
            calibration = Calibration(ids, samples)
        t0 = time.perf_counter()
        report = method.apply(lm, calibration, ctx)
        calibration_s = time.perf_counter() - t0

        kv = report.kv
        prefix = min(settings.prefill_tokens, settings.context_length - 1)
        t0 = time.perf_counter()
        if kv is None:
            per_window = score_windows(lm.model, windows, settings.batch_size)
        else:  # a KV-cache method acts between a prefill and what follows it
            per_window = score_windows_after_prefix(lm.model, windows, settings.batch_size, prefix, kv.new_cache)
        eval_s = time.perf_counter() - t0
        attention = prefill_proxies(report.attention, lm.model.config, [len(w.ids) for w in windows])
        if report.attention is not None:
            report.attention.reset()  # the decode density below is the timed decode steps'
        eval_tokens = sum(v["tokens"] for v in per_window.values())
        for w in windows:
            v = per_window[w.id]
            del v["tokens"]
            for base in BASE_METRICS:
                v[f"{base}/{w.text}"] = v[base]

        prompt = windows[0].ids[: settings.prefill_tokens]
        if len(prompt) < settings.prefill_tokens:
            log.warning("prefill_tokens=%d is longer than a window; timing a %d-token prefill", settings.prefill_tokens, len(prompt))
        prefill_ms, decode_ms, n_lat, kv_sizes = prefill_decode_ms(lm.model, prompt, settings.decode_tokens,
                                                                   settings.latency_repeats, kv.new_cache if kv else None)
        attention.update(decode_proxy(report.attention))
        peak_rss_mb, peak_note = memory.method_peak_mib(mem_base)
        model = report.costs or model_costs(lm.model)

        metric_values = {m: _aggregate(m, windows, per_window) for m in metrics}
        costs: dict[str, dict[str, Any]] = {
            "model_load_s": {"value": model_load_s, "unit": "s", "n": 1},
            "calibration_s": {"value": calibration_s, "unit": "s", "n": 1},
            "prefill_ms": {"value": prefill_ms, "unit": "ms", "n": n_lat, "tokens": len(prompt)},
            "decode_ms_per_token": {"value": decode_ms, "unit": "ms", "n": n_lat * settings.decode_tokens,
                                    "after_prefill_tokens": len(prompt)},
            "eval_tokens_per_s": {"value": eval_tokens / eval_s, "unit": "tokens/s", "n": int(eval_tokens),
                                  "batch_size": settings.batch_size},
            "peak_rss_mb": {"value": peak_rss_mb, "unit": "MiB", "n": 1, **({"note": peak_note} if peak_note else {})},
            "process_peak_rss_mb": {"value": memory.process_peak_mib(), "unit": "MiB", "n": 1},
        }
        costs.update(model)
        costs.update(attention)
        costs.update(kv_costs(kv_sizes, lm.model.config, len(prompt), settings.decode_tokens,
                              next(lm.model.parameters()).element_size()))
        units = method.cost_units()
        for name, value in report.proxies.items():
            costs[name] = {"value": value, "unit": units.get(name, ""), "n": 1, "proxy": True}
        extra = {
            "model": lm.info,
            "windows": len(windows),
            "context_length": settings.context_length,
            "vocab_size": vocab,
            "backend": report.backend,
            "calibration": {"samples": samples, "texts": [t.name for t in data.texts]} if samples else None,
            "layer_sparsity": report.layer_sparsity,
            # KV-cache methods: each window's first `prefix` tokens are prefilled into the method's
            # cache and the rest scored against what it kept (every method scores the same positions).
            **({"kv_scoring": {"prefilled": prefix, "scored_through_cache": settings.context_length - prefix,
                               "backend": kv.backend}} if kv else {}),
            **report.extra,
        }
        return TaskResult(metrics=metric_values, costs=costs, per_query=per_window, extra=extra)


def _aggregate(metric: str, windows: list, per_window: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Means over windows (all of one length, so the mean NLL is the per-token NLL); perplexity
    is exp(mean NLL), the corpus perplexity, with its standard error by the delta method."""
    base, _, text = metric.partition("/")
    ids = [w.id for w in windows if not text or w.text == text]
    key = "nll" if base == "perplexity" else base
    xs = [per_window[i][key] for i in ids]
    n = len(xs)
    mean = sum(xs) / n
    stderr = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1) / n) if n > 1 else None
    if base == "perplexity":
        value = math.exp(mean)
        return {"value": value, "stderr": value * stderr if stderr is not None else None, "n": n, "unit": "",
                "direction": "lower", "aggregation": "exp(mean NLL over windows)" + (f" of {text}" if text else "")}
    unit = "nats/token" if base == "nll" else ""
    return {"value": mean, "stderr": stderr, "n": n, "unit": unit, "direction": BASE_METRICS[base],
            "aggregation": "mean over windows" + (f" of {text}" if text else "")}
