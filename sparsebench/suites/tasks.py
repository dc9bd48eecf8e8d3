"""Task kinds a suite can name. A task owns the template loop: timing, batching, validation."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigError
from .axes import Axis


@dataclass
class TaskResult:
    metrics: dict[str, dict[str, Any]]  # name -> {value, n, unit, direction, aggregation}
    costs: dict[str, dict[str, Any]]  # name -> {value, unit, n?, note?}
    per_query: dict[str, dict[str, float]]  # query id -> {metric or latency name: value}
    extra: dict[str, Any]


class Task(abc.ABC):
    name: ClassVar[str]
    cost_axes: ClassVar[dict[str, Axis]]

    @abc.abstractmethod
    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None: ...

    @abc.abstractmethod
    def settings_from(self, data: dict[str, Any], file: str) -> Any: ...


def get_task(name: str, file: str = "") -> Task:
    from .retrieval import RetrievalTask

    tasks: dict[str, Task] = {RetrievalTask.name: RetrievalTask()}
    if name not in tasks:
        raise ConfigError(f"{file}: task: unknown task {name!r} (known: {', '.join(tasks)})")
    return tasks[name]
