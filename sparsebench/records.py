"""Result records: one JSON object per line in results/<suite>.jsonl, appended, never rewritten.

Appends hold an exclusive flock and go out as a single write() of one whole line, so two runs
writing at once interleave whole records and a killed run leaves every earlier line intact.
Readers are strict: a corrupt line is an error naming the file and line, never skipped.

Every reader (run, report, export, compare and `bench validate`) parses a line with the same
function, `parse_record`, so what validate accepts is exactly what the others read. Results
files can come from a pull request, so reading is bounded: files are read line by line (at
most MAX_LINE_BYTES a line), nesting and number sizes are limited, and a symlink, FIFO or
device under results/ is refused rather than followed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ResultsError
from .safefiles import UnsafeFileError, bounded_lines, open_append_nofollow, open_regular
from .strictjson import StrictJSONError, clip, loads_strict, one_line

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
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
# Fields a schema version added, with their type: older records lack them legitimately.
REQUIRED_SINCE: dict[int, dict[str, type]] = {2: {"suite_digest": str}}
CONTENTION_FIELDS: dict[str, type] = {"detected": bool, "max_other_runs": int, "samples": int}

# A real record is a few KiB; the bound leaves a wide margin and stops a hostile file from
# exhausting memory (nesting and number sizes are bounded in strictjson).
MAX_LINE_BYTES = 4 * 1024 * 1024
_SUITE_VERSION = re.compile(r"[0-9]{1,9}")


class RecordError(ValueError):
    """What is wrong with one line; `corrupt` when it is not even a JSON record (vs. malformed)."""

    def __init__(self, problems: list[str], corrupt: bool = True) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.corrupt = corrupt


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
    if rec["schema"] < 1:
        return [f"schema {rec['schema']} is not a schema version (1 to {SCHEMA_VERSION})"]
    problems += _since_problems(rec)
    if suite_version(rec["suite"]) is None:  # every reader splits it; the name itself is the suite file's business
        problems.append(f"suite {clip(rec['suite'])!r} is not NAME@VERSION (VERSION: 1 to 9 digits)")
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
    if "contention" in rec:
        problems += contention_problems(rec["contention"])
    if "model" in rec and not (isinstance(rec["model"], dict) and isinstance(rec["model"].get("id"), str)):
        problems.append("model should be an object with a string id (the model a language-model task measured)")
    return problems



def _since_problems(rec: dict) -> list[str]:
    problems = []
    for since, fields in REQUIRED_SINCE.items():
        if rec["schema"] < since:
            continue
        for key, typ in fields.items():
            if not isinstance(rec.get(key), typ):
                problems.append(f"schema {rec['schema']} record needs {key!r} ({typ.__name__})")
    return problems


def contention_problems(value: Any) -> list[str]:
    """The optional `contention` field: {detected: bool, max_other_runs: int >= 0, samples: int >= 0}."""
    if not isinstance(value, dict):
        return ["contention should be an object {detected, max_other_runs, samples}"]
    problems = []
    for key, typ in CONTENTION_FIELDS.items():
        v = value.get(key)
        if not isinstance(v, typ) or typ is int and (isinstance(v, bool) or v < 0):
            problems.append(f"contention.{key} should be {'a non-negative int' if typ is int else typ.__name__}")
    return problems


def upconvert(rec: dict) -> dict:
    """Bring an older schema up to SCHEMA_VERSION in memory (files are never rewritten).

    `schema` keeps the version the line was written with, so a reader can still tell an
    unverifiable record from a verified one; fields added since are present, as None.
    """
    if rec["schema"] < 2:
        rec = {**rec, "suite_digest": rec.get("suite_digest")}  # schema 1 predates suite digests
    return rec


def suite_version(ref: str) -> int | None:
    """The version of a `name@version` suite reference, or None when it has no sane one.

    Bounded to nine ASCII digits: a record may carry any text, and int() of thousands of
    digits (or of non-ASCII digits, which str.isdigit accepts) raises."""
    name, sep, version = ref.rpartition("@")
    return int(version) if sep and name and _SUITE_VERSION.fullmatch(version) else None


def parse_record(raw: bytes) -> dict:
    """One line of a results file (without its newline) as a well-formed record.

    Raises RecordError with every shape problem (corrupt=False) or the one parse problem."""
    if len(raw) > MAX_LINE_BYTES:
        raise RecordError([f"corrupt record, line of {len(raw)} bytes is longer than the {MAX_LINE_BYTES} allowed"])
    try:
        rec = loads_strict(raw)
    except StrictJSONError as e:
        raise RecordError([f"corrupt record, {e}"]) from e
    problems = validate(rec)
    if problems:
        raise RecordError([f"malformed record: {p}" for p in problems], corrupt=False)
    return upconvert(rec)


def scan(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    """(line number, record or what is wrong with it) for every non-blank line of a results file.

    Raises UnsafeFileError (line 0) for a file that is not read at all. The caller decides
    whether a bad line stops it (records.read) or is collected (bench validate)."""
    with open_regular(path) as f:
        n = 0
        try:
            for n, (raw, terminated) in enumerate(bounded_lines(f, MAX_LINE_BYTES), 1):
                if raw is None:
                    yield n, RecordError([f"corrupt record, line is longer than the {MAX_LINE_BYTES} bytes allowed"])
                elif not terminated:
                    yield n, RecordError(["last line is incomplete (no trailing newline: an interrupted write?)"])
                elif raw.strip():
                    try:
                        yield n, parse_record(raw)
                    except RecordError as e:
                        yield n, e
        except OSError as e:
            raise UnsafeFileError(path, f"cannot read ({e.strerror})", n + 1) from e


def read(path: Path) -> list[dict]:
    """Every record in a results file; raises ResultsError at the first malformed line."""
    return [rec for _, rec in read_numbered(path)]


def read_numbered(path: Path) -> list[tuple[int, dict]]:
    """Every record with its line number; raises ResultsError ("FILE:LINE: ...") at the first bad line."""
    if not os.path.lexists(path):
        return []
    out = []
    for n, item in scan(path):
        if isinstance(item, RecordError):
            raise ResultsError(one_line(f"{path}:{n}: {item}; {_advice(item)}"))
        out.append((n, item))
    return out


def _advice(e: RecordError) -> str:
    if e.problems[0].startswith("last line is incomplete"):
        return "move it out of the file by hand after checking it; sparsebench never rewrites results"
    if e.corrupt:
        return "fix or remove the line; sparsebench never rewrites results"
    return "`bench validate` lists every problem"


def append(path: Path, rec: dict) -> None:
    problems = validate(rec)
    if problems:
        raise ValueError(f"refusing to write a malformed record: {'; '.join(problems)}")
    line = (json.dumps(rec, ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n").encode()
    try:
        parse_record(line[:-1])  # what is written must read back: the readers' bounds apply here too
    except RecordError as e:
        raise ValueError(f"refusing to write a record sparsebench could not read back: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_append_nofollow(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(path, "is not a regular file; not appending to it")
        if st.st_size and os.pread(fd, 1, st.st_size - 1) != b"\n":
            raise ResultsError(f"{path}: last line is incomplete; not appending after it (fix the file by hand)")
        written = os.write(fd, line)
        if written != len(line):
            raise ResultsError(f"{path}: short write ({written} of {len(line)} bytes); disk full?")
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass
class ResultStore:
    root: Path

    def file_for(self, suite_name: str) -> Path:
        return self.root / f"{suite_name}.jsonl"

    def done_keys(self, suite_name: str) -> set[str]:
        return {r["key"] for r in read(self.file_for(suite_name)) if r["status"] == "ok"}

    @contextmanager
    def claim(self, key: str, wait: bool = False) -> Iterator[bool]:
        """A per-key lock so two concurrent runs don't measure the same spec; the OS drops it
        when the holder dies, so a killed run leaves no stale claim. `wait` blocks until the
        holder is done (Ctrl-C still interrupts); otherwise a held claim yields False."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{key[:32]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
