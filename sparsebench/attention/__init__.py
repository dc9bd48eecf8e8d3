"""Sparse attention inside a model: which keys each query attends, and the hook that applies it."""
