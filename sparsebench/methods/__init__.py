"""Method adapters, one module per method; each registers itself with `registry.register`."""
