"""Result records: one JSON object per line in results/<suite>.jsonl, appended, never rewritten.

Appends hold an exclusive flock and go out as a single write() of one whole line, so two runs
writing at once interleave whole records and a killed run leaves every earlier line intact.
Readers are strict: a corrupt line is an error naming the file and line, never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ResultsError

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "timeout")
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "key": str,
    "run_id": str,
    "suite": str,
    "task": str,
    "method": str,
    "method_name": str,
    "family": str,
    "params": dict,
    "dataset": dict,
    "settings": dict,
    "metrics": dict,
    "main_metric": str,
    "costs": dict,
    "profile": dict,
    "provenance": dict,
    "started_at": str,
    "finished_at": str,
    "status": str,
}


def validate(rec: Any) -> list[str]:
    """Problems with one record's shape; empty when it is well-formed."""
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    problems = []
    for key, typ in REQUIRED.items():
        if key not in rec:
            problems.append(f"missing {key!r}")
        elif not isinstance(rec[key], typ) or isinstance(rec[key], bool) and typ is int:
            problems.append(f"{key!r} should be {getattr(typ, '__name__', typ)}")
    if problems:
        return problems
    if rec["schema"] > SCHEMA_VERSION:
        return [f"schema {rec['schema']} is newer than this sparsebench understands ({SCHEMA_VERSION}); upgrade sparsebench"]
    if rec["status"] not in STATUSES:
        problems.append(f"status {rec['status']!r} is not one of {', '.join(STATUSES)}")
    if rec["status"] == "ok":
        for section in ("metrics", "costs"):
            for name, q in rec[section].items():
                if not isinstance(q, dict) or "value" not in q or "unit" not in q or "n" not in q:
                    problems.append(f"{section}.{name} needs value, unit and n")
        if rec["main_metric"] not in rec["metrics"]:
            problems.append(f"main_metric {rec['main_metric']!r} has no value")
    elif not rec.get("error"):
        problems.append(f"status {rec['status']!r} without an error message")
    for key in ("id", "fingerprint"):
        if key not in rec["profile"]:
            problems.append(f"profile.{key} missing")
    return problems


def upconvert(rec: dict) -> dict:
    """Bring an older schema up to SCHEMA_VERSION in memory (files are never rewritten)."""
    return rec  # schema 1 is the first; converters for later versions go here, oldest first


def read(path: Path) -> list[dict]:
    """Every record in a results file; raises ResultsError at the first malformed line."""
    if not path.exists():
        return []
    out = []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        last = data.count(b"\n") + 1
        raise ResultsError(
            f"{path}:{last}: last line is incomplete (an interrupted write?); "
            "move it out of the file by hand after checking it; sparsebench never rewrites results"
        )
    for n, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ResultsError(f"{path}:{n}: corrupt record, invalid JSON ({e.msg} at column {e.colno}); fix or remove the line, sparsebench never rewrites results") from e
        problems = validate(rec)
        if problems:
            raise ResultsError(f"{path}:{n}: malformed record ({'; '.join(problems)})")
        out.append(upconvert(rec))
    return out


def append(path: Path, rec: dict) -> None:
    problems = validate(rec)
    if problems:
        raise ValueError(f"refusing to write a malformed record: {'; '.join(problems)}")
    line = (json.dumps(rec, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    raise ResultsError(f"{path}: last line is incomplete; not appending after it (fix the file by hand)")
        written = os.write(fd, line)
        if written != len(line):
            raise ResultsError(f"{path}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_sidecar(results_dir: Path, suite_name: str, key: str, run_id: str, per_query: dict) -> dict[str, str]:
    """Per-query values in their own file, referenced (with its digest) from the record."""
    rel = Path("per-query") / suite_name / f"{key[:16]}-{run_id}.json"
    data = (json.dumps(per_query, sort_keys=True, allow_nan=False) + "\n").encode()
    path = results_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return {"path": rel.as_posix(), "sha256": hashlib.sha256(data).hexdigest()}


def read_sidecar(results_dir: Path, ref: dict[str, str]) -> dict[str, dict[str, float]]:
    path = results_dir / ref["path"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise ResultsError(f"{path}: per-query file does not match the digest in its record")
    return json.loads(data)


@dataclass
class ResultStore:
    root: Path

    def file_for(self, suite_name: str) -> Path:
        return self.root / f"{suite_name}.jsonl"

    def done_keys(self, suite_name: str) -> set[str]:
        return {r["key"] for r in read(self.file_for(suite_name)) if r["status"] == "ok"}

    @contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """A per-key lock so two concurrent runs don't measure the same spec; the OS drops it
        when the holder dies, so a killed run leaves no stale claim."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{key[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
