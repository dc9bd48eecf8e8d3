"""The site's view model over the report's groups: the index cards, one card per method and
the cross-profile view. Pure functions of the `Report` (and of the registry's catalogue, given
as plain data), like the rest of the reporter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import fmt
from .model import Cell, Group, Report, Row, _better
from .slugs import method_page


@dataclass
class CardRecord:
    method: str
    group: Group
    anchor: str
    status: str
    main: Cell | None  # None for a failed record
    finished_at: str
    shown: bool  # the latest ok record of its key (the one in the group's leaderboard)


@dataclass
class MethodCard:
    name: str
    page: str
    family: str
    info: dict[str, Any] | None  # the registry's card; None when this installation lacks the method
    records: list[CardRecord]


@dataclass
class SuiteCard:
    """One index card: a suite on one profile, with a line per dataset (or model) group."""

    suite: str
    profile_id: str
    groups: list[tuple[Group, Row | None]]  # each group and its best row by the main metric


@dataclass
class ProfileColumn:
    group: Group
    baseline: Row | None


@dataclass
class CrossColumn:
    title: str  # "Δ nDCG@10" or a cost axis
    profile: ProfileColumn
    direction: str
    note: str  # what the numbers are, for the header's title


@dataclass
class CrossRow:
    label: str
    card: str
    cells: list[Cell | None]  # one per column; None where the method has no record on that profile


@dataclass
class CrossView:
    suite: str
    dataset_id: str
    baseline: str
    profiles: list[ProfileColumn]
    columns: list[CrossColumn]
    rows: list[CrossRow]
    notes: list[str] = field(default_factory=list)


@dataclass
class Site:
    report: Report
    suites: list[SuiteCard]
    cards: list[MethodCard]
    cross: list[CrossView]

    def card_of(self, name: str) -> str:
        return method_page(name)


def build_site(report: Report, catalogue: dict[str, dict[str, Any]] | None = None) -> Site:
    catalogue = catalogue or {}
    by_suite: dict[tuple[str, str], list[tuple[Group, Row | None]]] = {}
    for g in report.groups:
        by_suite.setdefault((g.suite, g.profile_id), []).append((g, g.rows[0] if g.rows else None))
    suites = [SuiteCard(s, p, gs) for (s, p), gs in sorted(by_suite.items())]
    return Site(report, suites, _cards(report, catalogue), _cross(report))


def _cards(report: Report, catalogue: dict[str, dict[str, Any]]) -> list[MethodCard]:
    recs: dict[str, list[CardRecord]] = {}
    families: dict[str, str] = {}
    for g in report.groups:
        for r in g.rows:
            recs.setdefault(r.method_name, []).append(
                CardRecord(r.label, g, r.anchor, "ok", r.main, str(r.record.get("finished_at")), True))
            families.setdefault(r.method_name, r.family)
        for f in g.failures:
            name = f.method.split("(", 1)[0]
            recs.setdefault(name, []).append(CardRecord(f.method, g, f.anchor, f.status, None, f.finished_at, False))
    cards = []
    for name in sorted(recs.keys() | catalogue.keys()):
        info = catalogue.get(name)
        family = str(info["family"]) if info else families.get(name, "")
        rows = sorted(recs.get(name, []), key=lambda c: (c.group.index, c.method, c.finished_at))
        cards.append(MethodCard(name, method_page(name), family, info, rows))
    return cards


def _cross(report: Report) -> list[CrossView]:
    """Where one suite and dataset ran on several profiles: each method's cost as a ratio to the
    baseline co-run on the same profile, side by side; absolute costs never meet across profiles."""
    by_data: dict[tuple[str, str, str], list[Group]] = {}
    for g in report.groups:
        by_data.setdefault((g.suite, g.dataset_id, g.checksum), []).append(g)
    views = []
    for (suite, dataset_id, _), groups in sorted(by_data.items()):
        if len(groups) < 2:
            continue
        groups = sorted(groups, key=lambda g: g.profile_id)
        profiles = [ProfileColumn(g, _base_row(g)) for g in groups]
        names = sorted({b.method for b in (g.baseline for g in groups) if b})
        notes = [f"no baseline co-run on profile {c.group.profile_id}: its columns are empty" for c in profiles if c.baseline is None]
        with_base = [c for c in profiles if c.baseline is not None]
        columns: list[CrossColumn] = []
        rows: list[CrossRow] = []
        if with_base:
            main = groups[0].main_metric
            columns = [CrossColumn(f"\u0394 {main}", c, c.group.metric_cols[0].direction if c.group.metric_cols else "higher",
                                   f"{main} minus the baseline's on {c.group.profile_id}") for c in profiles]
            axes = sorted({col.name for g in groups for col in g.cost_cols},
                          key=lambda n: (min(i for g in groups for i, col in enumerate(g.cost_cols) if col.name == n), n))
            for axis in axes:
                for c in profiles:
                    col = next((x for x in c.group.cost_cols if x.name == axis), None)
                    columns.append(CrossColumn(axis, c, col.direction if col else "lower",
                                               f"{axis} divided by the baseline's on {c.group.profile_id}"))
            labels = sorted({r.label for g in groups for r in g.rows})
            rows = [_cross_row(label, columns) for label in labels]
        else:
            notes = [f"no profile has a baseline co-run (default: the task's baseline; choose one with --baseline): "
                     f"nothing here can be compared across {', '.join(c.group.profile_id for c in profiles)}"]
        views.append(CrossView(suite, dataset_id, ", ".join(names) or "none", profiles, columns, rows, notes))
    return views


def _base_row(g: Group) -> Row | None:
    return next((r for r in g.rows if g.baseline and r.anchor == g.baseline.anchor), None)


def _cross_row(label: str, columns: list[CrossColumn]) -> CrossRow:
    cells: list[Cell | None] = []
    name = ""
    for col in columns:
        g = col.profile.group
        row = next((r for r in g.rows if r.label == label), None)
        name = name or (row.method_name if row else "")
        if row is None or g.baseline is None:
            cells.append(None)
        elif col.title.startswith("\u0394 "):
            cells.append(_delta_cell(g, row))
        else:
            cells.append(_ratio_cell(g, row, col.title))
    return CrossRow(label, method_page(name or label.split("(", 1)[0]), cells)


def _delta_cell(g: Group, row: Row) -> Cell:
    assert g.baseline is not None
    delta = next(d for r, d, _ in g.baseline.rows if r is row)
    return delta


def _ratio_cell(g: Group, row: Row, axis: str) -> Cell:
    assert g.baseline is not None
    i = next((i for i, c in enumerate(g.cost_cols) if c.name == axis), None)
    if i is None:
        return Cell(fmt.DASH, None, row.anchor, f"{axis} is not measured on profile {g.profile_id}")
    ratios = next(rs for r, _, rs in g.baseline.rows if r is row)
    c = ratios[i]
    return Cell(c.text, c.value, c.anchor, c.note, "", _better(None if c.value is None else c.value - 1.0, g.cost_cols[i].direction))
