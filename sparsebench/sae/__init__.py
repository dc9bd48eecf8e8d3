"""Sparse autoencoders on a language model's residual stream: activations, training, metrics."""
