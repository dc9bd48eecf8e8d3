"""The transformers cache layer our KV quantizers (KIVI, coupled quantization) share.

It is a DynamicLayer, so masks and lengths work as for the default cache. Its own storage
(`keys`, `values`) is the full-precision residual: the most recent tokens. After each update the
quantizer says how many of the oldest residual tokens to code now (`spill`), codes them once
(`encode`) and never touches them again, so decoding appends without re-quantizing. Attention
reads the decoded codes followed by the residual; `stored_bytes` is what the layer holds: codes
plus residual.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def quantized_layer_base() -> type:
    """The base class, built on first use: transformers is imported only where a cache is made."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class QuantizedLayer(DynamicLayer):
        def __init__(self, residual: int) -> None:
            super().__init__()
            self.residual = residual
            self.key_codes: list[Any] = []
            self.value_codes: list[Any] = []
            self.quantized_tokens = 0

        # -- what a quantizer defines ------------------------------------------------------
        def check(self, key_states: Any) -> None:
            """Refuse shapes the quantizer cannot code (called on the first update)."""

        def spill(self, held: int) -> int:
            """How many of the `held` residual tokens (oldest first) to code now."""
            raise NotImplementedError

        def encode(self, keys: Any, values: Any) -> tuple[list[Any], list[Any]]:
            """Codes for these tokens [b, h, n, d]: one or more chunks each of keys and values."""
            raise NotImplementedError

        def decode_keys(self, code: Any, heads: int, dtype: Any) -> Any:
            raise NotImplementedError

        def decode_values(self, code: Any, heads: int, dtype: Any) -> Any:
            raise NotImplementedError

        def code_bytes(self, code: Any) -> int:
            raise NotImplementedError

        # -- the cache layer ------------------------------------------------------------------
        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.check(key_states)
            self.keys = torch.cat([self.keys, key_states], dim=-2)
            self.values = torch.cat([self.values, value_states], dim=-2)
            n = self.spill(int(self.keys.shape[-2]))
            if n > 0:
                keys, values = self.encode(self.keys[..., :n, :], self.values[..., :n, :])
                self.key_codes.extend(keys)
                self.value_codes.extend(values)
                # Clones: a slice would keep the whole old tensor alive.
                self.keys, self.values = self.keys[..., n:, :].clone(), self.values[..., n:, :].clone()
                self.quantized_tokens += n
            heads, dtype = key_states.shape[1], key_states.dtype
            keys = [self.decode_keys(c, heads, dtype) for c in self.key_codes] + [self.keys]
            values = [self.decode_values(c, heads, dtype) for c in self.value_codes] + [self.values]
            return torch.cat(keys, dim=-2), torch.cat(values, dim=-2)

        def get_seq_length(self, *args: Any) -> int:
            if not self.is_initialized:
                return 0
            return self.quantized_tokens + int(self.keys.shape[-2])

        def stored_bytes(self) -> int:
            if not self.is_initialized:
                return 0
            codes = sum(self.code_bytes(c) for c in self.key_codes + self.value_codes)
            return codes + self.keys.numel() * self.keys.element_size() + self.values.numel() * self.values.element_size()

    return QuantizedLayer
