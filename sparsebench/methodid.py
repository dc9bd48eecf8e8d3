"""Canonical method ids: the CLI argument, results key and row label.

Grammar (whitespace around tokens is ignored):

    id    := name | name "(" [arg ("," arg)*] ")"
    arg   := id | key "=" value         methods first, by position; then scalars by key
    value := scalar | id

A method can take other methods as arguments (`rrf(bm25,minilm)`,
`interp(bm25,minilm(max_length=128),alpha=0.3)`). Scalars are int, float, bool, None, or
strings (bare when they look like identifiers or paths, double-quoted otherwise). Parameters at
their default are omitted and method arguments come first, in field order, so every method has
one id: `bm25()` and `bm25(k1=1.2)` are both `bm25`.
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
    """One parsed id: `args` are the positional (method) arguments, `params` the key=value ones.

    A value is a scalar or, where a method was written with parentheses, a nested ParsedId;
    a bare name such as `bm25` stays a string until the registry knows whether its slot takes
    a method or a scalar.
    """

    name: str
    params: tuple[tuple[str, "Value"], ...] = ()
    args: tuple["Value", ...] = ()

    def __str__(self) -> str:
        return format_method_id(self.name, tuple((k, _fmt_value(v)) for k, v in self.params),
                                tuple(_fmt_value(v) for v in self.args), preformatted=True)


Value = Scalar | ParsedId


def _fmt_value(v: Value) -> str:
    return str(v) if isinstance(v, ParsedId) else format_scalar(v)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, what: str) -> MethodIdError:
        return MethodIdError(f"method id {self.text!r}: {what}")

    def ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.ws()
        return self.text[self.i] if self.i < len(self.text) else ""

    def parse_id(self) -> ParsedId:
        self.ws()
        m = _NAME.match(self.text, self.i)
        if not m:
            got = self.text[self.i:self.i + 20]
            raise self.fail(f"expected a name such as bm25 or bm25(k1=0.9)" + (f", got {got!r}" if got else ""))
        name = m.group(0)
        self.i = m.end()
        if self.peek() != "(":
            return ParsedId(name)
        open_at = self.i
        self.i += 1
        params: list[tuple[str, Value]] = []
        args: list[Value] = []
        if self.peek() == ")":
            self.i += 1
            return ParsedId(name)
        while True:
            key, value = self.parse_arg(name)
            if key is None:
                if params:
                    raise self.fail(f"argument {_fmt_value(value)!r} of {name} comes after a key=value one; "
                                    "method arguments go first")
                args.append(value)
            else:
                if key in dict(params):
                    raise self.fail(f"parameter {key!r} of {name} given twice")
                params.append((key, value))
            c = self.peek()
            if c == ",":
                self.i += 1
                continue
            if c == ")":
                self.i += 1
                return ParsedId(name, tuple(params), tuple(args))
            if not c:
                raise self.fail(f"unbalanced parentheses: the '(' of {name} at character {open_at + 1} is never closed")
            raise self.fail(f"unexpected {self.text[self.i:self.i + 20]!r} in the arguments of {name}; "
                            "separate arguments with commas and quote strings with \"...\"")

    def parse_arg(self, owner: str) -> tuple[str | None, Value]:
        self.ws()
        m = _NAME.match(self.text, self.i)
        if m:
            j = m.end()
            while j < len(self.text) and self.text[j].isspace():
                j += 1
            if j < len(self.text) and self.text[j] == "=":
                self.i = j + 1
                return m.group(0), self.parse_value(owner, m.group(0))
        return None, self.parse_value(owner, None)

    def parse_value(self, owner: str, key: str | None) -> Value:
        c = self.peek()
        where = f"{owner}.{key}" if key else f"an argument of {owner}"
        if c in (",", ")", ""):
            raise self.fail(f"empty parameter ({where} has no value)" if key else f"empty parameter in {owner}(...)")
        if c == '"':
            return self.parse_quoted()
        m = _NAME.match(self.text, self.i)
        if m:
            j = m.end()
            while j < len(self.text) and self.text[j].isspace():
                j += 1
            if j < len(self.text) and self.text[j] == "(":
                return self.parse_id()
        start = self.i
        while self.i < len(self.text) and self.text[self.i] not in ",()\"":
            self.i += 1
        raw = self.text[start:self.i].strip()
        if self.i < len(self.text) and self.text[self.i] in "(\"":
            raise self.fail(f"cannot read {where} from {self.text[start:self.i + 1]!r}; quote strings with \"...\"")
        return parse_scalar(raw, self.text)

    def parse_quoted(self) -> str:
        start = self.i
        self.i += 1
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == "\\":
                self.i += 2
                continue
            self.i += 1
            if c == '"':
                value = parse_scalar(self.text[start:self.i], self.text)
                assert isinstance(value, str)
                return value
        raise self.fail("unterminated string")


def parse_method_id(text: str) -> ParsedId:
    """Parse one id, nested ids included; anything after its closing parenthesis is an error."""
    p = _Parser(text)
    node = p.parse_id()
    rest = p.text[p.i:].strip()
    if rest:
        if rest.startswith(")"):
            raise p.fail(f"unbalanced parentheses: {rest[:20]!r} closes nothing")
        if node.params or node.args or "(" in p.text[:p.i]:
            raise p.fail(f"unexpected {rest[:20]!r} after {str(node)!r}: one id ends at its closing parenthesis")
        raise p.fail(f"unexpected {rest[:20]!r} after {node.name}; parameters go in parentheses, e.g. {node.name}(k=v)")
    return node


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


def format_method_id(name: str, params: tuple[tuple[str, Scalar], ...], args: tuple[str, ...] = (),
                     preformatted: bool = False) -> str:
    """`name(arg,...,key=value,...)`; `args` are already-formatted method ids."""
    parts = [*args, *(f"{k}={v if preformatted else format_scalar(v)}" for k, v in params)]
    return f"{name}(" + ",".join(parts) + ")" if parts else name


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
