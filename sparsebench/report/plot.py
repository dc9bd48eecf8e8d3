"""Scatter-plot geometry for the inline SVG: quality (y) against one cost axis (x).

Only numbers come out of here as markup-relevant strings (coordinates, the step path); labels
travel as plain text and the template escapes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import fmt

WIDTH, HEIGHT = 440, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 14, 46


@dataclass(frozen=True)
class Point:
    label: str
    anchor: str
    x: float
    y: float
    cx: float
    cy: float
    frontier: bool

    @property
    def title(self) -> str:
        return f"{self.label}\n{fmt.number(self.x)} / {fmt.metric(self.y)}" + ("\non the Pareto frontier" if self.frontier else "")


@dataclass(frozen=True)
class Label:
    text: str
    x: float
    y: float
    anchor: str  # SVG text-anchor: start or end


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class Plot:
    width: int
    height: int
    left: int
    top: int
    inner_w: int
    inner_h: int
    points: list[Point]
    labels: list[Label]
    step_path: str  # SVG path data through the frontier, numbers only
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    x_label: str
    y_label: str
    log_x: bool
    better: str  # where the good corner is, in words


def scatter(data: list[tuple[str, str, float, float, bool]], x_label: str, y_label: str, x_direction: str,
            y_direction: str = "higher") -> Plot | None:
    """data: (label, anchor, cost, quality, on_frontier). None when there is nothing to draw.

    Better quality is always up: a lower-is-better metric (perplexity) runs its axis downwards."""
    if not data:
        return None
    xs, ys = [d[2] for d in data], [d[3] for d in data]
    log_x = min(xs) > 0 and max(xs) / min(xs) > 100  # more than two decades
    x0, x1 = _x_range(xs, log_x)
    y0, y1 = _padded(min(ys), max(ys))
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if log_x else (x - x0) / (x1 - x0)
        return round(LEFT + t * inner_w, 2)

    def py(y: float) -> float:
        t = (y - y0) / (y1 - y0)
        return round(TOP + ((1 - t) if y_direction == "higher" else t) * inner_h, 2)

    points = sorted((Point(lbl, a, x, y, px(x), py(y), f) for lbl, a, x, y, f in data), key=lambda p: (not p.frontier, p.x, p.y, p.label))
    # The attainable quality at a cost budget is a staircase: from each frontier point (cheapest
    # first) hold its quality until the next point's cost, then step up to that point.
    sign = 1 if x_direction == "lower" else -1
    front = sorted((p for p in points if p.frontier), key=lambda p: (sign * p.x, p.y if y_direction == "higher" else -p.y))
    path = ""
    if front:
        path = f"M{front[0].cx},{front[0].cy}" + "".join(f" H{b.cx} V{b.cy}" for b in front[1:])
    x_ticks = [Tick(px(v), fmt.tick(v)) for v in (_log_ticks(x0, x1) if log_x else _nice_ticks(x0, x1))]
    y_ticks = [Tick(py(v), f"{v:.2f}") for v in _nice_ticks(y0, y1)]
    better = ("left" if x_direction == "lower" else "right") + " and up is better"
    labels = _place_labels(front, points)
    return Plot(WIDTH, HEIGHT, LEFT, TOP, inner_w, inner_h, points, labels, path, x_ticks, y_ticks,
                x_label + (", log scale" if log_x else ""), y_label + (" (lower is better: axis reversed)" if y_direction == "lower" else ""),
                log_x, better)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _x_range(xs: list[float], log_x: bool) -> tuple[float, float]:
    if not log_x:
        lo, hi = _padded(min(xs), max(xs))
        return (max(lo, 0.0) if min(xs) >= 0 else lo), hi
    a, b = math.log10(min(xs)), math.log10(max(xs))
    pad = (b - a) * 0.06
    return 10 ** (a - pad), 10 ** (b + pad)


def _nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    out = [10.0**e for e in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)]
    if len(out) < 3:  # a span of two or three decades: add intermediate marks
        mults = (1, 2, 5) if len(out) < 2 else (1, 3)
        out = sorted(m * 10.0**e for e in range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
                     for m in mults if lo <= m * 10.0**e <= hi)
    return out


CHAR_W, LINE_H, MAX_CHARS = 5.8, 10.0, 30  # 9.5px monospace labels
Box = tuple[float, float, float, float]


def _place_labels(front: list[Point], points: list[Point]) -> list[Label]:
    """Label frontier points where a label fits: try four spots around the point, skip the label
    (the point keeps its hover title) when all of them overlap a placed label or leave the plot."""
    placed: list[Box] = []
    dots: list[Box] = [(p.cx - 5, p.cy - 5, p.cx + 5, p.cy + 5) for p in points]
    out = []
    for p in sorted(front, key=lambda p: (p.cy, p.x)):
        text = p.label if len(p.label) <= MAX_CHARS else p.label[: MAX_CHARS - 1] + "\u2026"
        w = len(text) * CHAR_W
        for dx, dy, anchor in ((7, -7, "start"), (7, 12, "start"), (-7, -7, "end"), (-7, 12, "end")):
            x, y = p.cx + dx, p.cy + dy
            x0 = x if anchor == "start" else x - w
            box = (x0, y - LINE_H + 2, x0 + w, y + 2)
            inside = LEFT <= box[0] and box[2] <= WIDTH - 2 and TOP <= box[1] and box[3] <= TOP + (HEIGHT - TOP - BOTTOM)
            if inside and not any(_overlap(box, b) for b in placed + dots):
                placed.append(box)
                out.append(Label(text, round(x, 2), round(y, 2), anchor))
                break
    return out


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
