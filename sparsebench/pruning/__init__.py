"""Pruning schemes for the decoder linears of Hugging Face causal LMs, and TEAL-style activation
sparsity. Entry point: `prune(model, scheme, sparsity, pattern, calibration, backend)`."""

from .api import BACKENDS, SCHEMES, PruneReport, prune, resolve_backend
from .layers import decoder_layers, prunable_linears
from .masks import count_zeros, parse_pattern, resolve_sparsity

__all__ = ["BACKENDS", "SCHEMES", "PruneReport", "prune", "resolve_backend", "decoder_layers", "prunable_linears",
           "count_zeros", "parse_pattern", "resolve_sparsity"]
