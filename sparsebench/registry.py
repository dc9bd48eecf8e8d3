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
from .methodid import MethodIdError, ParsedId, Scalar, format_method_id, format_scalar, parse_method_id, parse_scalar

log = logging.getLogger(__name__)

FAMILIES = (
    "sparse-encoder",
    "dense-encoder",
    "multi-vector",
    "hybrid",
    "compressor",
    "ann",  # approximate nearest-neighbour search engines (hnsw, ivf) over vectors or codes
    "pruning",
    "sparse-attention",
    "kv-cache",  # KV-cache eviction (kvpress presses) and quantization over a language model
    "sae",
    "language-model",  # the unmodified model of an lm suite: its baseline row
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
    example: str = ""  # an id that builds, for methods whose arguments have no default: rrf(bm25,minilm)

    @property
    def example_id(self) -> str:
        return self.example or self.name


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
        if method_fields(cls) and not info.example:
            raise TypeError(f"method {info.name}: takes methods as arguments, so its MethodInfo needs an example id")
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"method {info.name}: {cls.__name__} must be a frozen dataclass")
        if info.name in _REGISTRY and _REGISTRY[info.name][0] is not cls:
            raise ValueError(f"method name {info.name!r} registered twice")
        _check_method_fields(cls, info.name)
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


def catalogue() -> dict[str, dict[str, Any]]:
    """Every registered method's card as plain data (JSON types only), for the report's method
    pages: the reporter renders it without importing any method code itself."""
    out: dict[str, dict[str, Any]] = {}
    for name in names():
        cls, info = _REGISTRY[name]
        hints = typing.get_type_hints(cls)
        taking = {f.name for f in method_fields(cls)}
        params = []
        for f in param_fields(cls):
            typ = hints.get(f.name)
            default = "" if f.name in taking or f.default is dataclasses.MISSING else format_scalar(f.default) if isinstance(
                f.default, (int, float, str, bool)) or f.default is None else repr(f.default)
            params.append({"name": f.name, "type": _type_names(typ), "default": default, "method": f.name in taking})
        out[name] = {
            "name": name, "family": info.family, "version": info.version, "summary": info.summary,
            "paper": info.paper, "licence": info.licence, "requires": list(info.requires), "tasks": list(info.tasks),
            "example": info.example_id, "parameters": params,
            "cost_model": {"proxies": [{"name": n, "unit": u} for n, u in info.cost_model.proxies], "notes": info.cost_model.notes},
        }
    return out


def _suggestions(name: str, known: list[str]) -> list[str]:
    """Up to three near names, but only those about as close as the closest: a typo of one name
    should suggest that name, not every id that happens to share a few letters with it."""
    scored = sorted(((difflib.SequenceMatcher(None, name, k).ratio(), k) for k in known), reverse=True)
    scored = [(r, k) for r, k in scored if r >= 0.5]
    if not scored:
        return []
    best = scored[0][0]
    return [k for r, k in scored[:3] if r >= best - 0.15]


def lookup(name: str) -> tuple[type, MethodInfo]:
    discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = _suggestions(name, list(_REGISTRY))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownMethodError(f"unknown method {name!r}{hint} (bench list shows all methods)")


def param_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


def is_method_type(typ: Any) -> bool:
    """A parameter whose annotation is a class other than the scalar types takes a method."""
    return isinstance(typ, type) and typ not in (int, float, bool, str, type(None))


def method_fields(cls: type) -> list[dataclasses.Field]:
    """The parameters that take methods (`rrf`'s two retrievers), in field order."""
    hints = typing.get_type_hints(cls)
    return [f for f in param_fields(cls) if is_method_type(hints[f.name])]


def _check_method_fields(cls: type, name: str) -> None:
    # Method arguments are written by position, so they must lead and cannot be omitted.
    fields = param_fields(cls)
    taking = method_fields(cls)
    if fields[:len(taking)] != taking:
        raise TypeError(f"method {name}: parameters that take methods must come first")
    for f in taking:
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            raise TypeError(f"method {name}: method parameter {f.name!r} cannot have a default")


def method_id(obj: Any) -> str:
    """Canonical id: registered name, method arguments by position, then non-default scalars."""
    cls = type(obj)
    taking = {f.name for f in method_fields(cls)}
    args, params = [], []
    for f in param_fields(cls):
        value = getattr(obj, f.name)
        if f.name in taking:
            args.append(str(value))
            continue
        if f.default is not dataclasses.MISSING and value == f.default and type(value) is type(f.default):
            continue
        params.append((f.name, value))
    return format_method_id(cls.info.name, tuple(params), tuple(args))


def params_of(obj: Any) -> dict[str, Any]:
    """Every parameter's value for a record: scalars as they are, nested methods as their ids."""
    taking = {f.name for f in method_fields(type(obj))}
    return {f.name: str(getattr(obj, f.name)) if f.name in taking else getattr(obj, f.name)
            for f in param_fields(type(obj))}


def method_names(obj: Any) -> list[str]:
    """Registered names of a method and of every method nested in it, outermost first."""
    out = [type(obj).info.name]
    for f in method_fields(type(obj)):
        out += [n for n in method_names(getattr(obj, f.name)) if n not in out]
    return out


def build(text: str, overrides: dict[str, Scalar] | None = None,
          per_method: dict[str, dict[str, Scalar]] | None = None) -> Any:
    """Parse a method id and construct it (nested methods included).

    `overrides` set the outermost method's parameters (a suite's sweep point); `per_method`
    (`--set name.key=value`) sets `key` of every method called `name`, at any depth, so
    `--set minilm.max_length=128` reaches the minilm inside `rrf(bm25,minilm)`.
    """
    try:
        parsed = parse_method_id(text)
    except MethodIdError as e:
        raise BenchError(str(e)) from e
    return _build(parsed, text, overrides or {}, per_method or {}, root=True)


def _build(node: ParsedId, text: str, overrides: dict[str, Scalar], per_method: dict[str, dict[str, Scalar]],
           root: bool = False) -> Any:
    def fail(what: str, kind: type[BenchError] = BenchError) -> BenchError:
        # Name the whole id as given, so a problem deep inside a composed id can be found.
        named = "(" not in text or text.strip() in what or str(node) == text.strip() and what.startswith(str(node))
        return kind(what if named else f"method id {text!r}: {what}")

    try:
        cls, info = lookup(node.name)
    except UnknownMethodError as e:
        if root:  # the outermost name: the message already says which
            raise
        raise fail(str(e), UnknownMethodError) from None
    fields = {f.name: f for f in param_fields(cls)}
    taking = method_fields(cls)
    taking_names = [f.name for f in taking]
    if len(node.args) > len(taking):
        extra = node.args[len(taking)]
        if not taking:
            raise fail(f"method {info.name} takes no method arguments; parameter {str(extra)!r} needs the form key=value "
                       f"(parameters: {', '.join(fields) or 'none'})")
        raise fail(f"method {info.name} takes {len(taking)} method argument(s) ({', '.join(taking_names)}), "
                   f"got {len(node.args)}")
    given: dict[str, Any] = dict(zip(taking_names, node.args))
    for key, value in node.params:
        if key in given:
            raise fail(f"method {info.name}: parameter {key!r} given twice")
        given[key] = value
    given.update(overrides)
    given.update(per_method.get(info.name, {}))
    kwargs: dict[str, Any] = {}
    for key, value in given.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            known = ", ".join(fields) or "none"
            raise fail(f"method {info.name} has no parameter {key!r}{hint} (parameters: {known})")
        typ = _field_type(cls, key)
        if key in taking_names:
            kwargs[key] = _build_nested(value, typ, f"{info.name}.{key}", text, per_method, fail)
        elif isinstance(value, ParsedId):
            raise fail(f"{info.name}.{key}: expected {_type_names(typ)}, got method id {str(value)!r} "
                       "(a method where a scalar is expected)")
        else:
            try:
                kwargs[key] = coerce(value, typ, f"{info.name}.{key}")
            except BenchError as e:
                hint = " (a method where a scalar is expected)" if isinstance(value, str) and value in _REGISTRY else ""
                raise fail(f"{e}{hint}") from None
    missing = [n for n in taking_names if n not in kwargs]
    if missing:
        example = info.example_id
        raise fail(f"method {info.name} needs {len(taking)} method argument(s) ({', '.join(taking_names)}), "
                   f"missing {', '.join(missing)}; e.g. {example}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a method's __post_init__ refusing a value out of its range
        args = tuple(str(kwargs[n]) for n in taking_names)
        scalars = tuple((k, v) for k, v in kwargs.items() if k not in taking_names)
        raise fail(f"{format_method_id(info.name, scalars, args)}: {e}") from e


def _build_nested(value: Any, typ: type, where: str, text: str, per_method: dict[str, dict[str, Scalar]],
                  fail: Callable[[str], BenchError]) -> Any:
    if isinstance(value, str) and not isinstance(value, bool):
        try:
            value = parse_method_id(value)
        except MethodIdError:
            raise fail(f"{where}: expected a method id, got {value!r}") from None
    if not isinstance(value, ParsedId):
        raise fail(f"{where}: expected a method id, got {format_scalar(value)} (a scalar where a method is expected)")
    sub = _build(value, text, {}, per_method)
    if not isinstance(sub, typ):
        # A base class may say in words which methods it takes (dense vectors, ...).
        accepts = getattr(typ, "accepts", None) or f"a {typ.__name__}"
        raise fail(f"{where}: {str(value)!r} is a {type(sub).info.family} method, which cannot serve here; "
                   f"{where.split('.')[0]} accepts {accepts}")
    return sub


def _type_names(typ: Any) -> str:
    options = typing.get_args(typ) if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union else (typ,)
    if typing.get_origin(typ) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(typ)))
    return " or ".join("none" if o is type(None) else getattr(o, "__name__", str(o)) for o in options)


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
    raise BenchError(f"{where}: expected {_type_names(typ)}, got {value!r}")


def parse_override(text: str) -> tuple[str, Scalar]:
    """`key=value` from the command line, value parsed like a method-id value."""
    if "=" not in text:
        raise BenchError(f"--set {text!r}: expected key=value, e.g. --set bm25.k1=0.9")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), parse_scalar(raw.strip(), f"--set {text}")
    except MethodIdError as e:
        raise BenchError(str(e)) from e
