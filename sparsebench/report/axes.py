"""Which way is better on each cost axis.

Declared axes take their direction from the suite's task (`Task.cost_axes`); proxies and axes a
task does not declare are "lower is better" unless the name says throughput.
"""

from __future__ import annotations

from functools import cache


@cache
def task_axes(task: str) -> tuple[tuple[str, str, str], ...]:
    """(name, direction, description) of the task's declared axes, in declaration order.

    Read from the data-only axes table, so rendering imports no task or method code. An unknown
    task (a record from a newer sparsebench) simply has no declared axes.
    """
    from ..suites.axes import TASK_COST_AXES

    axes = TASK_COST_AXES.get(task, {})
    return tuple((name, ax.direction, ax.description) for name, ax in axes.items())


def direction(task: str, name: str) -> str:
    for axis, dirn, _ in task_axes(task):
        if axis == name:
            return dirn
    return "higher" if "throughput" in name.lower() else "lower"


def description(task: str, name: str) -> str:
    return next((desc for axis, _, desc in task_axes(task) if axis == name), "")


# Display order: what a reader compares first. Within a rank the task's declaration order holds.
_DISPLAY_RANK = ("latency", "throughput", "bytes", "rss", "memory")


def _rank(name: str) -> int:
    return next((i for i, word in enumerate(_DISPLAY_RANK) if word in name), len(_DISPLAY_RANK))


def order(task: str, names: set[str], proxies: set[str]) -> list[str]:
    """Declared axes (latency, throughput and memory first, otherwise in the task's order), then
    other measured axes, then proxies, each sorted by name."""
    declared = [a for a, _, _ in task_axes(task) if a in names and a not in proxies]
    declared.sort(key=_rank)  # stable: keeps the task's order within a rank
    rest = sorted(n for n in names if n not in declared and n not in proxies)
    return declared + rest + sorted(proxies & names)
