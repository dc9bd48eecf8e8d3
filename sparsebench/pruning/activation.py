"""TEAL-style activation sparsity (Liu et al. 2024, "Training-Free Activation Sparsity in Large
Language Models", arXiv:2408.14690): at inference, zero the entries of a hidden state entering a
linear layer whose magnitude is at most a per-layer threshold; the thresholds are calibrated on
calibration text so that the fraction zeroed equals the target sparsity.

Targets: by default the inputs of each decoder layer's MLP linears (`gate_proj`, `up_proj`,
which share one input, and `down_proj`, whose input is the gated intermediate activation); any
suffixes of `prunable_linears` names can be chosen (e.g. also q/k/v/o for TEAL's full variant).
Applied with forward pre-hooks: `apply(...)` returns a handle whose `remove()` restores the
model exactly.

Calibration: the threshold of a linear is the `sparsity`-quantile of |x| over its calibration
inputs (a uniform random subsample of at most `max_values` entries per linear). Sparsifying an
earlier input shifts later activations (gate/up -> down, layer i -> i+1), so calibration runs
`passes` rounds: round 1 on the dense model, each later round with the previous thresholds in
place, recomputing every threshold on the inputs that linear then sees (before its own
thresholding). Two rounds bring the achieved fraction to the target within sampling error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .layers import prunable_linears

DEFAULT_TARGETS = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def target_linears(model: nn.Module, targets: tuple[str, ...] = DEFAULT_TARGETS) -> dict[str, nn.Linear]:
    found = {n: m for n, m in prunable_linears(model).items() if any(n.endswith(t) for t in targets)}
    if not found:
        raise ValueError(f"{type(model).__name__}: no decoder linear ends with any of {', '.join(targets)}")
    return found


def _sparsify(x: torch.Tensor, threshold: float) -> torch.Tensor:
    return torch.where(x.abs() > threshold, x, torch.zeros((), dtype=x.dtype, device=x.device))


@dataclass
class ActivationSparsity:
    """Handle returned by `apply`; `remove()` takes the hooks off. Counts what it zeroed."""

    thresholds: dict[str, float]
    handles: list = field(default_factory=list)
    zeros: dict[str, int] = field(default_factory=dict)
    numel: dict[str, int] = field(default_factory=dict)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def reset_counts(self) -> None:
        self.zeros = {n: 0 for n in self.thresholds}
        self.numel = {n: 0 for n in self.thresholds}

    def achieved(self) -> dict[str, float]:
        return {n: self.zeros[n] / self.numel[n] for n in self.thresholds if self.numel.get(n)}

    def overall(self) -> float:
        total = sum(self.numel.values())
        return sum(self.zeros.values()) / total if total else 0.0

    def __enter__(self) -> "ActivationSparsity":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def apply(model: nn.Module, thresholds: dict[str, float]) -> ActivationSparsity:
    """Threshold the inputs of the named linears; returns a removable handle."""
    modules = dict(model.named_modules())
    handle = ActivationSparsity(dict(thresholds))
    handle.reset_counts()
    for name, t in thresholds.items():
        if name not in modules:
            raise ValueError(f"no module named {name!r} in the model")

        def hook(_mod, args, _name=name, _t=float(t)):
            x = _sparsify(args[0], _t)
            handle.zeros[_name] += int((x == 0).sum())
            handle.numel[_name] += x.numel()
            return (x, *args[1:])

        handle.handles.append(modules[name].register_forward_pre_hook(hook))
    return handle


def _run(model: nn.Module, tokens: torch.Tensor, chunk_size: int) -> None:
    device = next(model.parameters()).device
    for ids in torch.split(tokens, max(1, chunk_size), dim=0):
        ids = ids.to(device)
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)


@torch.no_grad()
def calibrate_thresholds(model: nn.Module, calibration: torch.Tensor, sparsity: float,
                         targets: tuple[str, ...] = DEFAULT_TARGETS, passes: int = 2,
                         max_values: int = 2_000_000, chunk_size: int = 8, seed: int = 0) -> dict[str, float]:
    """{linear name: threshold} so that a `sparsity` fraction of each input's entries is zeroed."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"activation sparsity must be in [0, 1), got {sparsity!r}")
    if calibration is None or calibration.dim() != 2:
        raise ValueError("calibration must be token ids shaped [n_samples, seq_len]")
    linears = target_linears(model, targets)
    if sparsity == 0:
        return {n: 0.0 for n in linears}  # |x| > 0 keeps every nonzero entry: nothing new is zeroed
    n_chunks = -(-calibration.shape[0] // max(1, chunk_size))
    per_call = max(1, max_values // n_chunks)
    gen = torch.Generator().manual_seed(seed)
    thresholds: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for round_ in range(max(1, passes)):
            samples: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
            handles = []
            for name, lin in linears.items():
                def hook(_mod, args, _name=name):
                    a = args[0].detach().abs().reshape(-1).float().cpu()
                    if a.numel() > per_call:
                        a = a[torch.randint(0, a.numel(), (per_call,), generator=gen)]
                    samples[_name].append(a)
                    t = thresholds.get(_name)
                    if t is not None:
                        return (_sparsify(args[0], t), *args[1:])
                    return None
                handles.append(lin.register_forward_pre_hook(hook))
            try:
                _run(model, calibration, chunk_size)
            finally:
                for h in handles:
                    h.remove()
            new = {}
            for name, parts in samples.items():
                a = torch.cat(parts).to(torch.float64)
                k = int(round(sparsity * a.numel()))
                new[name] = float(torch.kthvalue(a, max(1, k)).values) if k else 0.0
            thresholds = new
    finally:
        model.train(was_training)
    return thresholds


@torch.no_grad()
def measure(model: nn.Module, thresholds: dict[str, float], tokens: torch.Tensor,
            chunk_size: int = 8) -> dict[str, float]:
    """Achieved zero fraction of each thresholded input on `tokens` (hooks removed afterwards);
    the key "__overall__" holds the fraction over all of them together."""
    with apply(model, thresholds) as handle:
        _run(model, tokens, chunk_size)
        out = handle.achieved()
        out["__overall__"] = handle.overall()
    return out
