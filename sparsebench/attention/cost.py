"""Attention cost proxies of a record: the density achieved and the attention FLOPs per token.

A method routed through sparsebench.attention.hook counts what it attended; the dense model is
counted from the shapes (every causally visible pair, 4 x head_dim FLOPs each: QK and PV), so
the baseline row carries the same proxies as the sparse rows.
"""

from __future__ import annotations

from typing import Any, Sequence


def _shape(config: Any) -> tuple[int, int, int]:
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return heads, head_dim, int(config.num_hidden_layers)


def prefill_proxies(stats: Any, config: Any, lengths: Sequence[int]) -> dict[str, dict[str, Any]]:
    """`attention_density` and `attention_flops_per_token` over prefill passes of `lengths` tokens."""
    heads, head_dim, layers = _shape(config)
    tokens = float(sum(lengths))
    if stats is None:
        visible = sum(n * (n + 1) / 2 for n in lengths) * heads * layers
        density, flops, selection = 1.0, 4.0 * head_dim * visible, 0.0
    else:
        p = stats.phases["prefill"]
        density = p.attended / p.visible if p.visible else 1.0
        flops, selection = p.flops, p.selection_flops
    return {
        "attention_density": {"value": density, "unit": "fraction", "n": len(lengths), "proxy": True,
                              "over": "(query, key) pairs attended / causally visible, every layer and head, prefill"},
        "attention_flops_per_token": {"value": flops / tokens if tokens else 0.0, "unit": "FLOP", "n": int(tokens),
                                      "proxy": True, "selection_flops_per_token": selection / tokens if tokens else 0.0},
    }


def decode_proxy(stats: Any) -> dict[str, dict[str, Any]]:
    """`attention_density_decode`: what the decode steps since the last reset attended."""
    density = 1.0 if stats is None else stats.density("decode")
    if density is None:
        return {}
    n = 0 if stats is None else int(stats.phases["decode"].queries)
    return {"attention_density_decode": {"value": density, "unit": "fraction", "n": n, "proxy": True,
                                         "over": "decode steps after the timed prefill"}}
