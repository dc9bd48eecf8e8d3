"""KIVI-style KV-cache quantization: keys per channel, values per token, codes bit-packed.

KIVI ("KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", Liu et al. 2024) found
that keys have outlier channels and values do not: keys are quantized per channel over a group
of `group` consecutive tokens, values per token over groups of `group` channels, both with an
asymmetric min-max quantizer (scale and minimum kept in float16). Tokens that do not yet fill a
key group, plus the `residual` most recent ones, stay in full precision; a full group is
quantized once and never touched again, so decoding appends without re-quantizing.

Codes are packed 8 / bits to a byte (bits 2, 4 or 8), so the bytes a layer reports are what it
holds: packed codes, float16 scales and minima, and the full-precision residual. Attention
still reads float keys: the layer dequantizes on every update (a fused kernel would read the
packed codes; on CPU the dequantization shows up in decode latency, as it should).

`quantize_reference` is the plain float64 definition the fast path is tested against.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_BITS = (2, 4, 8)


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits={bits!r}: KV codes are packed at {', '.join(map(str, SUPPORTED_BITS))} bits (16 = unquantized)")


def pack(codes: Any, bits: int) -> Any:
    """uint8 codes in [0, 2^bits) along the last dimension -> bytes holding 8 / bits codes each."""
    import torch

    per = 8 // bits
    if codes.shape[-1] % per:
        raise ValueError(f"the last dimension ({codes.shape[-1]}) is not a multiple of {per} codes per byte")
    c = codes.to(torch.uint8).reshape(*codes.shape[:-1], codes.shape[-1] // per, per)
    out = torch.zeros(c.shape[:-1], dtype=torch.uint8, device=codes.device)
    for i in range(per):
        out |= c[..., i] << (i * bits)
    return out


def unpack(packed: Any, bits: int) -> Any:
    import torch

    per = 8 // bits
    mask = (1 << bits) - 1
    parts = [(packed >> (i * bits)) & mask for i in range(per)]
    return torch.stack(parts, dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * per)


def _minmax_quantize(x: Any, bits: int, dim: int) -> tuple[Any, Any, Any]:
    """(codes uint8, scale fp16, minimum fp16), reduced over `dim` (kept as size 1)."""
    import torch

    levels = (1 << bits) - 1
    lo = x.amin(dim=dim, keepdim=True).to(torch.float16)
    hi = x.amax(dim=dim, keepdim=True)
    scale = ((hi - lo.float()) / levels).to(torch.float16)
    # A constant group (or one whose range underflows float16) codes everything as its minimum.
    safe = torch.where(scale.float() > 0, scale.float(), torch.ones_like(scale, dtype=torch.float32))
    codes = torch.clamp(torch.round((x.float() - lo.float()) / safe), 0, levels).to(torch.uint8)
    return codes, scale, lo


def quantize_keys(k: Any, bits: int) -> dict[str, Any]:
    """Keys [b, h, G, d]: one scale and minimum per channel over the group's G tokens."""
    _check_bits(bits)
    codes, scale, lo = _minmax_quantize(k, bits, dim=-2)
    return {"codes": pack(codes, bits), "scale": scale, "min": lo}


def quantize_values(v: Any, bits: int, group: int) -> dict[str, Any]:
    """Values [b, h, n, d]: one scale and minimum per token over each group of `group` channels."""
    _check_bits(bits)
    b, h, n, d = v.shape
    g = v.reshape(b, h, n, d // group, group)
    codes, scale, lo = _minmax_quantize(g, bits, dim=-1)
    return {"codes": pack(codes.reshape(b, h, n, d), bits), "scale": scale, "min": lo}


def dequantize_keys(q: dict[str, Any], bits: int, dtype: Any) -> Any:
    codes = unpack(q["codes"], bits).float()
    return (codes * q["scale"].float() + q["min"].float()).to(dtype)


def dequantize_values(q: dict[str, Any], bits: int, group: int, dtype: Any) -> Any:
    codes = unpack(q["codes"], bits).float()
    b, h, n, d = codes.shape
    g = codes.reshape(b, h, n, d // group, group)
    return (g * q["scale"].float() + q["min"].float()).reshape(b, h, n, d).to(dtype)


def nbytes(q: dict[str, Any]) -> int:
    return sum(int(t.numel()) * t.element_size() for t in q.values())


def quantize_reference(x: Any, bits: int, axis: int) -> Any:
    """The definition in float64, one group at a time: x is a numpy array whose `axis` is the
    group; returns the dequantized values (scale and minimum rounded to float16 as stored)."""
    import numpy as np

    levels = (1 << bits) - 1
    moved = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    out = np.empty_like(moved)
    for idx in np.ndindex(moved.shape[:-1]):
        g = moved[idx]
        lo = float(np.float16(g.min()))
        scale = float(np.float16((g.max() - lo) / levels))
        if scale > 0:
            out[idx] = np.clip(np.round((g - lo) / scale), 0, levels) * scale + lo
        else:
            out[idx] = lo
    return np.moveaxis(out, -1, axis)


def make_layer_class() -> type:
    """A quantized cache layer (sparsebench.kv.layer) whose codes are KIVI groups: `group` tokens
    at a time, keys per channel and values per token, past the `residual` most recent tokens."""
    from .layer import quantized_layer_base

    class KIVILayer(quantized_layer_base()):  # type: ignore[misc]
        def __init__(self, bits: int, group: int, residual: int) -> None:
            super().__init__(residual)
            _check_bits(bits)
            self.bits, self.group = bits, group

        def check(self, key_states: Any) -> None:
            if key_states.shape[-1] % self.group or key_states.shape[-1] % (8 // self.bits):
                raise ValueError(f"head dimension {key_states.shape[-1]} is not a multiple of the value group "
                                 f"{self.group}")

        def spill(self, held: int) -> int:
            # whole key groups only, once `residual` tokens stay behind
            return max(0, (held - self.residual) // self.group) * self.group

        def encode(self, keys: Any, values: Any) -> tuple[list[Any], list[Any]]:
            g, n = self.group, int(keys.shape[-2])
            return ([quantize_keys(keys[..., i : i + g, :], self.bits) for i in range(0, n, g)],
                    [quantize_values(values[..., i : i + g, :], self.bits, g) for i in range(0, n, g)])

        def decode_keys(self, code: Any, heads: int, dtype: Any) -> Any:
            return dequantize_keys(code, self.bits, dtype)

        def decode_values(self, code: Any, heads: int, dtype: Any) -> Any:
            return dequantize_values(code, self.bits, self.group, dtype)

        def code_bytes(self, code: Any) -> int:
            return nbytes(code)

    return KIVILayer


def kivi_cache(num_layers: int, bits: int, group: int, residual: int) -> Any:
    from transformers.cache_utils import Cache

    layer = make_layer_class()
    return Cache(layers=[layer(bits, group, residual) for _ in range(num_layers)])
