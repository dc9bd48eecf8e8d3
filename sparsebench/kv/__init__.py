"""The KV cache: what it holds (measured bytes), KIVI-style quantization, Q-Filters."""
