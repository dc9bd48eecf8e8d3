"""Canonical method ids: `name(key=value,...)`, the CLI argument, results key and row label.

Values are scalars: int, float, bool, None, or strings (bare when they look like identifiers or
paths, double-quoted otherwise). Parameters at their default are omitted, so `bm25()` and
`bm25(k1=1.2)` are the same method with the same id `bm25`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

Scalar = int | float | bool | str | None

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
# Bare strings may hold path and hub-id characters but nothing the grammar uses (,=()").
_BARE = re.compile(r"[A-Za-z0-9_./:@+\-]+")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)")


class MethodIdError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedId:
    name: str
    params: tuple[tuple[str, Scalar], ...]


def parse_method_id(text: str) -> ParsedId:
    """Parse `name` or `name(k=v,...)`; whitespace around tokens is ignored."""
    s = text.strip()
    m = _NAME.match(s)
    if not m:
        raise MethodIdError(f"method id {text!r}: expected a name such as bm25 or bm25(k1=0.9)")
    name, rest = m.group(0), s[m.end():].strip()
    if not rest:
        return ParsedId(name, ())
    if not (rest.startswith("(") and rest.endswith(")")):
        raise MethodIdError(f"method id {text!r}: parameters go in parentheses, e.g. {name}(k=v)")
    params: list[tuple[str, Scalar]] = []
    for part in _split_args(rest[1:-1], text):
        if "=" not in part:
            raise MethodIdError(f"method id {text!r}: parameter {part!r} needs the form key=value")
        key, raw = (x.strip() for x in part.split("=", 1))
        if not _NAME.fullmatch(key):
            raise MethodIdError(f"method id {text!r}: {key!r} is not a parameter name")
        if key in dict(params):
            raise MethodIdError(f"method id {text!r}: parameter {key!r} given twice")
        params.append((key, parse_scalar(raw, text)))
    return ParsedId(name, tuple(params))


def _split_args(body: str, text: str) -> list[str]:
    parts, cur, quoted, i = [], [], False, 0
    while i < len(body):
        c = body[i]
        if c == '"':
            quoted = not quoted
        elif c == "\\" and quoted and i + 1 < len(body):
            cur.append(c)
            i += 1
            c = body[i]
        elif c == "," and not quoted:
            parts.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if quoted:
        raise MethodIdError(f"method id {text!r}: unterminated string")
    tail = "".join(cur).strip()
    if tail or parts:
        parts.append(tail)
    if any(not p for p in parts):
        raise MethodIdError(f"method id {text!r}: empty parameter")
    return parts


def parse_scalar(raw: str, context: str = "") -> Scalar:
    """Parse one value as written in an id or a `--set key=value` override."""
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise MethodIdError(f"{context or raw!r}: bad quoted string {raw!r} ({e.msg})") from e
        if not isinstance(value, str):
            raise MethodIdError(f"{context or raw!r}: bad quoted string {raw!r}")
        try:
            value.encode("utf-8")  # a lone \ud800 escape is not text: no record or log line could hold it
        except UnicodeEncodeError as e:
            raise MethodIdError(f"{context or raw!r}: quoted string {raw!r} is not Unicode text (a lone surrogate escape)") from e
        return value
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(low):
        return float(raw)
    if _BARE.fullmatch(raw):
        return raw
    raise MethodIdError(f"{context or raw!r}: cannot read value {raw!r}; quote strings with \"...\"")


def format_scalar(value: Scalar) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest string that parses back to the same float.
        text = repr(value)
        return text if any(c in text for c in ".eni") else text + ".0"
    if _BARE.fullmatch(value) and parse_scalar(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def format_method_id(name: str, params: tuple[tuple[str, Scalar], ...]) -> str:
    if not params:
        return name
    return f"{name}(" + ",".join(f"{k}={format_scalar(v)}" for k, v in params) + ")"


def split_method_ids(arg: str) -> list[str]:
    """Split on commas outside parentheses and quotes: `bm25(k1=0.9,b=0.4),minilm` is two ids."""
    out, depth, quoted, escaped, cur = [], 0, False, False, ""
    for c in arg:
        if escaped:  # the character after a backslash inside a quoted string is literal
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif not quoted:
            depth += c == "("
            depth -= c == ")"
        if c == "," and depth == 0 and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += c
    return [x.strip() for x in [*out, cur] if x.strip()]
