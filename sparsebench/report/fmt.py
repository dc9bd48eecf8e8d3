"""Number formatting for the page: short, deterministic, never locale-dependent."""

from __future__ import annotations

import math
import re

DASH = "\u2014"


def number(value: float | None) -> str:
    """A cost or other quantity: about three significant digits, thousands separated."""
    if value is None:
        return DASH
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 10:
        return f"{value:.2f}"
    if a >= 1e-3:
        return f"{value:.3g}"
    return f"{value:.2e}"


def tick(value: float) -> str:
    """An axis tick: round numbers stay round (20, 1,000, 0.5)."""
    if value == int(value) and abs(value) < 1e15:
        return f"{value:,.0f}"
    return f"{value:g}"


def metric(value: float | None) -> str:
    return DASH if value is None else f"{value:.4f}"


def delta(value: float | None) -> str:
    return DASH if value is None else f"{value:+.4f}"


def ratio(value: float | None) -> str:
    if value is None:
        return DASH
    if 0.01 <= abs(value) < 100:
        return f"{value:.2f}\u00d7"
    return f"{value:.3g}\u00d7"


def exact(value: float | None) -> str:
    """Full precision for data attributes (sorting, tests): repr round-trips a float."""
    return "" if value is None else repr(float(value))


def as_float(value: object) -> float | None:
    """A finite number from untrusted record data, or None (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


_HEX = re.compile(r"[0-9a-f]+")


def anchor_part(key: object) -> str:
    """The hex part of an anchor id: the record key itself when it is a hex digest (as the
    runner writes it), otherwise a digest of it, so an anchor never carries record text."""
    import hashlib

    text = str(key).lower()
    if _HEX.fullmatch(text) and len(text) <= 128:
        return text
    return hashlib.sha256(str(key).encode("utf-8", "replace")).hexdigest()
