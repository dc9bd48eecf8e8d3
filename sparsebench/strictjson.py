"""JSON from untrusted bytes: strict UTF-8, no NaN/Infinity, bounded numbers and nesting.

Results files and per-query files come from pull requests. Python's json accepts NaN and
Infinity, keeps the last of two equal keys, recurses until RecursionError, and hands a
5000-digit number to int(), which raises; each of those crashed or fooled a reader. Every
reader of records goes through `loads_strict`, so they all accept exactly the same things.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 64  # beyond any count or byte size; far below int()'s 4300-digit limit


class StrictJSONError(ValueError):
    """What makes the bytes unacceptable, as one phrase ("invalid JSON (...)")."""


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# Record text ends up in messages; escaped, a newline in it cannot start a forged "FILE:LINE:" line.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """Text with control characters and line separators escaped: safe as one line of output."""
    return text.translate(_CONTROL)

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} digits, more than the {MAX_NUMBER_CHARS} allowed")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is valid JSON but reads as infinity
        raise ValueError(f"number {clip(text, 20)} is too large to be finite")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently; a record must not say two things at once.
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {clip(key)!r} appears twice in one object")
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

    Raises StrictJSONError naming the one problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StrictJSONError(f"invalid JSON (not UTF-8: byte 0x{data[e.start]:02x} at column {e.start + 1})") from e
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise StrictJSONError(f"invalid JSON ({e.msg} at column {e.colno})") from e
    except RecursionError as e:  # the C decoder stops at the interpreter's recursion limit
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels") from e
    except ValueError as e:  # from the parse_* hooks above
        raise StrictJSONError(f"invalid JSON ({e})") from e
    if _depth(value) > MAX_DEPTH:
        raise StrictJSONError(f"nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):  # the scan runs only when an escape is there
        raise StrictJSONError("invalid JSON (a \\ud800-\\udfff escape that is not half of a surrogate pair: not Unicode text)")
    return value
