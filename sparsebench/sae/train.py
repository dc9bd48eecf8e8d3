"""Training an SAE with a dictionary_learning trainer on cached activations, and the trained SAE
as the metrics see it.

dictionary_learning's own loop (`trainSAE`) reads activations from an nnsight buffer over a live
model and logs to wandb; the trainers themselves only need `update(step, batch)`. This loop feeds
them shuffled batches of the cached activations, epoch after epoch, from a seeded generator.

Activations are scaled by one constant so that their mean squared norm is the width d, as
dictionary_learning's `normalize_activations` does: the L1 coefficients and learning rates the
library and the papers use are meant for that scale. `ScaledSAE` undoes the scale on the way out,
so every metric sees the model's own activations.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def norm_scale(acts: np.ndarray) -> float:
    """The constant that gives the activations a mean squared norm of d."""
    mean_sq = float(np.mean(np.sum(acts.astype(np.float64) ** 2, axis=1)))
    return math.sqrt(acts.shape[1] / mean_sq) if mean_sq > 0 else 1.0


@dataclass
class ScaledSAE:
    """A trained dictionary (any module with encode / decode) behind the activation scale."""

    module: Any
    scale: float

    def encode(self, x: Any) -> Any:
        return self.module.encode(x * self.scale)

    def decode(self, f: Any) -> Any:
        return self.module.decode(f) / self.scale

    @property
    def parameters(self) -> int:
        return sum(int(p.numel()) for p in self.module.parameters())

    @property
    def bytes(self) -> int:
        return sum(int(p.numel()) * p.element_size() for p in self.module.parameters())


def schedule(steps: int) -> dict[str, int]:
    """The trainers' warm-up lengths default to thousands of steps (tuned for runs of ~100k);
    a run this short warms up over its first tenth."""
    return {"warmup_steps": max(1, steps // 10)}


def fit(trainer: Any, acts: np.ndarray, scale: float, epochs: float, batch_size: int, seed: int) -> int:
    """Run `trainer` over shuffled batches of `acts` (scaled); returns the steps taken."""
    import torch

    x = torch.from_numpy(acts)
    n = x.shape[0]
    steps = steps_for(n, epochs, batch_size)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    pos = 0
    trainer.ae.train()
    for step in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        batch = x[order[pos : pos + batch_size]] * scale
        pos += batch_size
        trainer.update(step, batch)
        if step and step % max(1, steps // 5) == 0:
            log.info("step %d/%d", step, steps)
    trainer.ae.eval()
    return steps


def steps_for(tokens: int, epochs: float, batch_size: int) -> int:
    return max(1, int(tokens * epochs) // batch_size)


def train_with(make_trainer: Any, acts: np.ndarray, train: Any, backend: str, **kwargs: Any) -> Any:
    """Build a dictionary_learning trainer (`make_trainer(steps=..., activation_dim=..., layer=...,
    lm_name=..., seed=..., device="cpu", warmup_steps=..., **kwargs)`), fit it, and report."""
    import torch

    from ..methods.sae_base import FitReport

    torch.manual_seed(train.seed)
    scale = norm_scale(acts)
    steps = steps_for(acts.shape[0], train.epochs, train.batch_size)
    trainer = make_trainer(steps=steps, activation_dim=int(acts.shape[1]), layer=train.layer, lm_name=train.model,
                           seed=train.seed, device="cpu", **schedule(steps), **kwargs)
    fit(trainer, acts, scale, train.epochs, train.batch_size, train.seed)
    sae = ScaledSAE(trainer.ae, scale)
    return FitReport(sae, latents=int(trainer.ae.dict_size), parameters=sae.parameters, bytes=sae.bytes, backend=backend,
                     steps=steps, extra={"activation_scale": scale, "trainer": type(trainer).__name__})
