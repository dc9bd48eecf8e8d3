"""Latency statistics that refuse to report a tail the samples cannot support."""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

# A quantile q is reported only with at least TAIL_SAMPLES observations beyond it, i.e.
# n >= TAIL_SAMPLES / (1 - q): about 65 samples for p90, 130 for p95, 650 for p99.
TAIL_SAMPLES = 6.5


def min_samples(q: float) -> int:
    return math.ceil(TAIL_SAMPLES / (1.0 - q) - 1e-9)


def quantile_ms(samples_ns: Sequence[int], q: float) -> float | None:
    """The q-quantile in milliseconds, or None when there are too few samples for it."""
    if len(samples_ns) < min_samples(q):
        return None
    return float(np.quantile(np.asarray(samples_ns, dtype=np.float64), q)) / 1e6


def time_each(fn: Callable[[int], object], n: int) -> list[int]:
    """perf_counter_ns around each call fn(i); returns the durations in ns."""
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append(time.perf_counter_ns() - t0)
    return out
