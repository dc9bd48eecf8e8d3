"""Per-query files: results/per-query/<suite>/<key16>-<run_id>.json, referenced with their sha256.

Written to a per-process temporary name and renamed into place, so a killed run leaves at most
a `*.<pid>.tmp` that `clean_stale_temp` removes once its writer is gone; read back bounded, inside
the results directory only, and checked against the digest in the record that references them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from .errors import ResultsError
from .safefiles import UnsafeFileError, open_regular
from .strictjson import StrictJSONError, loads_strict, one_line

log = logging.getLogger(__name__)

MAX_SIDECAR_BYTES = 64 * 1024 * 1024  # one small object per query: a few MiB for 100k queries

_TMP_WITH_PID = re.compile(r".+\.([1-9][0-9]{0,8})\.tmp")
STALE_TMP_AGE_S = 3600.0


def write_sidecar(results_dir: Path, suite_name: str, key: str, run_id: str, per_query: dict) -> dict[str, str]:
    """Per-query values in their own file, referenced (with its digest) from the record."""
    rel = Path("per-query") / suite_name / f"{key[:16]}-{run_id}.json"
    data = (json.dumps(per_query, sort_keys=True, allow_nan=False) + "\n").encode()
    path = results_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid in the name keeps two writers apart and lets clean_stale_temp tell a temp file
    # of a live writer from one a killed run left behind.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"path": rel.as_posix(), "sha256": hashlib.sha256(data).hexdigest()}


def clean_stale_temp(results_dir: Path) -> list[Path]:
    """Remove per-query/**/*.tmp files their writer left behind (it was killed mid-write).

    A `NAME.<pid>.tmp` goes when that pid no longer exists; an old-style `NAME.tmp` (no pid)
    only when older than STALE_TMP_AGE_S, since its writer cannot be asked. A reused pid only
    keeps a stale file a while longer. Symlinked directories are not followed."""
    removed: list[Path] = []
    root = Path(results_dir) / "per-query"
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".tmp") and _is_stale(path):
                try:
                    path.unlink()
                except FileNotFoundError:  # another run cleaned it first
                    continue
                removed.append(path)
    if removed:
        log.info("removed %d stale temporary per-query file(s) under %s", len(removed), root)
    return removed


def _is_stale(path: Path) -> bool:
    m = _TMP_WITH_PID.fullmatch(path.name)
    if m:
        return not _pid_alive(int(m.group(1)))
    try:
        return time.time() - path.lstat().st_mtime > STALE_TMP_AGE_S
    except FileNotFoundError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's live process; an absurd pid is kept too
        return True
    return True


class SidecarError(ResultsError):
    """A per-query file that is refused; `reason` is the message without the record's FILE:LINE."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(one_line(f"{where}: {reason}" if where else reason))
        self.reason = reason


def sidecar_path(results_dir: Path, rel: str, where: str = "") -> Path:
    """The sidecar a record references, refused when it leaves results_dir or is a symlink.

    `where` ("FILE:LINE" of the record) prefixes the error. The path may not exist."""
    root = Path(results_dir).resolve()
    path = Path(results_dir) / rel
    if Path(rel).is_absolute() or not (root / rel).parent.resolve().is_relative_to(root):  # resolve() follows links in any component
        raise SidecarError(where, f"per-query path {rel!r} leaves the results directory")
    if path.is_symlink():  # wherever it points: open_regular would refuse it anyway, this says why
        raise SidecarError(where, f"per-query file {rel} is a symbolic link; refused")
    if not path.resolve().is_relative_to(root):  # e.g. "per-query/.." as the file name
        raise SidecarError(where, f"per-query path {rel!r} leaves the results directory")
    return path


def read_sidecar_bytes(path: Path, rel: str, where: str = "") -> bytes:
    """A sidecar's bytes: a regular file of at most MAX_SIDECAR_BYTES, read without following a link."""
    try:
        with open_regular(path) as f:
            data = f.read(MAX_SIDECAR_BYTES + 1)
    except UnsafeFileError as e:
        raise SidecarError(where, f"per-query file {rel} {e.reason}") from e
    except OSError as e:
        raise SidecarError(where, f"per-query file {rel} cannot be read ({e.strerror})") from e
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(where, f"per-query file {rel} is larger than the {MAX_SIDECAR_BYTES} bytes allowed")
    return data


def parse_sidecar(data: bytes, rel: str, where: str = "") -> Any:
    try:
        return loads_strict(data)
    except StrictJSONError as e:
        raise SidecarError(where, f"per-query file {rel}: {e}") from e


def read_sidecar(results_dir: Path, ref: dict[str, str], where: str = "") -> dict[str, dict[str, float]]:
    """The per-query values a record references; raises ResultsError (prefixed with `where`,
    the record's FILE:LINE, or else the sidecar's path) when the file is refused or tampered with."""
    path = sidecar_path(results_dir, ref["path"], where)
    where = where or str(path)
    data = read_sidecar_bytes(path, ref["path"], where)
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise SidecarError(where, "per-query file does not match the digest in its record")
    return parse_sidecar(data, ref["path"], where)
