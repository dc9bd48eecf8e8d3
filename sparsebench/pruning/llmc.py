"""Wanda and SparseGPT through llm-compressor (`oneshot`), in-process, on an already-loaded model.

Needs the `prune` extra (llmcompressor==0.14.0.1), which pins transformers 5.15-5.17 and so lives
in `.venvs/prune`. What this adapter takes care of:

- Pattern semantics: llm-compressor's `mask_structure="N:M"` (like the Wanda/SparseGPT reference
  code's prune_n) counts the *pruned* weights per group of M; sparsebench's "N:M" counts the
  nonzeros kept (NVIDIA's 2:4). We pass `f"{M-N}:{M}"`. For 2:4 and 4:8 both read the same.
  With a mask structure llm-compressor ignores `sparsity`; we pass the implied 1 - N/M.
- Unstructured Wanda: llm-compressor zeroes int(sparsity * in) weights per row (truncation);
  sparsebench's rule is round(sparsity * in). We pass each layer its own sparsity
  (round(s*in) + 0.5) / in, so its truncation lands on the rounded count (a list of
  sparsities, one per target, is part of the modifier's API). Unstructured SparseGPT is
  passed `sparsity` unchanged: its mask is chosen per 128-column block over all rows (the
  paper's rule), so there is no per-row count to match.
- Targets: the exact names of `layers.prunable_linears(model)` (decoder linears only), plus
  ignore `re:.*lm_head`; calibration runs through the sequential pipeline (one decoder layer at
  a time, outputs recomputed after pruning, i.e. error propagated), batch size 1, unshuffled.
- No network and no files kept: the dataset is a `datasets.Dataset` built from the token
  tensor; `oneshot` insists on a processor (a placeholder object is passed, never used since
  the data are already tokenized) and re-reads the model's config from
  `config.name_or_path` (we point that at a temporary copy of the config, restored after).
  `oneshot` also replaces `model.save_pretrained` with a compressing wrapper; we undo that.
- Logging: llm-compressor logs through loguru to stdout at INFO with METRIC lines; on first
  use we reconfigure it (`configure_logger`) to send only WARNING and above, METRIC excluded,
  to the `logging` logger "sparsebench.pruning.llmc". Its tqdm bars are disabled.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import time
from typing import Any
from unittest import mock

import torch
from torch import nn

from . import masks
from .layers import prunable_linears

log = logging.getLogger(__name__)

_LOGGING_READY = False


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llmcompressor") is not None


def _quiet_loguru() -> None:
    global _LOGGING_READY
    if _LOGGING_READY:
        return
    from llmcompressor.logger import LoggerConfig, configure_logger
    from loguru import logger

    configure_logger(LoggerConfig(console_log_level=None, metrics_disabled=True))

    def forward(message: Any) -> None:
        record = message.record
        level = record["level"].no
        if record["level"].name == "METRIC":
            return
        log.log(level if level in (logging.WARNING, logging.ERROR, logging.CRITICAL) else logging.WARNING,
                "%s: %s", record["function"], record["message"])

    logger.add(forward, level="WARNING", format="{message}")
    _LOGGING_READY = True


class _Placeholder:
    """Stands in for a processor: oneshot requires one when given a dataset, and never uses it
    for an already-tokenized one (input_ids present)."""

    def save_pretrained(self, *_a: Any, **_k: Any) -> None:  # pragma: no cover - never saved
        pass


def _dataset(calibration: torch.Tensor):
    from datasets import Dataset

    ids = calibration.to(torch.long).cpu()
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})


@contextlib.contextmanager
def _no_tqdm():
    from tqdm import tqdm

    quiet = functools.partial(tqdm, disable=True)
    patches = []
    import importlib

    for mod_name in ("llmcompressor.pipelines.sequential.pipeline", "llmcompressor.pipelines.basic.pipeline",
                     "llmcompressor.pipelines.cache"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        if hasattr(mod, "tqdm"):
            patches.append(mock.patch.object(mod, "tqdm", quiet))
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


@contextlib.contextmanager
def _config_on_disk(model: nn.Module):
    config = model.config
    old = getattr(config, "_name_or_path", "")
    had_save = "save_pretrained" in model.__dict__
    with tempfile.TemporaryDirectory(prefix="sparsebench-llmc-") as tmp:
        config.save_pretrained(tmp)
        config._name_or_path = tmp
        try:
            yield
        finally:
            config._name_or_path = old
            if not had_save and "save_pretrained" in model.__dict__:
                del model.__dict__["save_pretrained"]


def build_modifier(model: nn.Module, scheme: str, sparsity: float, nm: tuple[int, int] | None,
                   blocksize: int = 128, percdamp: float = 0.01):
    from llmcompressor.modifiers.obcq import SparseGPTModifier
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    linears = prunable_linears(model)
    if nm is not None:
        for name, lin in linears.items():
            masks.check_divisible(lin.in_features, nm[1], name)
    targets = list(linears)  # module order == llm-compressor's target order
    structure = "0:0" if nm is None else f"{nm[1] - nm[0]}:{nm[1]}"
    common = dict(mask_structure=structure, targets=targets, ignore=["re:.*lm_head"])
    if scheme == "wanda":
        if nm is None:
            per_layer = [(masks.pruned_per_row(lin.in_features, sparsity) + 0.5) / lin.in_features
                         for lin in linears.values()]
        else:
            per_layer = sparsity
        return WandaPruningModifier(sparsity=per_layer, **common)
    if scheme == "sparsegpt":
        return SparseGPTModifier(sparsity=sparsity, block_size=blocksize, dampening_frac=percdamp, **common)
    raise ValueError(f"llm-compressor backend schemes are 'wanda' and 'sparsegpt', got {scheme!r}")


def prune_llmcompressor(model: nn.Module, scheme: str, sparsity: float | None, pattern: str,
                        calibration: torch.Tensor, blocksize: int = 128, percdamp: float = 0.01):
    """Prune `model` in place with llm-compressor; returns a PruneReport (backend 'llmcompressor')."""
    from .api import PruneReport

    sparsity, nm = masks.resolve_sparsity(sparsity, pattern)
    if calibration is None or calibration.dim() != 2:
        raise ValueError("llm-compressor pruning needs calibration token ids shaped [n_samples, seq_len]")
    start = time.perf_counter()
    _quiet_loguru()
    from llmcompressor import oneshot

    modifier = build_modifier(model, scheme, sparsity, nm, blocksize, percdamp)
    n, seq = calibration.shape
    was_training = model.training
    model.eval()
    try:
        with _config_on_disk(model), _no_tqdm(), torch.no_grad():
            oneshot(model=model, dataset=_dataset(calibration), processor=_Placeholder(), recipe=[modifier],
                    num_calibration_samples=n, max_seq_length=seq, shuffle_calibration_samples=False,
                    batch_size=1, pipeline="sequential", output_dir=None, log_dir=None)
    finally:
        model.train(was_training)
        try:  # drop the global session's references to the model and its hooks
            from llmcompressor.core import reset_session

            reset_session()
        except ImportError:  # pragma: no cover
            pass
    return PruneReport(seconds=time.perf_counter() - start, backend="llmcompressor",
                       layers=masks.count_zeros(prunable_linears(model)), scheme=scheme, sparsity=sparsity,
                       pattern=pattern)
