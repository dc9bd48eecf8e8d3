"""Content-keyed cache for expensive intermediates (corpus encodings, converted models).

Keys are sha256 digests of everything that determines the content, so a stale entry is never
served: a different model file, corpus or parameter gives a different key. Writes go to a
temporary file first and are renamed into place, so a killed run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    env = os.environ.get("SPARSEBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsebench"


def content_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        base = self.root / kind / key[:2] / key
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def load_array(self, kind: str, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        data, meta = self._paths(kind, key)
        if not (data.exists() and meta.exists()):
            return None
        try:
            info = json.loads(meta.read_text())
            arr = np.load(data, allow_pickle=False)
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable cache entry %s (%s); it will be recomputed", data, e)
            return None
        if info.get("sha256") != _array_digest(arr):
            log.warning("cache entry %s fails its checksum; it will be recomputed", data)
            return None
        return arr, info

    def save_array(self, kind: str, key: str, arr: np.ndarray, meta: dict[str, Any]) -> None:
        data, meta_path = self._paths(kind, key)
        data.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(data, lambda f: np.save(f, arr, allow_pickle=False))
        payload = dict(meta, sha256=_array_digest(arr), shape=list(arr.shape), dtype=str(arr.dtype))
        _atomic_write(meta_path, lambda f: f.write(json.dumps(payload, sort_keys=True).encode()))


def _array_digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
