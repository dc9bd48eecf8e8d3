"""Q-Filters computed offline by the paper's recipe ("Q-Filters: Leveraging QK Geometry for
Efficient KV Cache Compression", Godey et al. 2025).

Queries and keys of a head share one dominant direction v (the first right singular vector of
the queries), with E<q, v> > 0: the attention logit q.k is then largest for keys far along v,
so a key's projection on v estimates its attention without any query. The published filters
are fetched from the model hub, which these machines cannot reach; this computes them from the
suite's calibration text instead: post-rotary queries of every head (as attention sees them),
pooled over the query heads that share a key/value head, one SVD each. kvpress's QFilterPress
scores a key by -(filter . k) and keeps the highest, so the filter stored is -v.
"""

from __future__ import annotations

from typing import Any


def principal_direction(queries: Any) -> Any:
    """Unit vector v maximising the queries' second moment along it, signed so E<q, v> > 0:
    queries [N, D] -> [D] (float64 SVD)."""
    import torch

    q = queries.double()
    _, _, vh = torch.linalg.svd(q, full_matrices=False)
    v = vh[0]
    if float((q @ v).mean()) < 0:
        v = -v
    return v


def compute_qfilters(model: Any, input_ids: Any) -> Any:
    """Filters [layers, kv_heads, head_dim] (the model's dtype) in kvpress's sign convention."""
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    layers = _attention_layers(model)
    grams: dict[int, list[Any]] = {i: [] for i in range(len(layers))}

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        cos, sin = kwargs["position_embeddings"]
        b, n, _ = hidden.shape
        q = module.q_proj(hidden).view(b, n, heads, module.head_dim).transpose(1, 2)
        if hasattr(module, "q_norm"):  # Qwen3 / Gemma3 normalise queries before the rotation
            q = module.q_norm(q)
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
        grams[module.layer_idx].append(q.detach().reshape(b, kv_heads, heads // kv_heads, n, module.head_dim)
                                       .permute(1, 0, 2, 3, 4).reshape(kv_heads, -1, module.head_dim).float())

    handles = [attn.register_forward_pre_hook(hook, with_kwargs=True) for attn in layers]
    try:
        with torch.inference_mode():
            for i in range(input_ids.shape[0]):
                model(input_ids=input_ids[i : i + 1].to(model.device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    filters = torch.zeros(len(layers), kv_heads, layers[0].head_dim, dtype=torch.float64)
    for layer, chunks in grams.items():
        q = torch.cat(chunks, dim=1)  # [kv_heads, N, D]
        for h in range(kv_heads):
            filters[layer, h] = -principal_direction(q[h])
    return filters.to(model.dtype)


def _attention_layers(model: Any) -> list[Any]:
    inner = model.model.language_model if hasattr(model.model, "language_model") else model.model
    layers = [layer.self_attn for layer in inner.layers]
    for attn in layers:
        if not hasattr(attn, "q_proj") or not hasattr(attn, "layer_idx"):
            raise ValueError(f"{type(attn).__name__}: Q-Filters need a Llama-like attention (q_proj, layer_idx)")
    return layers
