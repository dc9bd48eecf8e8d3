"""The method registry: one decorator per method class, discovered lazily.

Method modules keep heavy imports (torch, bm25s, transformers) inside their functions, so
discovering every module in `sparsebench.methods` stays fast enough for `bench list`. Third-party
packages add methods through the `sparsebench.methods` entry-point group.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import math
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

from .errors import BenchError
from .methodid import MethodIdError, Scalar, format_method_id, parse_method_id, parse_scalar

log = logging.getLogger(__name__)

FAMILIES = (
    "sparse-encoder",
    "dense-encoder",
    "multi-vector",
    "compressor",
    "pruning",
    "sparse-attention",
    "sae",
)


@dataclass(frozen=True)
class CostModel:
    """Hardware-independent proxies a method reports next to its wall-clock costs.

    `proxies` maps proxy name to unit; `notes` says how they are derived, for the method card.
    """

    proxies: tuple[tuple[str, str], ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    family: str
    version: str
    summary: str
    paper: str = ""
    licence: str = ""
    requires: tuple[str, ...] = ()
    cost_model: CostModel = field(default_factory=CostModel)
    tasks: tuple[str, ...] = ("retrieval",)


class UnknownMethodError(BenchError):
    pass


T = TypeVar("T")
_REGISTRY: dict[str, tuple[type, MethodInfo]] = {}
_discovered = False


def register(info: MethodInfo) -> Callable[[type[T]], type[T]]:
    """Class decorator: the class must be a frozen dataclass whose fields are its parameters."""
    if info.family not in FAMILIES:
        raise ValueError(f"method {info.name}: unknown family {info.family!r}; one of {FAMILIES}")

    def deco(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"method {info.name}: {cls.__name__} must be a frozen dataclass")
        if info.name in _REGISTRY and _REGISTRY[info.name][0] is not cls:
            raise ValueError(f"method name {info.name!r} registered twice")
        _REGISTRY[info.name] = (cls, info)
        cls.info = info  # type: ignore[attr-defined]
        cls.__str__ = method_id  # type: ignore[method-assign]
        return cls

    return deco


def discover() -> None:
    """Import every module under sparsebench.methods and every entry-point plugin, once."""
    global _discovered
    if _discovered:
        return
    from . import methods

    for mod in pkgutil.walk_packages(methods.__path__, methods.__name__ + "."):
        importlib.import_module(mod.name)
    for ep in entry_points(group="sparsebench.methods"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not hide the built-in methods
            log.warning("could not load method plugin %s: %s", ep.name, e)
    _discovered = True


def names() -> list[str]:
    discover()
    return sorted(_REGISTRY)


def lookup(name: str) -> tuple[type, MethodInfo]:
    discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownMethodError(f"unknown method {name!r}{hint} (bench list shows all methods)")


def param_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


def method_id(obj: Any) -> str:
    """Canonical id: registered name plus non-default parameters in field order."""
    params = []
    for f in param_fields(type(obj)):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING and value == f.default and type(value) is type(f.default):
            continue
        params.append((f.name, value))
    return format_method_id(type(obj).info.name, tuple(params))


def build(text: str, overrides: dict[str, Scalar] | None = None) -> Any:
    """Parse a method id, apply `--set name.key=value` overrides, and construct the method."""
    try:
        parsed = parse_method_id(text)
    except MethodIdError as e:
        raise BenchError(str(e)) from e
    cls, info = lookup(parsed.name)
    params = dict(parsed.params)
    params.update(overrides or {})
    fields = {f.name: f for f in param_fields(cls)}
    kwargs = {}
    for key, value in params.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(fields) or "none"
            raise BenchError(f"method {info.name} has no parameter {key!r}{hint} (parameters: {known})")
        kwargs[key] = coerce(value, _field_type(cls, key), f"{info.name}.{key}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a method's __post_init__ refusing a value out of its range
        raise BenchError(f"{format_method_id(info.name, tuple(kwargs.items()))}: {e}") from e


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def coerce(value: Scalar, typ: Any, where: str) -> Scalar:
    """Check a value against a field's annotation; ints widen to floats, nothing else converts."""
    options = typing.get_args(typ) if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union else (typ,)
    if typing.get_origin(typ) is typing.Literal:
        if value in typing.get_args(typ):
            return value
        raise BenchError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(typ)))}")
    for opt in options:
        if opt is type(None) and value is None:
            return None
        if opt is bool and isinstance(value, bool):
            return value
        if opt is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if opt is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                # NaN would also break the records (strict JSON) after minutes of measuring.
                raise BenchError(f"{where}: {value!r} is not a finite number")
            return float(value)
        if opt is str and isinstance(value, str):
            return value
    names_ = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise BenchError(f"{where}: expected {names_}, got {value!r}")


def parse_override(text: str) -> tuple[str, Scalar]:
    """`key=value` from the command line, value parsed like a method-id value."""
    if "=" not in text:
        raise BenchError(f"--set {text!r}: expected key=value, e.g. --set bm25.k1=0.9")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), parse_scalar(raw.strip(), f"--set {text}")
    except MethodIdError as e:
        raise BenchError(str(e)) from e
