"""The report's view model, built from records by pure functions.

Records are grouped by (suite@version, dataset id + checksum, profile id): only records in one
group are ranked together. Within a group each result key shows its latest `ok` record.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import pareto
from ..records import suite_version
from ..stats import bootstrap_cis
from ..suites.axes import TASK_BASELINE
from . import axes, dominance, fmt
from .details import Detail, record_detail
from .load import Loaded, load_results, sidecar_values
from .plot import Datum, Plot, scatter
from .slugs import group_page, method_name_of


@dataclass(frozen=True)
class ReportOptions:
    baseline: str | None = None  # default: bm25 where a group has it
    budgets: tuple[tuple[str, float], ...] = ()  # (axis, value) from --budget
    title: str = "sparsebench leaderboard"
    generated_at: str | None = None  # shown only when given: the page is otherwise deterministic
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0


@dataclass
class Cell:
    """One number on the page, linked to the record it came from."""

    text: str
    value: float | None
    anchor: str
    note: str = ""
    unit: str = ""  # shown next to the number only when it differs from its column's unit
    cls: str = ""


@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    kind: str  # "metric", "cost" or "proxy"
    direction: str
    description: str = ""


@dataclass
class Row:
    anchor: str
    method: str
    family: str
    method_name: str  # the registry name of the outermost method: its card
    runs: int
    label_suffix: str  # disambiguates two keys with the same method id (different settings)
    profile_matched: bool
    contention: str  # why the costs are suspect (other runs measured at the same time); "" if not
    main: Cell
    n_queries: int | None
    ci_lo: float | None
    ci_hi: float | None
    ci_note: str
    metrics: list[Cell]
    costs: list[Cell]
    record: dict = field(repr=False)
    params: list[str] = field(default_factory=list)  # "name=value" of the top-level parameters, for the filter
    per_query: dict[str, float] | None = field(default=None, repr=False)  # main metric (NLL for perplexity) by query
    spread: list[tuple[float, float] | None] = field(default_factory=list)  # cost range over the key's ok repeats
    ci_on_log: bool = False  # per_query holds NLLs: the interval is of their mean, then exp (a perplexity)

    @property
    def label(self) -> str:
        return self.method + self.label_suffix


@dataclass
class FrontierEntry:
    row: Row
    cost: Cell
    main: Cell
    on_frontier: bool
    verdict: dominance.Verdict | None = None  # None: the point is not on the plot (no value)


@dataclass
class FrontierView:
    axis: Column
    entries: list[FrontierEntry]
    plot: Plot | None
    notes: list[str]


@dataclass
class SweepView:
    """One family's methods on one cost axis, each method's sweep a connected curve."""

    family: str
    axis: Column
    plot: Plot


@dataclass
class BudgetLine:
    axis: Column
    budget: float
    budget_text: str
    source: str
    source_anchor: str  # the baseline record a budget came from; empty for --budget and medians
    best: Row | None
    main: Cell | None
    cost: Cell | None


@dataclass
class BaselineView:
    method: str
    anchor: str
    rows: list[tuple[Row, Cell, list[Cell]]]  # row, main-metric delta, cost ratios (cost_cols order)


@dataclass
class Failure:
    anchor: str
    method: str
    status: str
    error: str
    finished_at: str
    run_id: str
    later_ok: bool


@dataclass
class Group:
    index: int
    suite: str
    task: str
    dataset_id: str
    checksum: str
    profile_id: str
    fingerprints: list[str]
    main_metric: str
    metric_cols: list[Column]
    cost_cols: list[Column]
    rows: list[Row]
    frontiers: list[FrontierView]
    budgets: list[BudgetLine]
    baseline: BaselineView | None
    baseline_note: str
    failures: list[Failure]
    details: list[Detail]
    notes: list[str]
    page: str = ""  # the group's page in the site, relative to the site root
    sweeps: list[SweepView] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    param_options: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"group-{self.index}"

    @property
    def latest(self) -> str:
        """When the newest shown record finished (ISO text), for the index."""
        return max((str(r.record.get("finished_at", "")) for r in self.rows), default="")

    @property
    def name(self) -> str:
        return f"{self.suite} \u00b7 {self.dataset_id} \u00b7 {self.profile_id}"


@dataclass
class Report:
    title: str
    generated_at: str | None
    files: list[str]
    n_records: int
    groups: list[Group]
    separation: str  # why groups are shown apart; empty with a single group
    confidence: float
    resamples: int


def build_report(results_dir: Path, options: ReportOptions | None = None) -> Report:
    options = options or ReportOptions()
    loaded = load_results(results_dir)
    anchors = _Anchors()
    keyed: dict[tuple[str, str, str, str], list[dict]] = {}
    for rec in loaded.records:
        keyed.setdefault(group_key(rec), []).append(rec)
    groups = [
        _group(i, gk, recs, loaded, options, anchors)
        for i, (gk, recs) in enumerate(sorted(keyed.items(), key=lambda kv: _group_sort(kv[0])), 1)
    ]
    return Report(
        title=options.title,
        generated_at=options.generated_at,
        files=loaded.files,
        n_records=len(loaded.records),
        groups=groups,
        separation=separation_reason([g for g, _ in keyed.items()]),
        confidence=options.confidence,
        resamples=options.resamples,
    )


def check_options(report: Report, options: ReportOptions) -> None:
    """A baseline or budget axis that appears in no group is a user error (a typo, usually)."""
    from ..errors import BenchError

    if options.baseline and not any(g.baseline for g in report.groups):
        methods = sorted({r.method for g in report.groups for r in g.rows})
        raise BenchError(f"--baseline {options.baseline}: no ok record of that method id in the results "
                         f"(methods: {', '.join(methods[:12])}{', ...' if len(methods) > 12 else ''})")
    axes_seen = {c.name for g in report.groups for c in g.cost_cols}
    for axis, _ in options.budgets:
        if axis not in axes_seen:
            raise BenchError(f"--budget {axis}=...: no record has a cost axis named {axis!r} (axes: {', '.join(sorted(axes_seen))})")


def group_key(rec: dict) -> tuple[str, str, str, str]:
    """(suite, dataset id, checksum, profile); a task's model is part of the dataset id shown,
    as `data / model`, since quality on one model is not comparable with another's."""
    ds = rec["dataset"]
    data_id = str(ds.get("id", ""))
    model = rec.get("model")
    if isinstance(model, dict) and model.get("id"):
        data_id = f"{data_id} / {model['id']}"
    return (rec["suite"], data_id, str(ds.get("checksum", "") or ""), str(rec["profile"].get("id", "")))


def _group_sort(gk: tuple[str, str, str, str]) -> tuple:
    name, _, version = gk[0].partition("@")
    return (name, suite_version(gk[0]) or 0, version, gk[1], gk[2], gk[3])


def separation_reason(keys: list[tuple[str, str, str, str]]) -> str:
    if len(keys) < 2:
        return ""
    parts = []
    if len({k[0].partition("@")[0] for k in keys}) > 1:
        parts.append("suite")
    names = Counter(k[0].partition("@")[0] for k in keys)
    if len({k[0] for k in keys}) > len(names):
        parts.append("suite version")
    if len({(k[1], k[2]) for k in keys}) > 1:
        parts.append("dataset")
    if len({k[3] for k in keys}) > 1:
        parts.append("profile")
    why = ["results of different suite versions are never ranked together"] if "suite version" in parts else []
    if "profile" in parts:
        why.append("costs are only comparable within a profile")
    if "dataset" in parts:
        why.append("quality on different data is not comparable")
    return f"{len(keys)} groups shown separately: different {' / '.join(parts)}" + (f"; {', '.join(why)}." if why else ".")


class _Anchors:
    """Anchor ids: `rec-` and hex only (the record key, or a digest of it), unique on the page."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, base: str) -> str:
        anchor, n = base, 1
        while anchor in self.used:
            n += 1
            anchor = f"{base}-{n}"
        self.used.add(anchor)
        return anchor


def _latest_first(rec: dict, loaded: Loaded) -> tuple:
    return (str(rec.get("finished_at")), str(rec.get("started_at")), loaded.order[id(rec)])


def _group(index: int, gk: tuple[str, str, str, str], recs: list[dict], loaded: Loaded, options: ReportOptions, anchors: _Anchors) -> Group:
    suite, dataset_id, checksum, profile_id = gk
    by_key: dict[str, list[dict]] = {}
    for rec in recs:
        by_key.setdefault(rec["key"], []).append(rec)
    latest_ok = {}
    for key, rs in by_key.items():
        oks = [r for r in rs if r["status"] == "ok"]
        if oks:
            latest_ok[key] = max(oks, key=lambda r: _latest_first(r, loaded))
    shown = sorted(latest_ok.values(), key=lambda r: (r["method"], r["key"]))
    task = Counter(r["task"] for r in recs).most_common(1)[0][0]
    main_metric = Counter(r["main_metric"] for r in shown).most_common(1)[0][0] if shown else ""
    notes = []
    if len({r["main_metric"] for r in shown}) > 1:
        notes.append(f"records disagree on the main metric; {main_metric} is used for ranking")

    metric_cols = _metric_columns(shown, main_metric)
    cost_cols = _cost_columns(shown, task)
    method_counts = Counter(r["method"] for r in shown)
    rows = []
    for rec in shown:
        anchor = anchors.take("rec-" + fmt.anchor_part(rec["key"]))
        row = _row(rec, anchor, len(by_key[rec["key"]]), method_counts, main_metric, metric_cols, cost_cols, loaded, options)
        row.spread = [_spread([r for r in by_key[rec["key"]] if r["status"] == "ok"], c) for c in cost_cols]
        rows.append(row)
    _intervals(rows, options)
    main_dir = metric_cols[0].direction if metric_cols else "higher"
    rows.sort(key=lambda r: (-_signed(r.main.value, main_dir), r.label, r.anchor))

    default_base = TASK_BASELINE.get(task)
    base_id = options.baseline or (default_base if any(r.method == default_base for r in rows) else None)
    base_row = _pick_baseline(rows, base_id)
    baseline_note = ""
    if options.baseline and base_row is None:
        baseline_note = f"baseline {options.baseline} has no ok record in this group"
    frontiers = [_frontier(col, i, rows, main_metric, main_dir) for i, col in enumerate(cost_cols)]
    sweeps = [sv for i, col in enumerate(cost_cols) for sv in _sweeps(col, i, rows, main_metric, main_dir)]
    budgets = [line for col in cost_cols for line in _budgets(col, cost_cols.index(col), rows, base_row, options, main_dir)]
    baseline = _baseline(base_row, rows, cost_cols, main_dir) if base_row else None

    failures, details = [], [record_detail(r.anchor, r.record, r.runs) for r in rows]
    for rec in sorted((r for r in recs if r["status"] != "ok"), key=lambda r: (*_latest_first(r, loaded), r["method"])):
        anchor = anchors.take("rec-" + fmt.anchor_part(rec["key"]) + "-" + fmt.anchor_part(f"{rec['run_id']}|{rec['started_at']}")[:8])
        later_ok = rec["key"] in latest_ok and _latest_first(latest_ok[rec["key"]], loaded) > _latest_first(rec, loaded)
        failures.append(Failure(anchor, rec["method"], rec["status"], str(rec.get("error")), rec["finished_at"], rec["run_id"], later_ok))
        details.append(record_detail(anchor, rec, len(by_key[rec["key"]])))
    fingerprints = sorted({str(r["profile"].get("fingerprint")) for r in recs})
    unmatched = sum(1 for r in rows if not r.profile_matched)
    if unmatched:
        notes.append(f"{unmatched} shown record(s) ran on a machine that did not match profile {profile_id}")
    contended = sum(1 for r in rows if r.contention)
    if contended:
        notes.append(f"{contended} shown record(s) were measured while other sparsebench runs were measuring on the same "
                     "machine (marked contended): their costs are likely inflated")
    return Group(index, suite, task, dataset_id, checksum, profile_id, fingerprints, main_metric, metric_cols, cost_cols,
                 rows, frontiers, budgets, baseline, baseline_note, failures, details, notes,
                 page=group_page(gk), sweeps=sweeps, families=sorted({r.family for r in rows}),
                 param_options=sorted({t for r in rows for t in r.params}))


def _spread(oks: list[dict], col: Column) -> tuple[float, float] | None:
    """The cost's range over a key's ok records in the column's unit (a single run: its value)."""
    values = [v for r in oks if isinstance(q := r["costs"].get(col.name), dict) and str(q.get("unit", "")) == col.unit
              and (v := fmt.as_float(q.get("value"))) is not None]
    return (min(values), max(values)) if values else None


def _param_tokens(rec: dict) -> list[str]:
    """`name=value` for each scalar top-level parameter (nested methods show as their id)."""
    params = rec.get("params") if isinstance(rec.get("params"), dict) else {}
    out = []
    for k, v in sorted(params.items()):
        if isinstance(v, (str, int, float, bool)) or v is None:
            text = v if isinstance(v, str) else json.dumps(v)
            out.append(f"{k}={text}")
    return out


def _intervals(rows: list[Row], options: ReportOptions) -> None:
    """Bootstrap intervals of every row's main metric, rows with equal query counts in one batch
    (the same resamples `bootstrap_ci` would draw for each: same seed, same stream)."""
    by_n: dict[int, list[Row]] = {}
    for r in rows:
        if r.per_query:
            by_n.setdefault(len(r.per_query), []).append(r)
    for batch in by_n.values():
        cis = bootstrap_cis([list(r.per_query.values()) for r in batch], options.confidence, options.resamples, options.seed)  # type: ignore[union-attr]
        for r, (lo, hi) in zip(batch, cis):
            on_log = r.ci_on_log
            r.ci_lo, r.ci_hi = (math.exp(lo), math.exp(hi)) if on_log else (lo, hi)
            r.ci_note = (f"{options.confidence:.0%} percentile bootstrap over {len(r.per_query)} "  # type: ignore[arg-type]
                         f"{'windows (of the mean NLL, then exp)' if on_log else 'queries'}, {options.resamples} resamples, seed {options.seed}")


def _metric_columns(shown: list[dict], main_metric: str) -> list[Column]:
    names = {n for r in shown for n in r["metrics"]}
    ordered = ([main_metric] if main_metric in names else []) + sorted(names - {main_metric})
    cols = []
    for name in ordered:
        units = Counter(str(r["metrics"][name].get("unit", "")) for r in shown if name in r["metrics"])
        dirs = Counter(str(r["metrics"][name].get("direction", "higher")) for r in shown if name in r["metrics"])
        direction = dirs.most_common(1)[0][0]
        cols.append(Column(name, _common(units), "metric", direction if direction in ("higher", "lower") else "higher"))
    return cols


def _cost_columns(shown: list[dict], task: str) -> list[Column]:
    names = {n for r in shown for n in r["costs"]}
    proxies = {n for r in shown for n, q in r["costs"].items() if q.get("proxy") is True}
    cols = []
    for name in axes.order(task, names, proxies):
        units = Counter(str(r["costs"][name].get("unit", "")) for r in shown if name in r["costs"])
        cols.append(Column(name, _common(units), "proxy" if name in proxies else "cost", axes.direction(task, name), axes.description(task, name)))
    return cols


def _common(units: Counter) -> str:
    """The most frequent unit (ties broken alphabetically), shown in the column header."""
    return min(units.items(), key=lambda kv: (-kv[1], kv[0]))[0] if units else ""


def _row(rec: dict, anchor: str, runs: int, method_counts: Counter, main_metric: str, metric_cols: list[Column],
         cost_cols: list[Column], loaded: Loaded, options: ReportOptions) -> Row:
    metrics = [_quantity_cell(rec["metrics"].get(c.name), c, anchor, fmt.metric) for c in metric_cols]
    costs = [_quantity_cell(rec["costs"].get(c.name), c, anchor, fmt.number) for c in cost_cols]
    main = metrics[0] if metric_cols and metric_cols[0].name == main_metric else Cell(fmt.DASH, None, anchor, "no main metric")
    ci_lo = ci_hi = None
    # A perplexity is exp(mean NLL), not a mean of per-window perplexities: resample the NLLs.
    q = rec["metrics"].get(main_metric)
    on_log = isinstance(q, dict) and str(q.get("aggregation", "")).startswith("exp(mean NLL")
    base, sep, text = main_metric.partition("/")
    values, ci_note = sidecar_values(loaded.root, rec, "nll" + sep + text if on_log else main_metric, loaded.where.get(id(rec), ""))
    if values is not None:
        ci_note = ""  # `_intervals` fills the interval and its note for the whole group
    suffix = f" [{fmt.anchor_part(rec['key'])[:8]}]" if method_counts[rec["method"]] > 1 else ""
    matched = rec["profile"].get("matched", True) is not False
    n = rec["metrics"].get(main_metric, {}).get("n") if isinstance(rec["metrics"].get(main_metric), dict) else None
    n_queries = n if isinstance(n, int) and not isinstance(n, bool) else None
    return Row(anchor, rec["method"], str(rec["family"]), method_name_of(rec), runs, suffix, matched, contention_note(rec), main, n_queries,
               ci_lo, ci_hi, ci_note, metrics, costs, rec, _param_tokens(rec), values, ci_on_log=on_log and values is not None)


def contention_note(rec: dict) -> str:
    """Why a record's costs are suspect, or "": its runner saw other runs measuring at the same time.

    The field is optional (schema-1 records predate it); its shape is checked by records.validate."""
    c = rec.get("contention")
    if not isinstance(c, dict) or c.get("detected") is not True:
        return ""
    n = c.get("max_other_runs")
    return (f"measured while up to {n} other sparsebench run(s) were measuring on this machine "
            f"({c.get('samples')} samples): its costs are likely inflated and not comparable with uncontended ones")


def _quantity_cell(q: Any, col: Column, anchor: str, formatter) -> Cell:
    if not isinstance(q, dict):
        return Cell(fmt.DASH, None, anchor, "not measured for this method")
    value = fmt.as_float(q.get("value"))
    note = str(q.get("note") or "")
    if value is None and not note:
        note = "no value recorded" if q.get("value") is None else "recorded value is not a finite number"
    unit = str(q.get("unit", ""))
    n = q.get("n")
    extra = f"n={n}" if n is not None else ""
    title = "; ".join(x for x in (note, extra) if x)
    return Cell(formatter(value), value, anchor, title, unit if unit != col.unit else "")


def _comparable(row: Row, i: int) -> float | None:
    """A cost usable against others in its column: measured, and in the column's unit."""
    cell = row.costs[i]
    return cell.value if not cell.unit else None


def _frontier(col: Column, i: int, rows: list[Row], main_metric: str, main_dir: str) -> FrontierView:
    objectives = [(lambda r: r.main.value, main_dir), (lambda r: _comparable(r, i), col.direction)]
    on = {id(r) for r in pareto.frontier(rows, objectives)}
    sign = 1 if col.direction == "lower" else -1

    def order(r: Row) -> tuple:
        v = _comparable(r, i)
        return (v is None, sign * v if v is not None else 0.0, -_signed(r.main.value, main_dir), r.label)

    drawn = [r for r in rows if _comparable(r, i) is not None and r.main.value is not None]
    verdicts = dominance.classify([_dpoint(r, i, id(r) in on) for r in drawn], col.direction, main_dir)
    entries = [FrontierEntry(r, r.costs[i], r.main, id(r) in on, verdicts.get(r.anchor)) for r in sorted(rows, key=order)]
    notes = []
    left_out = [e.row.label for e in entries if e.verdict is None]
    if left_out:
        notes.append(f"left out (no value, or a unit other than {col.unit or 'the column unit'}): {', '.join(left_out)}")
    plot = scatter([_datum(e.row, i, e.on_frontier, e.verdict) for e in entries if e.verdict is not None],
                   x_label=f"{col.name} ({col.unit})" if col.unit else col.name, y_label=main_metric,
                   x_direction=col.direction, y_direction=main_dir)
    return FrontierView(col, entries, plot, notes)


def _dpoint(r: Row, i: int, on_frontier: bool) -> dominance.Point:
    cost = _comparable(r, i)
    lo, hi = r.spread[i] or (cost, cost)
    return dominance.Point(r.anchor, r.main.value, cost, min(lo, cost), max(hi, cost), r.per_query, on_frontier)  # type: ignore[arg-type,type-var]


def _datum(r: Row, i: int, on_frontier: bool, verdict: dominance.Verdict | None) -> Datum:
    return Datum(r.label, r.anchor, _comparable(r, i), r.main.value, on_frontier,  # type: ignore[arg-type]
                 verdict.status if verdict else "", r.family, r.method_name, verdict.reason if verdict else "")


def _sweeps(col: Column, i: int, rows: list[Row], main_metric: str, main_dir: str) -> list[SweepView]:
    """Per family, each method's points on this axis joined through its own frontier."""
    out = []
    for family in sorted({r.family for r in rows}):
        mine = [r for r in rows if r.family == family and _comparable(r, i) is not None and r.main.value is not None]
        if not mine:
            continue
        on = {id(r) for r in pareto.frontier(mine, [(lambda r: r.main.value, main_dir), (lambda r: _comparable(r, i), col.direction)])}
        plot = scatter([_datum(r, i, id(r) in on, None) for r in mine], x_label=f"{col.name} ({col.unit})" if col.unit else col.name,
                       y_label=main_metric, x_direction=col.direction, y_direction=main_dir, sweeps=True)
        if plot is not None:
            out.append(SweepView(family, col, plot))
    return out


def _budgets(col: Column, i: int, rows: list[Row], base: Row | None, options: ReportOptions, main_dir: str) -> list[BudgetLine]:
    values = [v for r in rows if (v := _comparable(r, i)) is not None]
    if not values:
        return []
    budgets: list[tuple[float, str, str]] = []
    if base is not None and (v := _comparable(base, i)) is not None:
        budgets.append((v, f"baseline {base.label}", base.anchor))
    budgets += [(v, "--budget", "") for axis, v in options.budgets if axis == col.name]
    if not budgets:
        budgets.append((statistics.median(values), "median of this group", ""))
    lines, seen = [], set()
    for budget, source, source_anchor in budgets:
        if budget in seen:
            continue
        seen.add(budget)
        within = [r for r in rows if (v := _comparable(r, i)) is not None and r.main.value is not None
                  and (v <= budget if col.direction == "lower" else v >= budget)]
        sign = 1 if col.direction == "lower" else -1
        best = min(within, key=lambda r: (-_signed(r.main.value, main_dir), sign * _comparable(r, i), r.label), default=None)  # type: ignore[operator,arg-type]
        text = ("\u2264 " if col.direction == "lower" else "\u2265 ") + fmt.number(budget) + (f" {col.unit}" if col.unit else "")
        lines.append(BudgetLine(col, budget, text, source, source_anchor, best,
                                best.main if best else None, best.costs[i] if best else None))
    return lines


def _pick_baseline(rows: list[Row], method: str | None) -> Row | None:
    if method is None:
        return None
    cands = [r for r in rows if r.method == method]
    return max(cands, key=lambda r: (str(r.record["finished_at"]), r.anchor), default=None)


def _baseline(base: Row, rows: list[Row], cost_cols: list[Column], main_dir: str) -> BaselineView:
    out = []
    for r in rows:
        d = r.main.value - base.main.value if r.main.value is not None and base.main.value is not None else None
        delta = Cell(fmt.delta(d), d, r.anchor, "", "", _better(d, main_dir))
        ratios = []
        for i, col in enumerate(cost_cols):
            a, b = _comparable(r, i), _comparable(base, i)
            ratio = a / b if a is not None and b not in (None, 0.0) else None
            note = "" if ratio is not None else "no ratio: a value is missing, zero, or in another unit"
            ratios.append(Cell(fmt.ratio(ratio), ratio, r.anchor, note, "",
                               _better(None if ratio is None else ratio - 1.0, col.direction)))
        out.append((r, delta, ratios))
    return BaselineView(base.label, base.anchor, out)


def _signed(value: float | None, direction: str) -> float:
    """A quality value as "larger is better" (missing values rank last), for sorting."""
    if value is None:
        return float("-inf")
    return value if direction == "higher" else -value


def _better(diff: float | None, direction: str) -> str:
    if diff is None or abs(diff) < 1e-12:
        return ""
    return "better" if (diff > 0) == (direction == "higher") else "worse"
