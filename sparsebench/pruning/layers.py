"""Which linears a pruning scheme touches, and running a causal LM one decoder layer at a time.

`prunable_linears` returns the nn.Linear modules inside the decoder layers (q/k/v/o and
gate/up/down for Llama-like models), never embeddings or lm_head. `LayerInputs` captures what
the first decoder layer receives (hidden states plus the positional arguments and keyword
arguments: rotary embeddings, masks...) so later layers can be run one after another on it,
as Wanda's and SparseGPT's reference code do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "transformer.layers")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(dotted prefix, ModuleList) of the decoder layers.

    Known paths first (Llama/Mistral/Qwen `model.layers`, OPT, GPT-2, GPT-NeoX); otherwise the
    longest nn.ModuleList whose entries contain nn.Linear modules."""
    for path in _LAYER_PATHS:
        found = _get(model, path)
        if isinstance(found, nn.ModuleList) and len(found):
            return path, found
    best: tuple[str, nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and all(
                any(isinstance(s, nn.Linear) for s in child.modules()) for child in mod):
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    if best is None:
        raise ValueError(f"{type(model).__name__}: found no decoder layers (a ModuleList of blocks with nn.Linear)")
    return best


def _excluded(model: nn.Module) -> set[int]:
    """ids of modules never pruned: embeddings and the output head."""
    out: set[int] = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        if callable(fn):
            try:
                mod = fn()
            except (NotImplementedError, AttributeError):
                mod = None
            if mod is not None:
                out.add(id(mod))
    lm_head = getattr(model, "lm_head", None)
    if lm_head is not None:
        out.add(id(lm_head))
    return out


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """{full module name: nn.Linear} of every linear inside the decoder layers, in module order.

    Falls back to every nn.Linear of the model except lm_head/embeddings when no decoder
    layers are found."""
    skip = _excluded(model)
    try:
        prefix, layers = decoder_layers(model)
    except ValueError:
        return {n: m for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and id(m) not in skip and not n.endswith("lm_head")}
    out: dict[str, nn.Linear] = {}
    for i, layer in enumerate(layers):
        for n, m in layer.named_modules():
            if isinstance(m, nn.Linear) and id(m) not in skip:
                out[f"{prefix}.{i}.{n}"] = m
    return out


def layer_linears(model: nn.Module, index: int) -> dict[str, nn.Linear]:
    prefix, _ = decoder_layers(model)
    head = f"{prefix}.{index}."
    return {n: m for n, m in prunable_linears(model).items() if n.startswith(head)}


class _Stop(Exception):
    pass


@dataclass
class LayerInputs:
    """Per calibration chunk: the hidden states entering a decoder layer, plus the other
    positional and keyword arguments the model passed to its first layer (shared by all layers)."""

    hidden: list[torch.Tensor] = field(default_factory=list)
    args: list[tuple] = field(default_factory=list)
    kwargs: list[dict] = field(default_factory=list)


def _chunks(calibration: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    if calibration.dim() != 2:
        raise ValueError(f"calibration must be token ids shaped [n_samples, seq_len], got {tuple(calibration.shape)}")
    return list(torch.split(calibration, max(1, chunk_size), dim=0))


@torch.no_grad()
def capture_first_layer_inputs(model: nn.Module, calibration: torch.Tensor, chunk_size: int = 8) -> LayerInputs:
    """Run the model up to its first decoder layer on each chunk of `calibration`; keep what
    that layer is called with."""
    _, layers = decoder_layers(model)
    captured = LayerInputs()

    def hook(_mod, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.hidden.append(hidden.detach())
        captured.args.append(tuple(args[1:]))
        captured.kwargs.append(dict(kwargs))
        raise _Stop

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        for ids in _chunks(calibration, chunk_size):
            ids = ids.to(device)
            try:
                model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs) -> list[torch.Tensor]:
    """The layer's output hidden states for every chunk."""
    outs = []
    for hidden, args, kwargs in zip(inputs.hidden, inputs.args, inputs.kwargs):
        out = layer(hidden, *args, **kwargs)
        outs.append(out[0] if isinstance(out, (tuple, list)) else out)
    return outs


class InputStats:
    """Streaming statistics of the inputs X [tokens, in] a linear receives: per-column sum of
    squares (Wanda) and optionally X^T X (SparseGPT's Hessian, up to the factor 2/n)."""

    def __init__(self, in_features: int, hessian: bool):
        self.tokens = 0
        self.samples = 0
        self.sumsq = torch.zeros(in_features, dtype=torch.float64)
        self.xtx = torch.zeros(in_features, in_features, dtype=torch.float64) if hessian else None

    def add(self, x: torch.Tensor) -> None:
        batch = x.shape[0] if x.dim() == 3 else 1
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        self.tokens += x.shape[0]
        self.samples += batch
        self.sumsq += (x * x).sum(dim=0)
        if self.xtx is not None:
            self.xtx += x.T @ x


def hook_input_stats(linears: dict[str, nn.Linear], hessian: bool) -> tuple[dict[str, InputStats], list]:
    stats = {n: InputStats(m.in_features, hessian) for n, m in linears.items()}
    handles = []
    for n, m in linears.items():
        def hook(_mod, args, _name=n):
            stats[_name].add(args[0].detach())
        handles.append(m.register_forward_pre_hook(hook))
    return stats, handles
