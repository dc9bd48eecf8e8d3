"""The sae task: a sparse autoencoder trained on a causal LM's residual stream at one layer, and
what it keeps (SAEBench's core metrics, sparse probing) against what it costs.

Identically for every method: the suite's model is loaded, the training activations (from the
calibration parts of the texts) are extracted once per machine and cached, the method trains on
them (timed: train_s), and the trained SAE is measured on evaluation windows no SAE trains on:
reconstruction (l0, fvu, cosine, dead and dense latents), the model's next-token loss with the
SAE spliced in (ce_loss_recovered), a sparse probe on its latents, and its encode latency.
Per-window values go to the sidecar, so `bench compare` runs paired tests over the same windows.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import memory
from ..errors import BenchError, ConfigError
from ..lm.data import LMData
from ..methods.sae_base import SAEMethod, TrainSettings
from ..typedload import from_data
from .axes import TASK_COST_AXES
from .lm import LMTask
from .tasks import TaskResult

log = logging.getLogger(__name__)

# metric -> (direction, unit, aggregation)
METRICS = {
    "l0": ("lower", "latents", "non-zero latents per token, mean over evaluation tokens"),
    "fvu": ("lower", "", "sum of squared reconstruction errors / total variance, over evaluation tokens"),
    "cosine": ("higher", "", "cosine of activation and reconstruction, mean over evaluation tokens"),
    "ce_loss_recovered": ("higher", "", "(CE zero-ablated - CE with the SAE) / (CE zero-ablated - CE clean), of means "
                                        "over windows"),
    "ce_loss_sae": ("lower", "nats/token", "next-token cross-entropy with the SAE spliced in, mean over windows"),
    "dead_latents": ("lower", "fraction", "latents firing on no evaluation token"),
    "dense_latents": ("lower", "fraction", "latents firing on more than 10% of evaluation tokens"),
}
PROBE = "sparse_probing@"


@dataclass(frozen=True)
class SAESettings:
    model: str = "smollm2-135m"
    layer: int = 15  # decoder block whose output (the residual stream) the SAE reconstructs
    context_length: int = 128
    train_tokens: int = 65536  # training windows' tokens, split evenly over the texts' calibration parts
    eval_windows_per_text: int = 16
    probe_windows: int = 64  # per class: Austen and Wikipedia windows for the sparse probe (0: no probe)
    epochs: float = 4.0
    batch_size: int = 512  # activations per training step
    lm_batch_size: int = 8  # windows per forward pass of the LM
    seed: int = 0
    latency_repeats: int = 5
    timeout_s: int = 3600


def probe_ks(metrics: tuple[str, ...]) -> list[int]:
    return [int(m[len(PROBE):]) for m in metrics if m.startswith(PROBE)]


class SAETask(LMTask):
    name = "sae"
    cost_axes = TASK_COST_AXES["sae"]
    method_type = SAEMethod
    capability = "sparse autoencoders (identity_sae, relu_sae, topk_sae, matryoshka_sae, vsae)"
    item_name = "windows"

    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None:
        for i, name in enumerate(metrics):
            k = name[len(PROBE):] if name.startswith(PROBE) else None
            if name not in METRICS and not (k is not None and k.isdigit() and int(k) >= 1):
                raise ConfigError(f"{file}: metrics[{i}]: {name!r} is not an sae metric (one of {', '.join(METRICS)}, "
                                  f"or {PROBE}K with K >= 1 latents)")

    def settings_from(self, data: dict[str, Any], file: str) -> SAESettings:  # type: ignore[override]
        s = from_data(SAESettings, data, file, "settings")
        for key, value in asdict(s).items():
            if key == "model":
                if not str(value).strip():
                    raise ConfigError(f"{file}: settings.model: empty; name a model (smollm2-135m, a folder or a hub id)")
                continue
            if value < 0 or (value == 0 and key not in ("seed", "layer", "probe_windows")):
                raise ConfigError(f"{file}: settings.{key}: {value} is out of range")
        if s.context_length < 3:
            raise ConfigError(f"{file}: settings.context_length: {s.context_length}; a window needs at least 3 tokens")
        return s

    def preflight(self, settings: Any, methods: list[Any], cache_dir: Path, device: str = "cpu") -> None:  # type: ignore[override]
        super().preflight(settings, methods, cache_dir, device)
        from ..lm.model import model_config

        layers = getattr(model_config(settings.model, cache_dir), "num_hidden_layers", None)
        if layers is not None and not 0 <= settings.layer < layers:
            raise ConfigError(f"sae: settings.layer={settings.layer} is out of range: model {settings.model} has "
                              f"{layers} decoder layers (0-{layers - 1})")

    def run(  # type: ignore[override]
        self,
        method: SAEMethod,
        data: LMData,
        metrics: tuple[str, ...],
        settings: SAESettings,
        ctx: Any,
        run_file: Path | None = None,
    ) -> TaskResult:
        import torch

        from ..lm.model import load_causal_lm
        from ..sae import metrics as sm
        from ..sae.activations import block, plan_windows, residual, training_activations

        if run_file is not None:
            log.warning("--save-runs writes ranked lists of retrieval runs; the sae task has none to write")
        torch.manual_seed(settings.seed)
        mem_base = memory.start()
        t0 = time.perf_counter()
        lm = load_causal_lm(settings.model, ctx.cache.root, ctx.device)
        model_load_s = time.perf_counter() - t0
        ks = probe_ks(metrics)
        plan = plan_windows(lm.tokenizer, data.texts, settings.context_length, settings.train_tokens,
                            settings.eval_windows_per_text, settings.probe_windows if ks else 0)
        acts, acts_meta = training_activations(lm.model, lm.info["sha256"], settings.layer, plan.train,
                                               settings.lm_batch_size, ctx.cache)
        train = TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size, seed=settings.seed,
                              layer=settings.layer, model=settings.model)
        t0 = time.perf_counter()
        fitted = method.fit(acts, train, ctx)
        train_s = time.perf_counter() - t0
        train_tokens = int(acts.shape[0])
        del acts
        sae = fitted.sae

        layer = block(lm.model, settings.layer)
        eval_acts = residual(lm.model, settings.layer, plan.eval, settings.lm_batch_size)[:, 1:, :]
        flat = eval_acts.reshape(-1, eval_acts.shape[-1])
        overall = sm.core(sae, flat, fitted.latents)
        if not all(math.isfinite(v) for v in overall.values()):
            raise BenchError(f"{method}: training diverged: its reconstruction of the evaluation tokens is not finite "
                             f"({', '.join(f'{k}={v}' for k, v in overall.items())})")
        per_window: dict[str, dict[str, float]] = {}
        for i, w in enumerate(plan.eval):
            c = sm.core(sae, eval_acts[i], fitted.latents)
            per_window[w.id] = {"l0": c["l0"], "fvu": c["fvu"], "cosine": c["cosine"]}
        ce = sm.ce_losses(lm.model, layer, plan.eval, settings.lm_batch_size, sae)
        for i, w in enumerate(plan.eval):
            per_window[w.id].update(ce_loss_sae=ce["sae"][i],
                                    ce_loss_recovered=sm.recovered(ce["clean"][i], ce["zero"][i], ce["sae"][i]))
        means = {name: statistics.fmean(v) for name, v in ce.items()}

        probe: dict[str, Any] = {}
        if ks:
            windows = [w for w, _ in plan.probe]
            labels = [y for _, y in plan.probe]
            probe_acts = residual(lm.model, settings.layer, windows, settings.lm_batch_size)[:, 1:, :]
            latents = sm.pooled(sae, probe_acts).numpy()
            raw = sm.pooled(None, probe_acts).numpy()
            probe = {"label": "register: Austen (1) or Wikipedia (0), evaluation parts", "windows": len(windows),
                     "accuracy": {k: sm.probe_accuracy(latents, labels, k, settings.seed) for k in ks},
                     "activations_accuracy": sm.probe_accuracy(raw, labels, None, settings.seed),
                     "activations_accuracy_at_k": {k: sm.probe_accuracy(raw, labels, k, settings.seed) for k in ks}}

        encode_us = _encode_us_per_token(sae, flat[:1024], settings.latency_repeats)
        peak_rss_mb, peak_note = memory.method_peak_mib(mem_base)

        values = {**overall, "ce_loss_sae": means["sae"],
                  "ce_loss_recovered": sm.recovered(means["clean"], means["zero"], means["sae"])}
        out_metrics: dict[str, dict[str, Any]] = {}
        for m in metrics:
            if m.startswith(PROBE):
                k = int(m[len(PROBE):])
                out_metrics[m] = {"value": probe["accuracy"][k], "stderr": None, "n": probe["windows"] // 2, "unit": "",
                                  "direction": "higher",
                                  "aggregation": f"test accuracy of a logistic probe on the {k} latents most different "
                                                 "between classes (train split), latents mean-pooled per window"}
                continue
            direction, unit, aggregation = METRICS[m]
            xs = [v[m] for v in per_window.values()] if m in next(iter(per_window.values())) else []
            stderr = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 and m != "ce_loss_recovered" else None
            n = len(plan.eval) if m.startswith("ce_") else int(flat.shape[0])
            out_metrics[m] = {"value": values[m], "stderr": stderr, "n": n, "unit": unit, "direction": direction,
                              "aggregation": aggregation}

        costs: dict[str, dict[str, Any]] = {
            "model_load_s": {"value": model_load_s, "unit": "s", "n": 1},
            "train_s": {"value": train_s, "unit": "s", "n": 1, "tokens": train_tokens, "steps": fitted.steps},
            "sae_parameters": {"value": float(fitted.parameters), "unit": "parameters", "n": 1},
            "sae_bytes": {"value": float(fitted.bytes), "unit": "B", "n": 1},
            "encode_us_per_token": {"value": encode_us, "unit": "us", "n": settings.latency_repeats,
                                    "tokens": int(min(1024, flat.shape[0]))},
            "peak_rss_mb": {"value": peak_rss_mb, "unit": "MiB", "n": 1, **({"note": peak_note} if peak_note else {})},
            "process_peak_rss_mb": {"value": memory.process_peak_mib(), "unit": "MiB", "n": 1},
        }
        extra = {
            "model": lm.info,
            "layer": settings.layer,
            "latents": fitted.latents,
            "backend": fitted.backend,
            "fit": fitted.extra,
            "windows": {"train": len(plan.train), "eval": len(plan.eval), "context_length": settings.context_length,
                        "train_tokens": train_tokens, "eval_tokens": int(flat.shape[0]),
                        "split": "training: the texts' calibration parts; evaluation and probe: their evaluation "
                                 "parts; position 0 of each window left out"},
            "activations": {k: acts_meta.get(k) for k in ("cache_hit", "extract_s", "windows")},
            "ce": {"clean": means["clean"], "zero_ablation": means["zero"], "sae": means["sae"]},
            **({"probe": {**probe, "accuracy": {str(k): v for k, v in probe["accuracy"].items()},
                          "activations_accuracy_at_k": {str(k): v for k, v in probe["activations_accuracy_at_k"].items()}}}
               if probe else {}),
        }
        return TaskResult(metrics=out_metrics, costs=costs, per_query=per_window, extra=extra)


def _encode_us_per_token(sae: Any, x: Any, repeats: int) -> float:
    """Median over repeats of encoding a batch of tokens, per token (one warm-up call first)."""
    import torch

    with torch.inference_mode():
        sae.encode(x)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            sae.encode(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) / max(1, x.shape[0]) * 1e6
