"""Per-window negative log-likelihood and next-token accuracy.

A window of L tokens predicts its tokens 1..L-1 from what precedes them inside the window
(position 0 has no context and is not scored), the usual fixed-window perplexity. NLL is
summed in float64 from the model's float32 log-softmax, so a batch split changes nothing.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .windows import Window


def score_windows(model: Any, windows: Sequence[Window], batch_size: int) -> dict[str, dict[str, float]]:
    import torch

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            batch = windows[i : i + batch_size]
            ids = torch.tensor([w.ids for w in batch], dtype=torch.long, device=model.device)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            target = ids[:, 1:]
            logp = torch.log_softmax(logits, dim=-1)
            nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).double()  # [b, L-1]
            hits = (logits.argmax(-1) == target).double()
            for j, w in enumerate(batch):
                mean_nll = float(nll[j].mean())
                out[w.id] = {"nll": mean_nll, "perplexity": math.exp(mean_nll), "token_accuracy": float(hits[j].mean()),
                             "tokens": float(target.shape[1])}
    return out
