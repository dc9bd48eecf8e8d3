"""Opening files that may come from a pull request without following them anywhere.

A results file that is a symlink to /dev/zero exhausted memory; one that points out of
results/ would be read or appended to. Files are opened with O_NOFOLLOW and checked to be
regular files on the open descriptor (so a swap after the check changes nothing), and lines
are read with a bound, never the whole file at once.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import ResultsError
from .strictjson import one_line

_SKIP_CHUNK = 1024 * 1024


class UnsafeFileError(ResultsError):
    """A results or per-query file that is not read: a symlink, not a regular file, too big, unreadable."""

    def __init__(self, path: Path, reason: str, line: int = 0) -> None:
        super().__init__(one_line(f"{path}:{line}: {reason}"))  # line 0: the file as a whole
        self.path = path
        self.reason = reason
        self.line = line


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


def bounded_lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes | None, bool]]:
    """(line without its newline, or None when longer than max_bytes; newline-terminated)."""
    while True:
        raw = f.readline(max_bytes + 1)
        if not raw:
            return
        if raw.endswith(b"\n"):
            yield raw[:-1], True
        elif len(raw) <= max_bytes:
            yield raw, False  # end of file without a newline
        else:
            yield None, _skip_line(f)


def _skip_line(f: BinaryIO) -> bool:
    """Read past the rest of an over-long line in bounded chunks; whether it had a newline."""
    while chunk := f.readline(_SKIP_CHUNK):
        if chunk.endswith(b"\n"):
            return True
    return False


def open_append_nofollow(path: Path) -> int:
    """O_NOFOLLOW: records are never written through a symlink (it could point out of results/)."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        if os.path.islink(path):
            raise UnsafeFileError(path, "is a symbolic link; not appending through it") from e
        raise ResultsError(f"{path}: cannot open for appending ({e.strerror})") from e
