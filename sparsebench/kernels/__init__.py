"""Compute kernels: each has a plain reference implementation and faster paths tested against it."""
