"""Strict loading of plain YAML/JSON data into frozen dataclasses.

Unknown keys, missing keys and wrong types are errors that name the file and the key path,
because a typo in a suite file must never silently change what is measured.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader (data only, no tags that construct objects) that refuses duplicate keys.

    PyYAML lets the last of two equal keys win silently, so `top_k: 100` followed by `top_k: 5`
    would measure top_k=5 with nothing said.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are YAML's own override mechanism
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let PyYAML report it as it does
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first}); remove one", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); save the file as UTF-8") from e
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML ({problem})") from e


def from_data(cls: type[T], data: Any, file: str, path: str = "") -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {path or 'top level'}: expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{file}: unknown key {_join(path, str(unknown[0]))!r} (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{file}: missing key {_join(path, name)!r}")
            continue
        kwargs[name] = _convert(hints[name], data[name], file, _join(path, name))
    return cls(**kwargs)


def _convert(typ: Any, value: Any, file: str, path: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if typ is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for opt in args:
            try:
                return _convert(opt, value, file, path)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{file}: {path}: expected {_name(typ)}, got {_kind(value)} {value!r}")
    if typ is type(None):
        if value is None:
            return None
        raise ConfigError(f"{file}: {path}: expected null, got {_kind(value)}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{file}: {path}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {path}: expected a list, got {_kind(value)}")
        return tuple(_convert(args[0], v, file, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {path}: expected a mapping, got {_kind(value)}")
        return {
            _convert(args[0], k, file, path): _convert(args[1], v, file, _join(path, str(k))) for k, v in value.items()
        }
    if dataclasses.is_dataclass(typ):
        return from_data(typ, value, file, path)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # YAML's .nan / .inf: no setting or declared figure is that
            raise ConfigError(f"{file}: {path}: {value!r} is not a finite number")
        return float(value)
    if typ is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if typ in (str, bool) and type(value) is typ:
        return value
    raise ConfigError(f"{file}: {path}: expected {_name(typ)}, got {_kind(value)} {value!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def _name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")
