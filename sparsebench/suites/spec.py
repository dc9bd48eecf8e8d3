"""A suite definition: which data, which metrics, which methods, as versioned data.

Changing what a suite measures (data, metrics, settings that change numbers) bumps `version`;
records carry `name@version` and the reporter never ranks different versions together.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import ConfigError
from ..methodid import Scalar
from ..typedload import from_data, load_yaml


@dataclass(frozen=True)
class DatasetDecl:
    id: str
    source: str  # embedded:NAME | beir:PATH | irds:ID | mteb:TASK
    description: str = ""
    licence: str = ""
    sha256: str | None = None  # content checksum (RetrievalDataset.checksum)
    documents: int | None = None
    queries: int | None = None
    qrels: int | None = None


@dataclass(frozen=True)
class MethodGrid:
    method: str
    sweep: dict[str, tuple[Scalar, ...]] = field(default_factory=dict)

    def method_ids(self) -> list[tuple[str, dict[str, Scalar]]]:
        """(base id, overrides) for every point of the sweep's cartesian product."""
        keys = list(self.sweep)
        return [(self.method, dict(zip(keys, values))) for values in itertools.product(*self.sweep.values())]


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    task: str
    description: str
    datasets: tuple[DatasetDecl, ...]
    default_dataset: str
    metrics: tuple[str, ...]
    main_metric: str
    cost_axes: tuple[str, ...]
    methods: tuple[MethodGrid, ...]
    settings: dict[str, Scalar] = field(default_factory=dict)
    # Named larger grids (`bench run --grid NAME`): each adds its entries to `methods`, so long
    # sweeps live beside the default grid, whose cold run stays a few minutes on 2 cores, and
    # their records share the suite's version and keys (a point is the same spec in either grid).
    grids: dict[str, tuple[MethodGrid, ...]] = field(default_factory=dict)
    # Setting overrides of the suite's marked smoke subset (`bench run --smoke`): a few small
    # cases that exercise every path, for CI; records keep them apart by their settings.
    smoke: dict[str, Scalar] = field(default_factory=dict)
    file: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def dataset(self, name: str) -> DatasetDecl | None:
        return next((d for d in self.datasets if d.id == name), None)

    def grid(self, name: str | None = None) -> tuple[MethodGrid, ...]:
        """The default grid (`methods`), or it followed by the named grid's entries."""
        if name is None:
            return self.methods
        if name not in self.grids:
            known = ", ".join(sorted(self.grids)) or "none"
            close = difflib.get_close_matches(name, list(self.grids), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"--grid {name!r}: suite {self.ref} has no such grid{hint} (named grids: {known})")
        return self.methods + self.grids[name]

    @property
    def digest(self) -> str:
        """sha256 of what this suite version measures, stored in every record (`suite_digest`).

        It covers everything that changes a number (task, data declarations, metrics, cost axes,
        default settings) and leaves out the method grid and prose: adding a method to the grid
        or rewording a description must not orphan the records already measured, while a copied
        suite file that keeps `name@version` but measures something else gets a different digest.
        """
        payload = {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "datasets": [
                {k: getattr(d, k) for k in ("id", "source", "sha256", "documents", "queries", "qrels")} for d in self.datasets
            ],
            "default_dataset": self.default_dataset,
            "metrics": list(self.metrics),
            "main_metric": self.main_metric,
            "cost_axes": list(self.cost_axes),
            "settings": self.settings,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def builtin_suites() -> dict[str, Path]:
    root = files("sparsebench.suites")
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        known = builtin_suites()
        if name_or_path not in known:
            close = difflib.get_close_matches(name_or_path, list(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown suite {name_or_path!r}{hint} (built-in: {', '.join(sorted(known))}, or a path to a .yaml file)")
        path = known[name_or_path]
    data = load_yaml(path)
    if isinstance(data, dict) and "file" in data:
        raise ConfigError(f"{path}: unknown key 'file'")
    suite = from_data(Suite, data, str(path))
    suite = Suite(**{**suite.__dict__, "file": str(path)})
    _check(suite, str(path))
    return suite


def _check(suite: Suite, file: str) -> None:
    from .tasks import get_task

    task = get_task(suite.task, file)
    if suite.version < 1:
        raise ConfigError(f"{file}: version: must be a positive integer")
    ids = [d.id for d in suite.datasets]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{file}: datasets: duplicate id")
    if suite.default_dataset not in ids:
        raise ConfigError(f"{file}: default_dataset: {suite.default_dataset!r} is not one of the declared datasets ({', '.join(ids)})")
    if suite.main_metric not in suite.metrics:
        raise ConfigError(f"{file}: main_metric: {suite.main_metric!r} is not listed under metrics")
    task.check_metrics(suite.metrics, file)
    unknown_axes = [a for a in suite.cost_axes if a not in task.cost_axes]
    if unknown_axes:
        raise ConfigError(f"{file}: cost_axes: unknown axis {unknown_axes[0]!r} (known: {', '.join(task.cost_axes)})")
    task.settings_from(suite.settings, file)
    from .. import registry

    entries = [(f"methods[{i}]", g) for i, g in enumerate(suite.methods)]
    for name, extra in suite.grids.items():
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{file}: grids: {name!r} is not a grid name (letters, digits, - and _)")
        entries += [(f"grids.{name}[{i}]", g) for i, g in enumerate(extra)]
    for where, grid in entries:
        try:
            for base, overrides in grid.method_ids():
                registry.build(base, overrides)
        except Exception as e:
            raise ConfigError(f"{file}: {where}: {e}") from e
