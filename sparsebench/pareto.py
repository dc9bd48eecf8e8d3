"""Pareto frontiers and dominance over quality and cost, as pure functions.

An objective is (value getter, direction); direction "higher" or "lower" says which is better.
Items missing a value on any objective are left out of a frontier: a number that was not
measured cannot make a method look optimal.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
Objective = tuple[Callable[[T], float | None], str]


def _oriented(item: T, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """Values flipped so that larger is always better; None if any value is missing."""
    out = []
    for get, direction in objectives:
        if direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
        value = get(item)
        if value is None:
            return None
        out.append(float(value) if direction == "higher" else -float(value))
    return tuple(out)


def dominates(a: T, b: T, objectives: Sequence[Objective]) -> bool:
    """a is at least as good as b on every objective and strictly better on one."""
    va, vb = _oriented(a, objectives), _oriented(b, objectives)
    if va is None or vb is None:
        return False
    return all(x >= y for x, y in zip(va, vb, strict=True)) and any(x > y for x, y in zip(va, vb, strict=True))


def frontier(items: Sequence[T], objectives: Sequence[Objective]) -> list[T]:
    """The non-dominated items, in input order. Two objectives use an O(n log n) sweep."""
    scored = [(i, v) for i, item in enumerate(items) if (v := _oriented(item, objectives)) is not None]
    if len(objectives) == 2:
        keep = _frontier_2d(scored)
    else:
        keep = {i for i, v in scored if not any(_dom(w, v) for _, w in scored)}
    return [items[i] for i in sorted(keep)]


def _dom(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def _frontier_2d(scored: list[tuple[int, tuple[float, ...]]]) -> set[int]:
    # Best first on the first objective, ties broken by the second; an item is on the frontier
    # iff its second value beats everything seen so far, or it exactly equals the current best
    # point (equal points do not dominate each other).
    order = sorted(scored, key=lambda iv: (-iv[1][0], -iv[1][1]))
    keep: set[int] = set()
    best: tuple[float, float] | None = None
    for i, (x, y) in order:
        if best is None or y > best[1]:
            keep.add(i)
            best = (x, y)
        elif (x, y) == best:
            keep.add(i)
    return keep
