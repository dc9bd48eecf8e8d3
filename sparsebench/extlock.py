"""An exclusive, crash-safe guard around torch's just-in-time C++ extension builds.

torch.utils.cpp_extension.load() serializes builds with a `lock` file created with O_EXCL in each
extension's build folder and removed when the build ends. A process killed while it holds one (a
timed-out CI job, ^C during the first PLAID build) leaves the file behind, and every later load of
that extension, in any checkout sharing the cache, then waits on it forever without a word.

The guard takes an fcntl lock on one file in the extensions folder. The kernel releases that lock
when its holder dies, so it cannot go stale. Every sparsebench process loads extensions only
while holding it, so a torch `lock` file found while holding it belongs to no running build of
ours: it is stale, and is removed (and logged) before the load can wait on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

GUARD_NAME = ".sparsebench-build.lock"


def remove_stale_locks(extensions_dir: Path) -> list[Path]:
    """Remove torch's per-extension `lock` files under `extensions_dir` (one level down, where
    cpp_extension puts them). Only call this while holding `extension_guard`."""
    removed = []
    for lock in sorted(extensions_dir.glob("*/lock")):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            removed.append(lock)
            log.warning("removed a stale torch extension build lock left by a killed process: %s", lock)
    return removed


@contextlib.contextmanager
def extension_guard(extensions_dir: Path) -> Iterator[None]:
    """Hold the guard on `extensions_dir` (created if missing) for the enclosed extension loads."""
    extensions_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(extensions_dir / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process builds; freed if it dies
        remove_stale_locks(extensions_dir)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock
