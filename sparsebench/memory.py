"""The memory a method itself uses: the worker's peak resident set above a baseline.

The process's lifetime peak (`ru_maxrss`) also holds the interpreter, the data and whatever the
data loader imported, so it told more about the loader than about the method. Linux lets a
process reset its peak counter (writing 5 to /proc/self/clear_refs resets VmHWM to the current
RSS), so the task resets it once the data is loaded, takes the RSS there as the baseline, and
charges the method the peak above it. Where the reset is not available the process peak is
used instead and the record says so.
"""

from __future__ import annotations

import gc
import resource
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 2**20


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def process_peak_mib() -> float:
    """Peak RSS of this process over its whole life (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class Baseline:
    rss_kib: int | None  # None: the peak counter could not be reset here
    reason: str = ""


def start() -> Baseline:
    """Collect garbage, reset the peak counter and return the RSS the method starts from."""
    gc.collect()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError as e:
        return Baseline(None, f"cannot reset the peak counter ({e.strerror or e}); process peak used")
    rss = _status_kib("VmRSS")
    return Baseline(rss) if rss is not None else Baseline(None, "no VmRSS in /proc/self/status; process peak used")


def method_peak_mib(base: Baseline) -> tuple[float, str]:
    """(peak RSS since `start` above its baseline, in MiB; a note when that could not be measured)."""
    peak = _status_kib("VmHWM")
    if base.rss_kib is None or peak is None:
        return process_peak_mib(), base.reason or "no VmHWM in /proc/self/status; process peak used"
    return max(0, peak - base.rss_kib) / 1024, ""
