"""Residual-stream activations of a causal LM at one layer, on the suite's texts.

The activation at layer L is the output of decoder block L (the residual stream after it:
"resid_post"). Token windows are non-overlapping chunks of `context_length` tokens:
- training windows come from each text's calibration part, in order, up to `train_tokens`
  tokens split evenly over the texts;
- evaluation windows are the lm task's: evenly spaced over each text's evaluation part, which
  no SAE ever trains on; so are the sparse probe's windows (evenly spaced over the same parts).
Position 0 of every window is left out of training and of every metric: the first token of a
sequence draws attention as a sink and its residual norm is far above the rest (SAEBench leaves
the BOS token out for the same reason); the spliced forward passes leave it untouched.

Training activations are cached by a content key (model fingerprint, layer, window ids, tokens),
so every SAE of a suite trains on the same cached tensor and the LM runs once per machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..cache import ArtifactCache, content_key
from ..errors import ConfigError
from ..lm.windows import Window, eval_windows, tokenize

log = logging.getLogger(__name__)

# The sparse probe's label: the register of a window, an Austen novel (1) or a Wikipedia article
# (0), both from the evaluation parts.
PROBE_TEXTS = ("austen", "wiki")


def block(model: Any, layer: int) -> Any:
    """Decoder block `layer` of a transformers causal LM (Llama-style `model.model.layers`)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ConfigError(f"{type(model).__name__}: no model.layers to read the residual stream from")
    if not 0 <= layer < len(layers):
        raise ConfigError(f"layer={layer} is out of range: the model has {len(layers)} decoder layers (0-{len(layers) - 1})")
    return layers[layer]


def chunks(tokenizer: Any, text: str, name: str, part: str, length: int) -> list[Window]:
    ids = tokenize(tokenizer, text)
    return [Window(f"{name}/{part}/{s}", name, s, tuple(ids[s : s + length]))
            for s in range(0, len(ids) - length + 1, length)]


@dataclass
class WindowPlan:
    train: list[Window]
    eval: list[Window]
    probe: list[tuple[Window, int]]  # (window, label): 1 for Austen, 0 for Wikipedia (evaluation parts)


def _spaced(windows: list[Window], n: int) -> list[Window]:
    return [windows[i] for i in np.linspace(0, len(windows) - 1, n).round().astype(int).tolist()]


def plan_windows(tokenizer: Any, texts: Sequence[Any], context_length: int, train_tokens: int, eval_per_text: int,
                 probe_windows: int) -> WindowPlan:
    by_name = {t.name: t for t in texts}
    per_text = max(1, train_tokens // (len(texts) * context_length))
    train: list[Window] = []
    for t in texts:
        calib = chunks(tokenizer, t.calib_text, t.name, "calib", context_length)
        if len(calib) < per_text:
            log.warning("text %s: %d calibration windows of %d tokens, fewer than the %d asked for; training on all",
                        t.name, len(calib), context_length, per_text)
        train.extend(calib[:per_text])
    probe: list[tuple[Window, int]] = []
    if probe_windows:
        missing = [n for n in PROBE_TEXTS if n not in by_name]
        if missing:
            raise ConfigError(f"the sparse probe's label is Austen against Wikipedia; the texts lack "
                              f"{', '.join(missing)}: add them or set probe_windows=0")
        for label, name in ((1, PROBE_TEXTS[0]), (0, PROBE_TEXTS[1])):
            windows = chunks(tokenizer, by_name[name].eval_text, name, "eval", context_length)
            if len(windows) < probe_windows:
                raise ConfigError(f"text {name!r}: {len(windows)} evaluation windows; probe_windows={probe_windows} "
                                  "needs more")
            probe.extend((w, label) for w in _spaced(windows, probe_windows))
    return WindowPlan(train, eval_windows(tokenizer, texts, context_length, eval_per_text), probe)


class _Captured(Exception):
    """Raised by the capture hook: the blocks above the layer are not needed."""


def residual(model: Any, layer: int, windows: Sequence[Window], batch_size: int) -> Any:
    """Float32 tensor [n_windows, context_length, d]: block `layer`'s output on each window."""
    import torch

    out: list[Any] = []

    def grab(_module: Any, _args: Any, output: Any) -> None:
        out.append((output[0] if isinstance(output, tuple) else output).detach().float().cpu())
        raise _Captured  # stop the forward pass here: the layers above would be computed for nothing

    handle = block(model, layer).register_forward_hook(grab)
    try:
        with torch.inference_mode():
            for i in range(0, len(windows), batch_size):
                ids = torch.tensor([w.ids for w in windows[i : i + batch_size]], dtype=torch.long, device=model.device)
                try:
                    model.model(input_ids=ids, use_cache=False)
                except _Captured:
                    pass
    finally:
        handle.remove()
    if len(out) != -(-len(windows) // batch_size):
        raise RuntimeError(f"layer {layer}'s output was not captured on every batch ({len(out)} batches)")
    return torch.cat(out)


def training_activations(model: Any, model_sha: str, layer: int, windows: Sequence[Window], batch_size: int,
                         cache: ArtifactCache) -> tuple[np.ndarray, dict[str, Any]]:
    """[tokens, d] float32 (position 0 of each window left out), from the cache when it has them."""
    key = content_key("sae-activations/1", model_sha, layer, [(w.id, w.ids) for w in windows])
    hit = cache.load_array("sae-activations", key)
    if hit is not None:
        log.info("training activations (layer %d, %d windows) loaded from cache", layer, len(windows))
        arr, meta = hit
        return arr, {**meta, "cache_hit": True}
    t0 = time.perf_counter()
    acts = residual(model, layer, windows, batch_size)[:, 1:, :]
    arr = np.ascontiguousarray(acts.reshape(-1, acts.shape[-1]).numpy(), dtype=np.float32)
    meta = {"layer": layer, "windows": len(windows), "extract_s": time.perf_counter() - t0}
    cache.save_array("sae-activations", key, arr, meta)
    return arr, {**meta, "cache_hit": False}
