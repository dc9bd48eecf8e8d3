"""Coupled quantization of the KV cache ("KV Cache is 1 Bit Per Channel: Efficient Large Language
Model Inference with Coupled Quantization", Zhang et al. 2024).

Channels of keys (and of values) are not independent: quantizing `channels` contiguous ones
jointly, as one vector coded by the nearest of 2^bits centroids, spends bits / channels bits per
channel and loses less than quantizing each channel alone at that rate. The centroids are
learned once per layer, for keys and for values, per group of coupled channels, by k-means over
what the cache holds on calibration text: uniform centroid learning, or the paper's
Fisher-guided centroid learning (`fisher=True`), a weighted k-means in which each calibration
vector counts by its diagonal Fisher information, the sum of the squared gradients of the
language-model loss with respect to its channels, so the centroids sit where an error costs the
model most. Assignment stays the nearest centroid either way: a per-vector weight scales its
whole term of the objective, so only the centroid update (a weighted mean) changes.

Channel groups run over the concatenation of a layer's key/value heads (head-major), as the cache
lays them out. Keys are coupled as the cache stores them, after the rotary embedding. The codebooks
are a per-model constant (every sequence in a batch shares them), so a layer's `stored_bytes` counts
the codes and the full-precision residual, and `codebook_bytes` reports the codebooks apart.

`encode_reference` is the plain float64 nearest-centroid definition the batched encoder is tested
against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .quant import pack, unpack

SUPPORTED_BITS = (2, 4, 8)


@dataclass(frozen=True)
class Codebook:
    """Centroids [groups, 2^bits, channels] (float32) of one layer's keys or values."""

    centroids: Any
    channels: int
    bits: int

    @property
    def nbytes(self) -> int:
        # Stored in float16 by a serving system; counted at that width.
        return int(self.centroids.numel()) * 2


def _groups(x: Any, channels: int) -> Any:
    """Cache tensor [b, h, n, d] -> [b, n, G, channels] over the head-major concatenated channels."""
    b, h, n, d = x.shape
    if (h * d) % channels:
        raise ValueError(f"{h * d} channels per layer are not a multiple of channels={channels} (coupled groups)")
    return x.permute(0, 2, 1, 3).reshape(b, n, (h * d) // channels, channels)


def _ungroup(g: Any, heads: int) -> Any:
    b, n, groups, channels = g.shape
    return g.reshape(b, n, heads, groups * channels // heads).permute(0, 2, 1, 3)


def kmeans(points: Any, k: int, iterations: int = 25, seed: int = 0, weights: Any = None) -> Any:
    """Lloyd's k-means in every group at once: points [G, N, c] -> centroids [G, k, c] (float32).

    weights [G, N] (non-negative) makes it the weighted k-means of sum_i w_i ||x_i - m||^2: each
    centroid is the weighted mean of its points. Initialised from k distinct points drawn with
    `seed`; a cluster left empty (or of zero weight) keeps its centroid."""
    import torch

    groups, n, c = points.shape
    if n < k:
        raise ValueError(f"{n} calibration vectors cannot place {k} centroids: give more calibration tokens "
                         "or fewer bits")
    x = points.float()
    g = torch.Generator().manual_seed(seed)
    start = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(groups)])  # [G, k]
    centroids = torch.gather(x, 1, start[..., None].expand(groups, k, c)).clone()
    w = torch.ones(groups, n) if weights is None else weights.float()
    if w.shape != (groups, n) or bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError(f"kmeans weights must be finite, non-negative and shaped [{groups}, {n}]")
    wx = x * w[..., None]
    for _ in range(iterations):
        assign = nearest(x, centroids)  # [G, N]
        sums = torch.zeros_like(centroids).scatter_add_(1, assign[..., None].expand(groups, n, c), wx)
        counts = torch.zeros(groups, k).scatter_add_(1, assign, w)
        filled = counts > 0
        centroids = torch.where(filled[..., None], sums / counts.clamp_min(1)[..., None], centroids)
    return centroids


def nearest(x: Any, centroids: Any, chunk_elements: int = 1 << 24) -> Any:
    """Index of the nearest centroid (squared Euclidean): x [G, N, c], centroids [G, k, c] -> [G, N]."""
    import torch

    groups, n, _ = x.shape
    norms = (centroids * centroids).sum(-1)[:, None, :]
    step = max(1, chunk_elements // (groups * centroids.shape[1]))  # bounds the [G, step, k] score block
    out = []
    for s in range(0, n, step):
        # ||x - m||^2 = ||x||^2 - 2 x.m + ||m||^2; the first term is the same for every centroid.
        scores = torch.baddbmm(norms, x[:, s : s + step], centroids.transpose(1, 2), alpha=-2.0)
        out.append(scores.argmin(dim=-1))
    return torch.cat(out, dim=1)


def learn_codebook(samples: Any, channels: int, bits: int, iterations: int = 20, seed: int = 0,
                   max_vectors: int = 8192, fisher: Any = None) -> Codebook:
    """Centroids of one layer's keys or values from the cache tensors held on calibration text
    (samples [b, h, n, d]: each token of each sample a training vector, at most `max_vectors`
    of them drawn with `seed`, which bounds the k-means time on long calibration sets).

    fisher: the squared gradients of the loss with respect to `samples` (same shape): each
    coupled vector is then weighted by the sum over its channels (Fisher-guided learning)."""
    import torch

    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r}: coupled codes are packed at {', '.join(map(str, SUPPORTED_BITS))} bits")
    grouped = _groups(samples.float(), channels)  # [b, n, G, c]
    points = grouped.reshape(-1, grouped.shape[2], channels)  # [N, G, c]
    weights = None
    if fisher is not None:
        if fisher.shape != samples.shape:
            raise ValueError(f"fisher {tuple(fisher.shape)} must have the samples' shape {tuple(samples.shape)}")
        weights = _groups(fisher.float(), channels).sum(-1).reshape(-1, grouped.shape[2])  # [N, G]
    if points.shape[0] > max_vectors:
        keep = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(seed))[:max_vectors]
        points = points[keep]
        weights = weights[keep] if weights is not None else None
    if weights is not None:
        # Scale-free: the weighted mean does not depend on the weights' scale, and normalising
        # keeps float32 sums accurate whatever the gradients' magnitude.
        weights = weights / weights.mean().clamp_min(torch.finfo(torch.float32).tiny)
    return Codebook(kmeans(points.transpose(0, 1).contiguous(), 1 << bits, iterations, seed,
                           None if weights is None else weights.transpose(0, 1).contiguous()), channels, bits)


def encode(x: Any, book: Codebook) -> Any:
    """Cache tensor [b, h, n, d] -> codes [b, n, G] (uint8), packed along G at `bits` per code."""
    import torch

    grouped = _groups(x.float(), book.channels)
    b, n, groups, c = grouped.shape
    codes = nearest(grouped.reshape(b * n, groups, c).transpose(0, 1).contiguous(), book.centroids)  # [G, b*n]
    codes = codes.transpose(0, 1).reshape(b, n, groups).to(torch.uint8)
    return pack(codes, book.bits)


def decode(packed: Any, book: Codebook, heads: int, dtype: Any) -> Any:
    """Packed codes [b, n, G * bits / 8] -> the centroids they name, as a cache tensor [b, h, n, d]."""
    import torch

    codes = unpack(packed, book.bits).long()  # [b, n, G]
    b, n, groups = codes.shape
    index = torch.arange(groups)[None, None, :].expand(b, n, groups)
    return _ungroup(book.centroids[index, codes], heads).to(dtype)


def encode_reference(x: Any, centroids: Any, channels: int) -> Any:
    """The definition in float64, one vector at a time: x [b, h, n, d] (numpy), centroids
    [G, k, c] -> codes [b, n, G] of the nearest centroid of each coupled group."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(centroids, dtype=np.float64)
    b, h, n, d = x.shape
    flat = x.transpose(0, 2, 1, 3).reshape(b, n, h * d)
    out = np.empty((b, n, (h * d) // channels), dtype=np.int64)
    for i in range(b):
        for t in range(n):
            for g in range(out.shape[2]):
                v = flat[i, t, g * channels : (g + 1) * channels]
                out[i, t, g] = int(np.argmin(((m[g] - v) ** 2).sum(axis=1)))
    return out


def make_layer_class() -> type:
    """A quantized cache layer (sparsebench.kv.layer) holding every token as coupled codes, except
    the `residual` most recent in full precision."""
    from .layer import quantized_layer_base

    class CoupledLayer(quantized_layer_base()):  # type: ignore[misc]
        def __init__(self, keys: Codebook, values: Codebook, residual: int) -> None:
            super().__init__(residual)
            self.key_book, self.value_book = keys, values

        def spill(self, held: int) -> int:
            return max(0, held - self.residual)

        def encode(self, keys: Any, values: Any) -> tuple[list[Any], list[Any]]:
            return [encode(keys, self.key_book)], [encode(values, self.value_book)]

        def decode_keys(self, code: Any, heads: int, dtype: Any) -> Any:
            return decode(code, self.key_book, heads, dtype)

        def decode_values(self, code: Any, heads: int, dtype: Any) -> Any:
            return decode(code, self.value_book, heads, dtype)

        def code_bytes(self, code: Any) -> int:
            return int(code.numel())  # packed uint8

    return CoupledLayer


def learn_codebooks(model: Any, input_ids: Any, channels: int, bits: int, seed: int = 0,
                    fisher: bool = False) -> list[tuple[Codebook, Codebook]]:
    """(keys, values) codebooks of every layer from what the model's own cache holds after
    prefilling each calibration sample; with `fisher`, weighted by `cache_fisher`'s squared
    gradients of the next-token loss (Fisher-guided centroid learning)."""
    held = cache_fisher(model, input_ids) if fisher else cache_states(model, input_ids)
    books = []
    for layer_idx, (keys, values, fk, fv) in enumerate(held):
        books.append((learn_codebook(keys, channels, bits, seed=seed + 2 * layer_idx, fisher=fk),
                      learn_codebook(values, channels, bits, seed=seed + 2 * layer_idx + 1, fisher=fv)))
    return books


def cache_states(model: Any, input_ids: Any) -> list[tuple[Any, Any, None, None]]:
    """Per layer, the keys and values [1, h, samples x n, d] the cache holds after prefilling
    each calibration sample (no gradients)."""
    import torch
    from transformers import DynamicCache

    per_layer: list[tuple[list[Any], list[Any]]] = []
    with torch.inference_mode():
        for i in range(input_ids.shape[0]):
            cache = DynamicCache(config=model.config)
            model(input_ids=input_ids[i : i + 1].to(model.device), past_key_values=cache, use_cache=True)
            for layer_idx, layer in enumerate(cache.layers):
                if layer_idx == len(per_layer):
                    per_layer.append(([], []))
                per_layer[layer_idx][0].append(layer.keys.float().cpu())
                per_layer[layer_idx][1].append(layer.values.float().cpu())
    return [(torch.cat(k, dim=2), torch.cat(v, dim=2), None, None) for k, v in per_layer]


def cache_fisher(model: Any, input_ids: Any) -> list[tuple[Any, Any, Any, Any]]:
    """Per layer: keys, values and the squared gradients of the mean next-token cross-entropy
    with respect to each (the diagonal empirical Fisher information of the cache entries),
    over the calibration samples.

    The weights stay frozen: gradients flow from the loss back through the attention to the
    cached keys and values only, entering the graph at the embedding output, so no weight
    gradient is ever stored."""
    import torch
    from transformers import DynamicCache

    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    hook = model.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.detach().requires_grad_(True))
    per_layer: list[tuple[list[Any], list[Any], list[Any], list[Any]]] = []
    try:
        with torch.enable_grad():
            for i in range(input_ids.shape[0]):
                ids = input_ids[i : i + 1].to(model.device)
                cache = DynamicCache(config=model.config)
                out = model(input_ids=ids, past_key_values=cache, use_cache=True, labels=ids)
                layers = list(cache.layers)
                for layer in layers:
                    layer.keys.retain_grad()
                    layer.values.retain_grad()
                out.loss.backward()
                for layer_idx, layer in enumerate(layers):
                    if layer_idx == len(per_layer):
                        per_layer.append(([], [], [], []))
                    parts = per_layer[layer_idx]
                    parts[0].append(layer.keys.detach().float().cpu())
                    parts[1].append(layer.values.detach().float().cpu())
                    parts[2].append(layer.keys.grad.detach().float().cpu().square())
                    parts[3].append(layer.values.grad.detach().float().cpu().square())
    finally:
        hook.remove()
        for p, flag in frozen:
            p.requires_grad_(flag)
    return [tuple(torch.cat(x, dim=2) for x in parts) for parts in per_layer]  # type: ignore[misc]


def coupled_cache(books: list[tuple[Codebook, Codebook]], residual: int) -> Any:
    from transformers.cache_utils import Cache

    layer = make_layer_class()
    return Cache(layers=[layer(k, v, residual) for k, v in books])
