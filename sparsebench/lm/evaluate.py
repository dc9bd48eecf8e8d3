"""Per-window negative log-likelihood and next-token accuracy.

A window of L tokens predicts its tokens 1..L-1 from what precedes them inside the window
(position 0 has no context and is not scored), the usual fixed-window perplexity. NLL is
summed in float64 from the model's float32 log-softmax, so a batch split changes nothing.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .windows import Window


def score_windows(model: Any, windows: Sequence[Window], batch_size: int) -> dict[str, dict[str, float]]:
    return _score(model, windows, batch_size, lambda ids: model(input_ids=ids, use_cache=False).logits)


def score_windows_after_prefix(model: Any, windows: Sequence[Window], batch_size: int, prefix: int,
                               new_cache: Callable[[], Any] | None) -> dict[str, dict[str, float]]:
    """The same scores, with each window run as a KV-cache method runs text: its first `prefix`
    tokens prefilled into the cache (which the method may compress at the end of the prefill),
    then the rest in one forward against what the cache kept, at their true positions. Every
    position is scored as in `score_windows`; those after the prefix see the compressed cache.
    With an untouched cache this equals `score_windows` up to float rounding (tested)."""
    import torch

    from .cached import cache_keyword, extend, prefill

    kw = cache_keyword(model)

    def logits(ids: Any) -> Any:
        first, cache = prefill(model, ids[:, :prefix], new_cache, kw)
        if len({layer.get_seq_length() for layer in cache.layers}) == 1:
            rest, _ = extend(model, ids[:, prefix:], cache, prefix, kw)
            return torch.cat([first.logits, rest.logits], dim=1)
        # Layers holding different numbers of positions (PyramidKV) cannot share one attention
        # mask over several new tokens: feed them one at a time, as decoding does.
        steps = [first.logits]
        for t in range(prefix, ids.shape[1]):
            out, cache = extend(model, ids[:, t : t + 1], cache, t, kw)
            steps.append(out.logits)
        return torch.cat(steps, dim=1)

    return _score(model, windows, batch_size, logits)


def _score(model: Any, windows: Sequence[Window], batch_size: int, forward: Callable[[Any], Any]) -> dict[str, dict[str, float]]:
    import torch

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            batch = windows[i : i + batch_size]
            ids = torch.tensor([w.ids for w in batch], dtype=torch.long, device=model.device)
            logits = forward(ids)[:, :-1].float()
            target = ids[:, 1:]
            logp = torch.log_softmax(logits, dim=-1)
            nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).double()  # [b, L-1]
            hits = (logits.argmax(-1) == target).double()
            for j, w in enumerate(batch):
                mean_nll = float(nll[j].mean())
                out[w.id] = {"nll": mean_nll, "perplexity": math.exp(mean_nll), "token_accuracy": float(hits[j].mean()),
                             "tokens": float(target.shape[1])}
    return out
