"""SAEBench's core metrics, one sparse-probing metric, and the splice they need.

Definitions (SAEBench, Karvonen et al. 2025, "core" and "sparse_probing"):
- l0: mean number of non-zero latents per token.
- fvu: fraction of variance unexplained, sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over tokens
  (SAEBench reports explained_variance = 1 - fvu).
- cosine: mean cosine similarity of x and x_hat.
- ce_loss_recovered: (CE_zero - CE_sae) / (CE_zero - CE_clean), the next-token cross-entropy of the
  model with the layer's output replaced by the SAE's reconstruction (CE_sae), left alone (clean)
  or replaced by zeros (zero ablation); SAEBench's ce_loss_score. 1.0 for a perfect SAE, 0.0 for
  one no better than deleting the layer's output.
- dead_latents: fraction of latents that fire on none of the evaluation tokens; dense_latents: the
  fraction firing on more than 10% of them.
- sparse_probing@k: test accuracy of a logistic-regression probe on the k latents whose window
  means differ most between two classes (train split), from latents mean-pooled over each
  window's tokens. The label here is a window's register: an Austen novel or a Wikipedia article.
Position 0 of every window is left out of all of them and untouched by every splice
(sparsebench.sae.activations says why).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

DENSE_FRACTION = 0.1


class Autoencoder(Protocol):
    """What the metrics need from a trained SAE: float32 tensors in the model's own scale."""

    def encode(self, x: Any) -> Any: ...  # [n, d] -> [n, latents]

    def decode(self, f: Any) -> Any: ...  # [n, latents] -> [n, d]


def core(sae: Autoencoder, acts: Any, latents: int, batch: int = 2048) -> dict[str, float]:
    """l0, fvu, cosine, dead and dense latents over evaluation activations [n, d]."""
    import torch

    n = acts.shape[0]
    mean = acts.mean(dim=0, keepdim=True)
    sq_err = total = l0 = cos = 0.0
    fired = torch.zeros(latents, dtype=torch.long)
    with torch.inference_mode():
        for i in range(0, n, batch):
            x = acts[i : i + batch]
            f = sae.encode(x)
            x_hat = sae.decode(f)
            active = f != 0
            fired += active.sum(dim=0).cpu()
            l0 += float(active.sum())
            sq_err += float(((x - x_hat) ** 2).sum())
            total += float(((x - mean) ** 2).sum())
            cos += float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).sum())
    freq = fired.double() / n
    return {"l0": l0 / n, "fvu": sq_err / total, "cosine": cos / n, "dead_latents": float((fired == 0).double().mean()),
            "dense_latents": float((freq > DENSE_FRACTION).double().mean())}


def splice(model: Any, block: Any, replace: Any) -> Any:
    """A forward hook on `block` whose output positions 1.. go through `replace` ([n, d] -> [n, d])."""

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        b, t, d = hidden.shape
        tail = replace(hidden[:, 1:, :].reshape(-1, d).float()).to(hidden.dtype).reshape(b, t - 1, d)
        new = hidden.clone()
        new[:, 1:, :] = tail
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return block.register_forward_hook(hook)


def window_ce(model: Any, windows: Sequence[Any], batch_size: int) -> list[float]:
    """Each window's mean next-token cross-entropy (nats) over its predicted positions."""
    import torch

    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            ids = torch.tensor([w.ids for w in windows[i : i + batch_size]], dtype=torch.long, device=model.device)
            logits = model(input_ids=ids, use_cache=False).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            out.extend(loss.mean(dim=1).tolist())
    return out


def ce_losses(model: Any, block: Any, windows: Sequence[Any], batch_size: int, sae: Autoencoder) -> dict[str, list[float]]:
    """Per window: the clean, zero-ablated and SAE-spliced cross-entropy."""
    import torch

    out = {"clean": window_ce(model, windows, batch_size)}
    for name, replace in (("zero", torch.zeros_like), ("sae", lambda x: sae.decode(sae.encode(x)))):
        handle = splice(model, block, replace)
        try:
            out[name] = window_ce(model, windows, batch_size)
        finally:
            handle.remove()
    return out


def recovered(clean: float, zero: float, spliced: float) -> float:
    """SAEBench's formula as it stands (undefined only when ablation changes nothing; on a model
    whose ablated loss is below its clean loss, as an untrained one's can be, it still gives 1.0
    for a perfect SAE and 0.0 for one that ablates)."""
    gap = zero - clean
    return (zero - spliced) / gap if gap != 0 else math.nan


def pooled(sae: Autoencoder | None, acts: Any) -> Any:
    """Per-window means over positions 1..: of the SAE's latents, or of the activations (None).
    acts: [windows, positions, d] with position 0 already dropped."""
    import torch

    with torch.inference_mode():
        if sae is None:
            return acts.mean(dim=1)
        w, t, d = acts.shape
        return sae.encode(acts.reshape(-1, d)).reshape(w, t, -1).mean(dim=1)


def probe_accuracy(features: Any, labels: Sequence[int], k: int | None, seed: int = 0) -> float:
    """Train on even-numbered windows of each class, test on odd ones. With k, only the k
    features whose train-split class means differ most (SAEBench's selection) feed the probe."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    train = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        train[idx[::2]] = True
    if k is not None:
        diff = np.abs(x[train & (y == 1)].mean(axis=0) - x[train & (y == 0)].mean(axis=0))
        keep = np.argsort(-diff, kind="stable")[:k]
        x = x[:, keep]
    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(x[train]), y[train])
    return float((clf.predict(scaler.transform(x[~train])) == y[~train]).mean())
