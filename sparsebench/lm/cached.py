"""Forward passes through a KV cache that a method may have compressed.

After an eviction press the cache holds fewer positions than were prefilled, so transformers'
default (positions counted from the cache length) would give later tokens the wrong rotary
positions: every call here passes the true positions. The cache keyword is `cache` in recent
transformers and `past_key_values` before (the worker environments pin older ones).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


def cache_keyword(model: Any) -> str:
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefill(model: Any, ids: Any, new_cache: Callable[[], Any] | None, kw: str) -> tuple[Any, Any]:
    """(output, cache) of a forward over `ids` [b, n] from position 0 into a fresh cache."""
    extra = {kw: new_cache()} if new_cache is not None else {}
    out = model(input_ids=ids, use_cache=True, **extra)
    return out, cache_of(out, kw)


def extend(model: Any, ids: Any, cache: Any, start: int, kw: str) -> tuple[Any, Any]:
    """(output, cache) of a forward over `ids` [b, n] at positions start..start+n-1."""
    import torch

    positions = torch.arange(start, start + ids.shape[1], device=ids.device).unsqueeze(0).expand(ids.shape[0], -1)
    out = model(input_ids=ids, use_cache=True, position_ids=positions, **{kw: cache})
    return out, cache_of(out, kw)


def cache_of(out: Any, kw: str) -> Any:
    return getattr(out, "cache", None) if kw == "cache" else out.past_key_values
