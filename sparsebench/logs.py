"""Logging set-up shared by the CLI and the worker processes the runner starts."""

from __future__ import annotations

import logging
import sys

# Third-party libraries log per batch at INFO; keep their warnings only.
NOISY = ("sentence_transformers", "transformers", "bm25s", "httpx", "urllib3", "datasets", "ir_datasets", "mteb", "filelock",
         "accelerate", "llmcompressor", "compressed_tensors", "gguf")


def configure_logging(verbose: bool) -> None:
    """Add one stderr handler (once) and set levels; other handlers (pytest's, an embedding
    application's) are left in place."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "name", None) == "sparsebench"), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("sparsebench")
        root.addHandler(handler)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(levelname)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
