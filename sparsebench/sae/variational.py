"""The variational TopK SAE (vSAE) of Baker & Li 2025, "Analysis of Variational Sparse
Autoencoders", over dictionary_learning's TopK SAE and trainer.

The vSAE reads the TopK encoder's pre-activation as the mean mu of a Gaussian posterior per latent,
with a log-variance that is either learned (a second linear head) or fixed at 0 (unit variance).
Training samples z = mu + sigma * eps, keeps the top k of ReLU(z) and adds the KL divergence
of N(mu, sigma^2) from the standard normal prior, summed over latents:

    loss = ||x - x_hat||^2 + kl * 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)   (+ TopK's AuxK term)

At inference the posterior mean is used (no sampling): the inherited TopK encoder. The learned
log-variance is clamped to LOG_VAR_RANGE. The paper's result is negative: the vSAE does worse than TopK on SAEBench's core metrics, because the KL
term pushes means to 0 and many latents die. Only the loss is ours; the trainer's update (decoder
norm constraint, gradient projection, clipping, schedule) is dictionary_learning's.
`loss_reference` is the plain float64 definition the module's loss is tested against.
"""

from __future__ import annotations

from typing import Any

# The learned log-variance is clamped, as VAEs commonly do: unclamped, the head can push exp() to
# overflow within a few hundred steps (it did at k=64 here: every weight turned NaN).
LOG_VAR_RANGE = (-8.0, 8.0)


def classes() -> tuple[type, type]:
    """(VariationalTopKSAE, VariationalTopKTrainer), built on first use (dictionary_learning is
    importable only in the sae worker environment)."""
    import torch
    from dictionary_learning.trainers.top_k import AutoEncoderTopK, TopKTrainer
    from torch import nn

    class VariationalTopKSAE(AutoEncoderTopK):
        def __init__(self, activation_dim: int, dict_size: int, k: int, learn_variance: bool = True) -> None:
            super().__init__(activation_dim, dict_size, k)
            self.log_var = nn.Linear(activation_dim, dict_size) if learn_variance else None
            if self.log_var is not None:  # starts at unit variance, like the fixed-variance model
                nn.init.zeros_(self.log_var.weight)
                nn.init.zeros_(self.log_var.bias)

        def posterior(self, x: Any) -> tuple[Any, Any]:
            centred = x - self.b_dec
            mu = self.encoder(centred)
            if self.log_var is None:
                return mu, torch.zeros_like(mu)
            return mu, self.log_var(centred).clamp(*LOG_VAR_RANGE)

        def sample(self, x: Any, eps: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
            """(latents, top values, top indices, ReLU(z), mu, log_var) for noise `eps`."""
            mu, log_var = self.posterior(x)
            post_relu = nn.functional.relu(mu + torch.exp(0.5 * log_var) * eps)
            top = post_relu.topk(int(self.k), sorted=False, dim=-1)
            f = torch.zeros_like(post_relu).scatter_(-1, top.indices, top.values)
            return f, top.values, top.indices, post_relu, mu, log_var

    class VariationalTopKTrainer(TopKTrainer):
        def __init__(self, *args: Any, kl: float = 1.0, learn_variance: bool = True, noise_seed: int = 0,
                     **kwargs: Any) -> None:
            self._learn_variance = learn_variance
            super().__init__(*args, dict_class=self._make, **kwargs)
            self.kl = kl
            self.noise = torch.Generator().manual_seed(noise_seed)
            self.kl_value = 0.0

        def _make(self, activation_dim: int, dict_size: int, k: int) -> Any:
            return VariationalTopKSAE(activation_dim, dict_size, k, self._learn_variance)

        def loss(self, x: Any, step: int | None = None, logging: bool = False) -> Any:
            eps = torch.randn(x.shape[0], self.ae.dict_size, generator=self.noise).to(x.device)
            f, top_vals, top_idx, post_relu, mu, log_var = self.ae.sample(x, eps)
            if step is not None and step > self.threshold_start_step:
                self.update_threshold(top_vals)
            e = x - self.ae.decode(f)
            self.effective_l0 = top_vals.size(1)
            did_fire = torch.zeros_like(self.num_tokens_since_fired, dtype=torch.bool)
            did_fire[top_idx.flatten()] = True
            self.num_tokens_since_fired += x.size(0)
            self.num_tokens_since_fired[did_fire] = 0
            l2 = e.pow(2).sum(dim=-1).mean()
            aux = self.get_auxiliary_loss(e.detach(), post_relu) if self.auxk_alpha > 0 else 0.0
            kl = kl_divergence(mu, log_var)
            self.kl_value = float(kl.detach())
            return l2 + self.auxk_alpha * aux + self.kl * kl

    return VariationalTopKSAE, VariationalTopKTrainer


def kl_divergence(mu: Any, log_var: Any) -> Any:
    """KL(N(mu, exp(log_var)) || N(0, 1)) summed over latents, averaged over the batch."""
    import torch

    return (0.5 * (mu.pow(2) + torch.exp(log_var) - 1.0 - log_var)).sum(dim=-1).mean()


def loss_reference(x: Any, w_enc: Any, b_enc: Any, w_var: Any, b_var: Any, w_dec: Any, b_dec: Any, eps: Any, k: int,
                   kl: float) -> float:
    """The vSAE loss without AuxK, in float64 numpy, one token at a time. Weights as
    torch.nn.Linear stores them: w_enc [F, d], w_var [F, d] (None: unit variance), w_dec [d, F]."""
    import numpy as np

    x, eps = np.asarray(x, np.float64), np.asarray(eps, np.float64)
    total_l2 = total_kl = 0.0
    for i in range(x.shape[0]):
        c = x[i] - b_dec
        mu = w_enc @ c + b_enc
        log_var = np.clip(w_var @ c + b_var, *LOG_VAR_RANGE) if w_var is not None else np.zeros_like(mu)
        z = np.maximum(mu + np.exp(0.5 * log_var) * eps[i], 0.0)
        keep = np.argsort(-z, kind="stable")[:k]
        f = np.zeros_like(z)
        f[keep] = z[keep]
        x_hat = w_dec @ f + b_dec
        total_l2 += float(((x[i] - x_hat) ** 2).sum())
        total_kl += float((0.5 * (mu**2 + np.exp(log_var) - 1.0 - log_var)).sum())
    n = x.shape[0]
    return total_l2 / n + kl * total_kl / n
