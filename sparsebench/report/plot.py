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
class Datum:
    """One point to draw: what it is (label, the record anchor and page), where, and how it
    stands (frontier flag, dominance status, family and sweep series for the page's filters)."""

    label: str
    anchor: str
    x: float
    y: float
    frontier: bool
    status: str = ""  # dominance.FRONTIER / FRONTIER_TIED / TIED / DOMINATED, "" if not classified
    family: str = ""
    series: str = ""
    why: str = ""  # the status's reason, for the hover title


@dataclass(frozen=True)
class Point:
    label: str
    anchor: str
    x: float
    y: float
    cx: float
    cy: float
    frontier: bool
    status: str = ""
    family: str = ""
    series: int = -1  # index into Plot.series, -1 when the plot has none
    why: str = ""

    @property
    def title(self) -> str:
        where = "\non the Pareto frontier" if self.frontier else ""
        if self.status:
            where += f"\n{self.status}" + (f": {self.why}" if self.why else "")
        return f"{self.label}\n{fmt.number(self.x)} / {fmt.metric(self.y)}" + where


@dataclass(frozen=True)
class Line:
    """A sweep drawn as ann-benchmarks draws an algorithm: its own Pareto-optimal points joined
    in cost order. `path` is SVG path data (numbers only)."""

    series: int
    name: str
    path: str


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
    lines: tuple[Line, ...] = ()
    series: tuple[str, ...] = ()  # legend: series names, index = colour class s0..s7 (cycled)


def scatter(data: list[Datum], x_label: str, y_label: str, x_direction: str,
            y_direction: str = "higher", sweeps: bool = False) -> Plot | None:
    """A quality-against-cost plot; None when there is nothing to draw.

    Better quality is always up: a lower-is-better metric (perplexity) runs its axis downwards.
    With `sweeps`, each series is joined through its own frontier points (one curve per method,
    as ann-benchmarks draws them) instead of the group's staircase."""
    if not data:
        return None
    xs, ys = [d.x for d in data], [d.y for d in data]
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

    names = tuple(sorted({d.series for d in data})) if sweeps else ()
    index = {n: i for i, n in enumerate(names)}
    points = sorted((Point(d.label, d.anchor, d.x, d.y, px(d.x), py(d.y), d.frontier, d.status, d.family, index.get(d.series, -1), d.why)
                     for d in data), key=lambda p: (not p.frontier, p.x, p.y, p.label))
    sign = 1 if x_direction == "lower" else -1
    ysign = 1 if y_direction == "higher" else -1
    front = sorted((p for p in points if p.frontier), key=lambda p: (sign * p.x, ysign * p.y))
    path = ""
    lines: list[Line] = []
    if sweeps:
        for i, name in enumerate(names):
            own = _own_frontier([p for p in points if p.series == i], sign, ysign)
            if len(own) > 1:
                lines.append(Line(i, name, f"M{own[0].cx},{own[0].cy}" + "".join(f" L{b.cx},{b.cy}" for b in own[1:])))
    elif front:
        # The attainable quality at a cost budget is a staircase: from each frontier point (cheapest
        # first) hold its quality until the next point's cost, then step up to that point.
        path = f"M{front[0].cx},{front[0].cy}" + "".join(f" H{b.cx} V{b.cy}" for b in front[1:])
    x_ticks = [Tick(px(v), fmt.tick(v)) for v in (_log_ticks(x0, x1) if log_x else _nice_ticks(x0, x1))]
    y_ticks = [Tick(py(v), f"{v:.2f}") for v in _nice_ticks(y0, y1)]
    better = ("left" if x_direction == "lower" else "right") + " and up is better"
    labels = [] if sweeps else _place_labels(front, points)
    return Plot(WIDTH, HEIGHT, LEFT, TOP, inner_w, inner_h, points, labels, path, x_ticks, y_ticks,
                x_label + (", log scale" if log_x else ""), y_label + (" (lower is better: axis reversed)" if y_direction == "lower" else ""),
                log_x, better, tuple(lines), names)


def _own_frontier(points: list[Point], sign: int, ysign: int) -> list[Point]:
    """A series' non-dominated points, cheapest first (quality must rise along the curve)."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (sign * p.x, -ysign * p.y)):
        if not out or ysign * p.y > ysign * out[-1].y:
            out.append(p)
    return out


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
