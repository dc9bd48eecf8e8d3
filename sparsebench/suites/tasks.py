"""Task kinds a suite can name. A task owns its data, its loop and its cost axes.

The runner, records, `compare`, `validate` and the reporter only ever talk to this interface:
`load_data` resolves what the suite measures on, `write_snapshot` / `read_snapshot` hand it to
the worker processes, `check_method` refuses a method the task cannot run (its capability) and
`run` is the template loop (timing, batching, evaluation), identical for every method.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol

from ..errors import ConfigError
from .axes import Axis


@dataclass
class TaskResult:
    metrics: dict[str, dict[str, Any]]  # name -> {value, n, unit, direction, aggregation}
    costs: dict[str, dict[str, Any]]  # name -> {value, unit, n?, note?}
    per_query: dict[str, dict[str, float]]  # query (or window, case) id -> {metric or latency name: value}
    extra: dict[str, Any]


class TaskData(Protocol):
    """What a task measures on, as the runner and the records see it."""

    @property
    def id(self) -> str: ...

    @property
    def checksum(self) -> str: ...

    @property
    def counts(self) -> dict[str, int]: ...

    @property
    def source_info(self) -> Mapping[str, str]: ...


class Task(abc.ABC):
    name: ClassVar[str]
    cost_axes: ClassVar[dict[str, Axis]]
    method_type: ClassVar[type]  # the capability (base class) a method needs to run in this task
    capability: ClassVar[str]  # that capability in words, for errors
    item_name: ClassVar[str] = "queries"  # what per-item (sidecar) values are per, for paired tests

    @abc.abstractmethod
    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None: ...

    @abc.abstractmethod
    def settings_from(self, data: dict[str, Any], file: str) -> Any: ...

    @abc.abstractmethod
    def load_data(self, suite: Any, ref: str | None, name: str | None = None) -> TaskData:
        """The suite's data (a declared id, or a source string), checked against what it pins."""

    @abc.abstractmethod
    def write_snapshot(self, cache_dir: Path, data: TaskData) -> Path:
        """Write the loaded data once for the workers (plain data, never pickle)."""

    @abc.abstractmethod
    def read_snapshot(self, path: Path) -> TaskData: ...

    @abc.abstractmethod
    def run(self, method: Any, data: Any, metrics: tuple[str, ...], settings: Any, ctx: Any, run_file: Path | None = None) -> TaskResult:
        ...

    def describe(self, data: TaskData) -> str:
        """One line for the log once the data is loaded."""
        return f"dataset {data.id}: " + ", ".join(f"{v} {k}" for k, v in data.counts.items())

    def subject(self, settings: Any) -> dict[str, str] | None:
        """What is measured besides the data and the method (a task's model), for the record and
        the report's grouping; None when the method is all there is."""
        return None

    def preflight(self, settings: Any, methods: list[Any], cache_dir: Path, device: str = "cpu") -> None:
        """Refuse, before anything is measured or written, what would fail in every worker (a
        model that cannot be had, a method that does not fit it or the profile's device); may
        prepare shared files."""

    def check_method(self, method: Any, where: str) -> None:
        if not isinstance(method, self.method_type):
            info = getattr(type(method), "info", None)
            family = f"a {info.family} method" if info else "not a method"
            raise ConfigError(f"{where}: {method} is {family}; the {self.name} task runs {self.capability} "
                              f"(bench list shows which methods run in which task)")


def task_names() -> tuple[str, ...]:
    return ("retrieval", "lm", "long-context", "sae")


def get_task(name: str, file: str = "") -> Task:
    if name == "retrieval":
        from .retrieval import RetrievalTask

        return RetrievalTask()
    if name == "lm":
        from .lm import LMTask

        return LMTask()
    if name == "long-context":
        from .long_context import LongContextTask

        return LongContextTask()
    if name == "sae":
        from .sae import SAETask

        return SAETask()
    raise ConfigError(f"{file}: task: unknown task {name!r} (known: {', '.join(task_names())})")
