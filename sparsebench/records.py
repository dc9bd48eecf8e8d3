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
import hashlib
import json
import logging
import math
import os
import re
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from .errors import ResultsError

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

# Bounds for untrusted files. A real record is a few KiB and a few levels deep, a sidecar a few
# MiB at most (one small object per query); these leave a wide margin and stop a hostile file
# from exhausting memory or the interpreter's recursion limit.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_SIDECAR_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 64  # beyond any count or byte size; far below int()'s 4300-digit limit
_SKIP_CHUNK = 1024 * 1024
_SUITE_VERSION = re.compile(r"[0-9]{1,9}")


# Record text ends up in messages; escaped, a newline in it cannot start a forged "FILE:LINE:" line.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """Text with control characters and line separators escaped: safe as one line of output."""
    return text.translate(_CONTROL)


class RecordError(ValueError):
    """What is wrong with one line; `corrupt` when it is not even a JSON record (vs. malformed)."""

    def __init__(self, problems: list[str], corrupt: bool = True) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.corrupt = corrupt


class UnsafeFileError(ResultsError):
    """A results or per-query file that is not read: a symlink, not a regular file, too big, unreadable."""

    def __init__(self, path: Path, reason: str, line: int = 0) -> None:
        super().__init__(one_line(f"{path}:{line}: {reason}"))  # line 0: the file as a whole
        self.path = path
        self.reason = reason
        self.line = line


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
        problems.append(f"suite {_clip(rec['suite'])!r} is not NAME@VERSION (VERSION: 1 to 9 digits)")
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
    return problems


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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


# --- the one strict parser ----------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} digits, more than the {MAX_NUMBER_CHARS} allowed")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is valid JSON but reads as infinity
        raise ValueError(f"number {_clip(text, 20)} is too large to be finite")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; a record must not say two things at once.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {_clip(key)!r} appears twice in one object")
            seen.add(key)
    return out


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float, object_pairs_hook=_no_duplicate_keys
)


# A \ud800-\udfff escape decodes to a lone surrogate unless it is half of a pair; such a str
# cannot be encoded as UTF-8, so the report or the CSV would crash writing it out.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _depth(value: Any) -> int:
    """Nesting depth of a decoded value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:  # deeper nodes already decide the answer
                stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads_strict(data: bytes) -> Any:
    """JSON from untrusted bytes: strict UTF-8, no NaN/Infinity, bounded numbers and nesting.

    Raises RecordError with one problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError([f"invalid JSON (not UTF-8: byte 0x{data[e.start]:02x} at column {e.start + 1})"]) from e
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise RecordError([f"invalid JSON ({e.msg} at column {e.colno})"]) from e
    except RecursionError as e:  # the C decoder stops at the interpreter's recursion limit
        raise RecordError([f"nested deeper than {MAX_DEPTH} levels"]) from e
    except ValueError as e:  # from the parse_* hooks above
        raise RecordError([f"invalid JSON ({e})"]) from e
    if _depth(value) > MAX_DEPTH:
        raise RecordError([f"nested deeper than {MAX_DEPTH} levels"])
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):  # the scan runs only when an escape is there
        raise RecordError(["invalid JSON (a \\ud800-\\udfff escape that is not half of a surrogate pair: not Unicode text)"])
    return value


def parse_record(raw: bytes) -> dict:
    """One line of a results file (without its newline) as a well-formed record.

    Raises RecordError with every shape problem (corrupt=False) or the one parse problem."""
    if len(raw) > MAX_LINE_BYTES:
        raise RecordError([f"corrupt record, line of {len(raw)} bytes is longer than the {MAX_LINE_BYTES} allowed"])
    try:
        rec = loads_strict(raw)
    except RecordError as e:
        raise RecordError([f"corrupt record, {p}" for p in e.problems]) from e
    problems = validate(rec)
    if problems:
        raise RecordError([f"malformed record: {p}" for p in problems], corrupt=False)
    return upconvert(rec)


# --- bounded, symlink-refusing file access ------------------------------------------------

@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """A results or per-query file opened for reading, if it is a regular file and not a symlink.

    O_NOFOLLOW refuses a symlink even if one replaces the file after a check; O_NONBLOCK keeps
    a FIFO from blocking the open, and the fstat then refuses it (and devices such as /dev/zero)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        if os.path.islink(path):
            raise UnsafeFileError(path, "is a symbolic link; refused (results files are read only as regular files inside results/)") from e
        raise UnsafeFileError(path, f"cannot read ({e.strerror})") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFileError(path, "is not a regular file; refused")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def _lines(f: BinaryIO) -> Iterator[tuple[bytes | None, bool]]:
    """(line without its newline, or None when longer than MAX_LINE_BYTES; newline-terminated)."""
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if raw.endswith(b"\n"):
            yield raw[:-1], True
        elif len(raw) <= MAX_LINE_BYTES:
            yield raw, False  # end of file without a newline
        else:
            yield None, _skip_line(f)


def _skip_line(f: BinaryIO) -> bool:
    """Read past the rest of an over-long line in bounded chunks; whether it had a newline."""
    while chunk := f.readline(_SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            return True
    return False


def scan(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    """(line number, record or what is wrong with it) for every non-blank line of a results file.

    Raises UnsafeFileError (line 0) for a file that is not read at all. The caller decides
    whether a bad line stops it (records.read) or is collected (bench validate)."""
    with open_regular(path) as f:
        n = 0
        try:
            for n, (raw, terminated) in enumerate(_lines(f), 1):
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
    fd = _open_for_append(path)
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


def _open_for_append(path: Path) -> int:
    """O_NOFOLLOW: records are never written through a symlink (it could point out of results/)."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise UnsafeFileError(path, "is a symbolic link; not appending through it") from e
        raise ResultsError(f"{path}: cannot open for appending ({e.strerror})") from e


# --- per-query sidecars -------------------------------------------------------------------

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
    except RecordError as e:
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
