"""User-facing errors: each message names the problem and what to do about it."""

from __future__ import annotations

import os
from typing import Iterator

_TRUE_VALUES = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    """SPARSEBENCH_OFFLINE or HF_HUB_OFFLINE set to a true value: never try the network."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE_VALUES for name in ("SPARSEBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes/contexts, each once: library errors wrap the network error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class BenchError(Exception):
    """An error the CLI reports as one line (no traceback) and exits non-zero."""


class ConfigError(BenchError):
    """A suite file, profile file or --set override is malformed."""


class DatasetError(BenchError):
    """A dataset id is unknown, cannot be loaded offline, or fails its declared checks."""


class ResultsError(BenchError):
    """A results file is corrupt; it is reported, never rewritten."""


class ProfileError(BenchError):
    """The machine does not match the declared hardware profile."""
