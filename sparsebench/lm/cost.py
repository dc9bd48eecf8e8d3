"""Cost measurements of a causal LM: prefill and decode latency, stored bytes, non-zeros, FLOPs.

Latency is measured on the model as the method left it (pruned weights are still dense tensors
unless the method converted them to a sparse kernel), so where sparsity brings no wall-clock
gain on this hardware the record shows that. Bytes are measured by serializing: safetensors
for the dense weights and, where the weights have zeros, the sparse format of
sparsebench.pruning.sparse_format; the smaller is what the model needs as stored.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence


def prefill_decode_ms(model: Any, prompt: Sequence[int], decode_tokens: int, repeats: int,
                      new_cache: Callable[[], Any] | None = None) -> tuple[float, float, int, dict[str, Any]]:
    """(median prefill ms, median decode ms per step, samples, KV sizes): batch 1, greedy, with
    the KV cache (`new_cache()` when the method holds it its own way). The KV sizes are what
    the cache held after the last round's prefill and after its decode steps
    (sparsebench.kv.measure.CacheSize).

    One untimed round first: the first calls pay for lazy initialisation and allocator growth."""
    import torch

    from ..kv.measure import cache_size
    from .cached import cache_keyword, extend, prefill

    ids = torch.tensor([list(prompt)], dtype=torch.long, device=model.device)
    kw = cache_keyword(model)
    # A GPU runs the kernels asynchronously: without a synchronize the clock stops when the
    # launches are queued, not when they finish.
    sync = torch.cuda.synchronize if ids.device.type == "cuda" else (lambda: None)
    prefill_ns, steps = [], []
    sizes: dict[str, Any] = {}
    with torch.inference_mode():
        for r in range(repeats + 1):
            sync()
            t0 = time.perf_counter_ns()
            out, past = prefill(model, ids, new_cache, kw)
            sync()
            t1 = time.perf_counter_ns()
            sizes["prefill"] = cache_size(past)
            nxt = out.logits[:, -1:].argmax(-1)
            round_steps = []
            for i in range(decode_tokens):
                sync()
                s0 = time.perf_counter_ns()
                out, past = extend(model, nxt, past, len(prompt) + i, kw)
                nxt = out.logits[:, -1:].argmax(-1)
                sync()
                round_steps.append(time.perf_counter_ns() - s0)
            sizes["decode"] = cache_size(past)
            if r:  # round 0 is the warm-up
                prefill_ns.append(t1 - t0)
                steps.extend(round_steps)
    return (statistics.median(prefill_ns) / 1e6, (statistics.median(steps) / 1e6 if steps else 0.0), len(prefill_ns),
            sizes)


def linear_weights(model: Any) -> dict[str, Any]:
    """Every nn.Linear weight of the model (lm_head included: it is a matmul per token)."""
    import torch

    return {name: m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def nnz_and_flops(model: Any) -> tuple[int, int, float]:
    """(non-zero linear weights, all linear weights, FLOPs per token): a multiply-add per
    non-zero weight of every linear layer (the matmuls dominate; attention scores over the
    context are left out, as they do not change with weight sparsity)."""
    import torch

    nnz = total = 0
    seen: set[int] = set()
    for w in linear_weights(model).values():
        if id(w) in seen:
            continue
        seen.add(id(w))
        total += w.numel()
        nnz += int(torch.count_nonzero(w))
    return nnz, total, 2.0 * nnz


def model_costs(model: Any) -> dict[str, dict[str, Any]]:
    """model_bytes (measured by writing the weights: the smaller of dense safetensors and the
    per-layer sparse layouts of sparsebench.pruning.sparse_format) and the weight proxies."""
    from ..pruning.sparse_format import storage

    from ..pruning.layers import prunable_linears

    st = storage(model)
    nnz, _, flops = nnz_and_flops(model)
    # The fraction of zeros where pruning applies (decoder linears; lm_head and embeddings stay
    # dense), so it reads as the method's sparsity; nonzero_weights counts every linear.
    decoder = [m.weight for m in prunable_linears(model).values()]
    zeros, total = sum(int((w == 0).sum()) for w in decoder), sum(w.numel() for w in decoder)
    fmt = "safetensors, per-layer smallest of dense / CSR / bitmask" if st.bytes_on_disk < st.dense_bytes_on_disk else "safetensors (dense)"
    layouts: dict[str, int] = {}
    for layout, _ in st.layouts.values():
        layouts[layout] = layouts.get(layout, 0) + 1
    return {
        "model_bytes": {"value": min(st.bytes_on_disk, st.dense_bytes_on_disk), "unit": "B", "n": 1, "format": fmt,
                        "dense_bytes": st.dense_bytes_on_disk, "layouts": layouts},
        "nonzero_weights": {"value": nnz, "unit": "count", "n": 1, "proxy": True},
        "flops_per_token": {"value": flops, "unit": "FLOP", "n": 1, "proxy": True},
        "weight_sparsity": {"value": zeros / total if total else 0.0, "unit": "fraction", "n": 1, "proxy": True,
                            "over": "decoder linear layers"},
    }
