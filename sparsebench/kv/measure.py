"""What a KV cache holds, measured from its tensors (quantized layers report their packed
storage), and what the same tokens would hold uncompressed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CacheSize:
    bytes: int  # every tensor the cache holds for keys and values
    tokens: int  # token positions held, summed over layers (and key/value heads are in `bytes`)
    layers: int
    min_tokens: int  # the fewest / most positions any layer holds (PyramidKV varies them)
    max_tokens: int


def cache_size(cache: Any) -> CacheSize:
    layers = list(getattr(cache, "layers", []))
    total = tokens = 0
    per_layer = []
    for layer in layers:
        own = getattr(layer, "stored_bytes", None)
        if callable(own):
            held = own()
        else:
            # transformers' QuantizedLayer: quantized tensors (optimum-quanto's packed codes, scales
            # and shifts) plus the full-precision residual in keys / values.
            parts = [getattr(layer, name, None) for name in ("_quantized_keys", "_quantized_values", "keys", "values")]
            held = sum(tensor_bytes(t) for t in parts if t is not None)
        n = int(layer.get_seq_length())
        total += held
        tokens += n
        per_layer.append(n)
    if not layers:
        raise ValueError(f"{type(cache).__name__} has no layers to measure (not a transformers Cache?)")
    return CacheSize(total, tokens, len(layers), min(per_layer), max(per_layer))


def tensor_bytes(t: Any) -> int:
    """Storage of a tensor; a tensor subclass (a quantized tensor) counts the tensors it is made of."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if callable(flatten):
        names, _ = flatten()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return int(t.numel()) * t.element_size()


def uncompressed_bytes(config: Any, tokens: int, batch: int = 1, element_size: int = 4) -> int:
    """Keys and values of `tokens` positions in every layer, unquantized, for this model."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * batch * kv_heads * tokens * head_dim * element_size


def kv_costs(sizes: dict[str, CacheSize], config: Any, prompt_tokens: int, decode_steps: int,
             element_size: int) -> dict[str, dict[str, Any]]:
    """The record's KV-cache costs from the sizes measured after a prefill of `prompt_tokens`
    and after `decode_steps` more tokens; the compression achieved is against the same positions
    held unquantized in the model's dtype."""
    pre, dec = sizes["prefill"], sizes["decode"]
    full_pre = uncompressed_bytes(config, prompt_tokens, element_size=element_size)
    full_dec = uncompressed_bytes(config, prompt_tokens + decode_steps, element_size=element_size)
    return {
        "kv_bytes": {"value": pre.bytes, "unit": "B", "n": 1, "after_prefill_tokens": prompt_tokens,
                     "uncompressed_bytes": full_pre, "compression_achieved": 1.0 - pre.bytes / full_pre,
                     "positions_held_per_layer": pre.tokens / pre.layers,
                     "positions_held_range": [pre.min_tokens, pre.max_tokens]},
        "kv_bytes_decode": {"value": dec.bytes, "unit": "B", "n": 1, "after_prefill_tokens": prompt_tokens,
                            "decode_steps": decode_steps, "uncompressed_bytes": full_dec,
                            "compression_achieved": 1.0 - dec.bytes / full_dec},
        "kv_kept_fraction": {"value": pre.tokens / (pre.layers * prompt_tokens), "unit": "fraction", "n": 1,
                             "proxy": True, "over": "positions held after the prefill / prefilled, mean over layers"},
    }
