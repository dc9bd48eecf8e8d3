"""Dominance with confidence: which Pareto claims on a plot survive a paired test.

The plain frontier (`pareto.frontier`) compares means. Here a point is marked *dominated* only
where a frontier point beats it on quality by a paired t-test over the same queries, after Holm
correction over every claim tested on the plot, and is at least as good on cost beyond the
spread its repeats measured (the frontier point's costliest repeat is no costlier than the
point's cheapest). Being cheaper is not enough: a point that costs more but is statistically
tied on quality is *tied*, not dominated, and so is every nominally dominated point that no
frontier point beats that way. A
frontier point whose quality gain over the next cheaper frontier point does not survive the
same test is *frontier-tied*: its place on the frontier is within the noise.

Why frontier points are the only dominators tested: every point off the frontier is dominated
by some frontier point, and a frontier point that dominates a dominator of P dominates P by at
least as much, so testing the frontier answers the question with far fewer claims (and Holm's
correction stays meaningful on plots with hundreds of points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..stats import holm, paired_t_pvalues

FRONTIER, FRONTIER_TIED, TIED, DOMINATED = "frontier", "frontier-tied", "tied", "dominated"


@dataclass(frozen=True)
class Point:
    """One method on one plot. `per_query` maps query id to the main metric (None: no sidecar);
    `cost_lo` / `cost_hi` is the cost's range over the key's repeats (equal with one run)."""

    ident: str
    quality: float
    cost: float
    cost_lo: float
    cost_hi: float
    per_query: dict[str, float] | None
    on_frontier: bool


@dataclass(frozen=True)
class Verdict:
    status: str
    against: str  # the other point of the deciding claim ("" for the cheapest frontier point)
    p_holm: float | None  # Holm-adjusted p of that claim (None: no paired test was possible)
    reason: str


def _cost_no_worse(a: Point, b: Point, direction: str) -> bool:
    """a's cost is at least as good as b's even at a's worst repeat and b's best (equal costs
    with no spread, such as two models of the same size, qualify)."""
    return a.cost_hi <= b.cost_lo if direction == "lower" else a.cost_lo >= b.cost_hi


def _aligned(a: Point, b: Point) -> tuple[np.ndarray, np.ndarray] | None:
    if a.per_query is None or b.per_query is None:
        return None
    common = sorted(a.per_query.keys() & b.per_query.keys())
    if len(common) < 2:
        return None
    return np.array([a.per_query[q] for q in common]), np.array([b.per_query[q] for q in common])


def _p(better: Point, worse: Point, quality_dir: str) -> float | None:
    """Two-sided paired t p-value that `better` beats `worse` on quality; 1 when its mean is not
    better on the common queries; None when there are no common per-query values."""
    pair = _aligned(better, worse)
    if pair is None:
        return None
    a, b = pair
    gain = (a - b).mean() if quality_dir == "higher" else (b - a).mean()
    if gain <= 0:
        return 1.0
    return float(paired_t_pvalues(a[None, :], b)[0])


def classify(points: Sequence[Point], cost_dir: str, quality_dir: str = "higher", alpha: float = 0.05) -> dict[str, Verdict]:
    """A verdict for every point: frontier, frontier-tied, tied or dominated (see the module)."""
    sign = 1.0 if cost_dir == "lower" else -1.0
    qsign = 1.0 if quality_dir == "higher" else -1.0
    front = sorted((p for p in points if p.on_frontier), key=lambda p: (sign * p.cost, -qsign * p.quality, p.ident))
    claims: list[tuple[str, str, str, float | None]] = []  # (kind, subject, other, raw p)
    # each frontier point against the next cheaper one: is its extra quality real?
    for cheaper, dearer in zip(front, front[1:]):
        claims.append(("gain", dearer.ident, cheaper.ident, _p(dearer, cheaper, quality_dir)))
    for p in points:
        if p.on_frontier:
            continue
        for f in front:
            at_least_as_good = qsign * f.quality >= qsign * p.quality and sign * f.cost <= sign * p.cost
            if at_least_as_good and _cost_no_worse(f, p, cost_dir):
                claims.append(("dominates", p.ident, f.ident, _p(f, p, quality_dir)))
    tested = [i for i, c in enumerate(claims) if c[3] is not None]
    adjusted = dict(zip(tested, holm([claims[i][3] for i in tested]))) if tested else {}  # type: ignore[misc]

    out: dict[str, Verdict] = {}
    if front:
        out[front[0].ident] = Verdict(FRONTIER, "", None, "the cheapest point on the frontier")
    for i, (kind, subject, other, raw) in enumerate(claims):
        adj = adjusted.get(i)
        if kind == "gain":
            if adj is not None and adj <= alpha:
                out[subject] = Verdict(FRONTIER, other, adj, f"better than {other} on quality (Holm p={adj:.3g})")
            else:
                why = "no per-query values to test" if adj is None else f"Holm p={adj:.3g} > {alpha}"
                out[subject] = Verdict(FRONTIER_TIED, other, adj, f"its quality gain over {other} is not significant ({why})")
        elif adj is not None and adj <= alpha:
            best = out.get(subject)
            if best is None or best.status != DOMINATED or (best.p_holm or 1.0) > adj:
                out[subject] = Verdict(DOMINATED, other, adj, f"{other} is better on quality (Holm p={adj:.3g}) and no worse on cost across the repeats' spread")
    for p in points:
        if p.ident in out:
            continue
        candidates = [(adjusted.get(i), c[2]) for i, c in enumerate(claims) if c[0] == "dominates" and c[1] == p.ident]
        if not candidates:
            reason = "no frontier point is as good on cost beyond the spread of repeats"
            out[p.ident] = Verdict(TIED, "", None, reason)
            continue
        tested_c = [(a, o) for a, o in candidates if a is not None]
        if tested_c:
            a, o = min(tested_c, key=lambda t: (t[0], t[1]))
            out[p.ident] = Verdict(TIED, o, a, f"statistically tied with {o} on quality (Holm p={a:.3g} > {alpha})")
        else:
            out[p.ident] = Verdict(TIED, candidates[0][1], None, f"no per-query values to test against {candidates[0][1]}")
    return out
