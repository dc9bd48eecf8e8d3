"""Other sparsebench runs measuring on this machine at the same time.

Concurrent runs share cores, caches and memory bandwidth: under 4-way concurrency BM25's p50
doubled while every record still looked ordinary. So each measuring run holds an exclusive
flock on a file of its own in one machine-wide directory for as long as its method is measured,
and samples, while it waits for its worker, how many other such files are locked. The record
carries the count (`contention`), `bench validate` warns about it and the report marks it.

flock, not pid files: the kernel drops the lock when its holder dies, however it dies, so a
killed run never looks like it is still measuring (its file is removed by the next sampler).
The sampler lives in the runner process, which only waits, so nothing extra runs in the
process being timed.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

DIR_ENV = "SPARSEBENCH_MEASURING_DIR"
SAMPLE_INTERVAL_S = 0.25


def measuring_dir() -> Path:
    """Machine-wide by default (the temp dir is shared by every user and checkout)."""
    return Path(os.environ.get(DIR_ENV) or Path(tempfile.gettempdir()) / "sparsebench-measuring")


@dataclass
class Contention:
    detected: bool
    max_other_runs: int
    samples: int

    def as_record(self) -> dict[str, Any]:
        return {"detected": self.detected, "max_other_runs": self.max_other_runs, "samples": self.samples}


class MeasuringClaim:
    """`with MeasuringClaim() as claim: ... claim.sample() ...`; `claim.result()` afterwards.

    If the directory cannot be used (read-only temp, another user's directory without the
    sticky mode) the claim is inert and says so: `samples` stays 0, meaning "not checked".
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or measuring_dir()
        self._fd: int | None = None
        self._name = ""
        self._max = 0
        self._samples = 0

    def __enter__(self) -> MeasuringClaim:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                os.chmod(self.directory, 0o1777)  # any user's runs can register (sticky: only owners delete)
            except PermissionError:
                pass  # created by another user, who set the mode
            # Lock under a temporary name, then rename: a sampler never sees an unlocked live file.
            tmp = self.directory / f".{os.getpid()}-{uuid.uuid4().hex[:8]}.new"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._name = tmp.name[1:-4] + ".lock"
            os.replace(tmp, self.directory / self._name)
            self._fd = fd
        except OSError as e:
            log.warning("cannot register in %s (%s): concurrent runs on this machine will not be detected", self.directory, e)
        self.sample()
        return self

    def sample(self) -> int:
        """Count other measuring runs now; the maximum over all samples is what the record keeps."""
        if self._fd is None:
            return 0
        others = 0
        try:
            names = [p for p in os.listdir(self.directory) if p.endswith(".lock") and p != self._name]
        except OSError:
            return 0
        for name in names:
            path = self.directory / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # removed meanwhile: its run finished
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    others += 1  # held: that run is measuring
                continue
            else:
                _unlink_quietly(path)  # nobody holds it: a killed run's leftover
            finally:
                os.close(fd)
        self._samples += 1
        self._max = max(self._max, others)
        return others

    def result(self) -> Contention:
        return Contention(detected=self._max > 0, max_other_runs=self._max, samples=self._samples)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.sample()
        if self._fd is not None:
            _unlink_quietly(self.directory / self._name)
            os.close(self._fd)
            self._fd = None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
