"""`bench compare NEW --baselines A,B`: a method against co-run baselines, with a CI exit code.

Everything NEW and the baselines need is measured first on the current hardware profile (keys
already recorded are reused, so a second call runs nothing). Quality is compared per query,
paired by query id, with a t-test and a sign-flip permutation test; the permutation p-values are
Holm-corrected across baselines (per metric), because a gate that compares against several
baselines must not fire more often than `--alpha` by chance. Costs are compared as ratios within
the profile, over `--timing-repeats` independent runs per key, since one latency sample says
nothing about run-to-run noise.

Exit codes:
  0  no requested gate failed: NEW is better, tied, or not significantly different
  1  a requested gate failed: significantly worse on the main metric (--fail-if-worse), or
     slower beyond --latency-tolerance even in the most favourable pairing of repeats
  2  bad input: unknown method or suite, a baseline equal to NEW, differing query sets,
     a latency figure withheld when the latency gate needs it (raised as BenchError)
  3  a run needed for the comparison failed (its record says why)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BenchError
from .methodid import split_method_ids

log = logging.getLogger(__name__)

EXIT_OK, EXIT_GATE, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 0, 1, 2, 3
LATENCY_AXIS = "latency_p50_ms"

HELP_EPILOG = """\
exit codes:
  0  no requested gate failed (NEW better, tied, or not significantly different)
  1  a requested gate failed: --fail-if-worse (significantly worse on the main metric after
     Holm correction across baselines) or --latency-tolerance (slower than a baseline by more
     than the tolerance even for min NEW p50 vs max baseline p50 over the repeats)
  2  bad input (unknown method, suite or profile; differing query sets; ...)
  3  a run needed for the comparison failed

examples:
  bench compare "bm25(k1=0.9)" --baselines bm25,minilm --fail-if-worse
  bench compare bm25 --baselines "bm25(b=0.4)" --latency-tolerance 0.10 --timing-repeats 5
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "compare",
        help="compare a method against baselines co-run on this profile (deltas, ratios, paired tests)",
        description="Compare NEW against baselines on the same suite, data and hardware profile; "
        "runs whatever is missing first.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("new", metavar="NEW", help="method id to evaluate, e.g. 'bm25(k1=0.9)'")
    p.add_argument("--baselines", required=True, metavar="A,B", help="baseline method ids, comma-separated (commas inside parentheses are kept)")
    p.add_argument("--suite", default="retrieval", help="suite name or path to a suite .yaml (default: retrieval)")
    p.add_argument("--dataset", help="dataset id as for bench run (default: the suite's)")
    p.add_argument("--dataset-name", metavar="NAME", help="name a beir: folder in records, as for bench run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a task setting or a method parameter, as for bench run")
    p.add_argument("--profile", help="declared hardware profile id (default: the one matching this machine)")
    p.add_argument("--profile-mismatch", choices=("refuse", "allow"), default="refuse",
                   help="run even if the machine does not match --profile (default: refuse)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    p.add_argument("--cache-dir", type=Path, help="cache for corpus encodings (default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    p.add_argument("--in-process", action="store_true", help="run methods in this process (debugging)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction (default: 0.05)")
    p.add_argument("--fail-if-worse", action="store_true", help="exit 1 when NEW is significantly worse than any baseline on the main metric")
    p.add_argument("--latency-tolerance", type=float, metavar="FRACTION",
                   help=f"exit 1 when NEW's {LATENCY_AXIS} exceeds a baseline's by more than FRACTION (0.10 = 10%%), noise-aware")
    p.add_argument("--timing-repeats", type=int, default=3, metavar="N",
                   help="ok records per key to compare costs over; missing ones are measured again (default: 3)")
    return p


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    metric: str
    direction: str
    new: float
    base: float
    delta: float
    p_ttest: float
    p_perm: float
    p_holm: float
    improved: int
    degraded: int
    n: int
    alpha: float = 0.05  # set with the Holm-adjusted p (apply_holm)

    @property
    def significant(self) -> bool:
        return self.p_holm < self.alpha

    @property
    def significantly_worse(self) -> bool:
        worse = self.delta < 0 if self.direction == "higher" else self.delta > 0
        return worse and self.significant


@dataclass(frozen=True)
class Spread:
    """One cost axis over the repeats of one key (None values, i.e. withheld figures, dropped)."""

    values: tuple[float, ...]
    unit: str

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass(frozen=True)
class CostRow:
    axis: str
    unit: str
    direction: str | None  # None for proxies and axes the task does not declare
    new: Spread
    base: Spread

    @property
    def ratio(self) -> float | None:
        """Median NEW over median baseline."""
        n, b = self.new.median, self.base.median
        return n / b if n is not None and b else None

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """(min NEW / max baseline, max NEW / min baseline): every pairing of repeats lies inside."""
        if not self.new.values or not self.base.values or min(self.base.values) <= 0:
            return None
        return min(self.new.values) / max(self.base.values), max(self.new.values) / min(self.base.values)


@dataclass(frozen=True)
class Comparison:
    new: str
    baseline: str
    metrics: list[MetricRow]
    costs: list[CostRow]
    dominated_on: list[str]  # cost axes on which the baseline Pareto-dominates NEW (with the main metric)
    items: str = "queries"  # what the paired values are per: queries, or an lm suite's windows


@dataclass(frozen=True)
class Measured:
    """What was measured for one method id: its latest ok records (newest last)."""

    method: str
    records: list[dict[str, Any]]

    @property
    def latest(self) -> dict[str, Any]:
        return self.records[-1]


# --- pure comparison logic (unit-tested without running anything) -----------------------------


def paired_rows(
    new_pq: dict[str, dict[str, float]],
    base_pq: dict[str, dict[str, float]],
    metrics: Sequence[str],
    directions: dict[str, str],
    where: str,
    log_metrics: frozenset[str] = frozenset(),
) -> list[MetricRow]:
    """Per-metric paired tests over the same query ids; Holm p is filled in later.

    `log_metrics` are perplexities (exp of a mean NLL): tested on the NLLs, shown as exp."""
    from .stats import paired_test

    if set(new_pq) != set(base_pq):
        only_new, only_base = sorted(set(new_pq) - set(base_pq)), sorted(set(base_pq) - set(new_pq))
        raise BenchError(
            f"{where}: the per-query files cover different queries ({len(only_new)} only in NEW, e.g. {only_new[:3]}; "
            f"{len(only_base)} only in the baseline, e.g. {only_base[:3]}); compare runs on the same dataset"
        )
    rows = []
    for m in metrics:
        # A metric of one part of the data (perplexity/austen) pairs that part's items only.
        qids = sorted(q for q in new_pq if m in new_pq[q] and m in base_pq[q])
        if not qids:
            continue
        direction = directions.get(m, "higher")
        key = m
        if m in log_metrics:  # exp(mean NLL): test the per-item NLLs, show the perplexities
            base, sep, part = m.partition("/")
            key = "nll" + sep + part
            qids = [q for q in qids if key in new_pq[q] and key in base_pq[q]]
        a = [new_pq[q][key] for q in qids]
        b = [base_pq[q][key] for q in qids]
        t = paired_test(a, b)
        new_v, base_v = sum(a) / len(a), sum(b) / len(b)
        if m in log_metrics:
            new_v, base_v = math.exp(new_v), math.exp(base_v)
        # paired_test counts items where new > base; for a lower-is-better metric those got worse.
        better, worse = (t.improved, t.degraded) if direction == "higher" else (t.degraded, t.improved)
        rows.append(MetricRow(
            metric=m, direction=direction, new=new_v, base=base_v,
            delta=new_v - base_v if m in log_metrics else t.mean_delta, p_ttest=t.p_ttest, p_perm=t.p_permutation,
            p_holm=t.p_permutation, improved=better, degraded=worse, n=t.n,
        ))
    return rows


def apply_holm(per_baseline: list[list[MetricRow]], alpha: float) -> list[list[MetricRow]]:
    """Holm-correct each metric's permutation p-values across baselines (one family per metric).

    The permutation test is the one gated on: per-query IR metrics are bounded and often
    bimodal, so the t-test's normality assumption is weak; the t-test p is shown alongside.
    """
    from dataclasses import replace

    from .stats import holm

    if not per_baseline:
        return []
    out = [list(rows) for rows in per_baseline]
    for j in range(len(per_baseline[0])):
        adjusted = holm([rows[j].p_perm for rows in per_baseline])
        for i, p in enumerate(adjusted):
            out[i][j] = replace(out[i][j], p_holm=p, alpha=alpha)
    return out


def cost_rows(new_recs: Sequence[dict], base_recs: Sequence[dict], axes: dict[str, Any]) -> list[CostRow]:
    """Every cost either side reported, declared axes first (in the task's order), then proxies."""
    names = [a for a in axes if any(a in r["costs"] for r in [*new_recs, *base_recs])]
    names += sorted({c for r in [*new_recs, *base_recs] for c in r["costs"]} - set(names))
    rows = []
    for name in names:
        unit = next((r["costs"][name].get("unit", "") for r in [*new_recs, *base_recs] if name in r["costs"]), "")
        axis = axes.get(name)
        rows.append(CostRow(name, unit, axis.direction if axis else None, _spread(new_recs, name, unit), _spread(base_recs, name, unit)))
    return rows


def _spread(recs: Sequence[dict], name: str, unit: str) -> Spread:
    vals = tuple(float(r["costs"][name]["value"]) for r in recs if r["costs"].get(name, {}).get("value") is not None)
    return Spread(vals, unit)


def dominated_axes(new_main: float, base_main: float, main_direction: str, costs: Sequence[CostRow]) -> list[str]:
    """Cost axes on which the baseline Pareto-dominates NEW on (main metric, axis), medians."""
    from .pareto import dominates

    out = []
    for row in costs:
        if row.direction is None or row.new.median is None or row.base.median is None:
            continue  # no direction (a proxy) or not measured: cannot dominate on it
        objectives = [(lambda x: x[0], main_direction), (lambda x: x[1], row.direction)]
        if dominates((base_main, row.base.median), (new_main, row.new.median), objectives):
            out.append(row.axis)
    return out


def latency_gate(new: Spread, base: Spread, tolerance: float) -> bool:
    """True (fail) when even min NEW over max baseline exceeds 1 + tolerance.

    Using the most favourable pairing of the repeats means run-to-run noise alone cannot fail a
    change: the gate fires only when every repeat of NEW is slower than every repeat of the
    baseline by more than the tolerance.
    """
    if not new.values or not base.values:
        raise BenchError(f"{LATENCY_AXIS} is not reported for every method (too few queries for a median?); cannot apply --latency-tolerance")
    return min(new.values) > (1.0 + tolerance) * max(base.values)


# --- running --------------------------------------------------------------------------------


def _canonical_ids(new: str, baselines: list[str], overrides: list[tuple[str, Any]]) -> tuple[str, list[str]]:
    """The ids the runner will record, so duplicates are refused before anything runs."""
    from . import registry
    from .runner import split_overrides

    _, per_method = split_overrides(overrides)

    def canon(mid: str) -> str:
        return str(registry.build(mid, None, per_method))

    new_c, base_c = canon(new), [canon(b) for b in baselines]
    if not base_c:
        raise BenchError("--baselines: give at least one baseline method id")
    if new_c in base_c:
        raise BenchError(f"NEW {new_c!r} is also a baseline; a method compared to itself says nothing")
    if len(set(base_c)) != len(base_c):
        raise BenchError(f"--baselines: duplicate method id in {', '.join(base_c)}")
    return new_c, base_c


def ensure_measured(args: argparse.Namespace, ids: list[str], overrides: list[tuple[str, Any]]) -> tuple[dict[str, Measured], Any, Any] | None:
    """Run what is missing, then top up each key to --timing-repeats ok records (forced runs).

    Returns None when a needed run failed.
    """
    from .cache import default_cache_dir
    from .hardware import choose_profile
    from .records import read
    from .runner import RunOptions, run_suite

    if args.timing_repeats < 1:
        raise BenchError("--timing-repeats must be at least 1")
    profile = choose_profile(args.profile, args.profile_mismatch == "allow")
    if not profile.matched:
        log.warning("comparing under profile %s although: %s", profile.profile.id, "; ".join(profile.problems))
    opts = RunOptions(
        results_dir=args.results,
        cache_dir=args.cache_dir or default_cache_dir(),
        isolate=not args.in_process,
        progress=not args.no_progress and sys.stderr.isatty(),
        device="cuda" if profile.profile.device == "cuda" else "cpu",
        dataset_name=args.dataset_name,
    )
    summary, suite = run_suite(args.suite, args.dataset, profile, opts, ids, overrides)
    if summary.failed:
        return None
    key_of = {s.method: s.key for s in summary.specs}
    # Task settings only: per-method overrides are already part of the canonical ids.
    settings_only = [(k, v) for k, v in overrides if "." not in k]
    forced = dataclasses.replace(opts, force=True)
    while True:
        ok = _ok_records(read(args.results / f"{suite.name}.jsonl"), key_of)
        short = [m for m in ids if len(ok[m]) < args.timing_repeats]
        if not short:
            break
        log.info("timing repeats: measuring %s again (%d of %d ok records)", ", ".join(short),
                 min(len(ok[m]) for m in short), args.timing_repeats)
        again, _ = run_suite(args.suite, args.dataset, profile, forced, short, settings_only)
        if again.failed or again.ran + again.skipped == 0:  # nothing measured or recorded: do not spin
            if not again.failed:
                log.error("could not measure %s again", ", ".join(short))
            return None
    measured = {m: Measured(m, ok[m][-args.timing_repeats:]) for m in ids}
    for m in measured.values():
        contended = [r["run_id"] for r in m.records if r.get("contention", {}).get("detected")]
        if contended:
            log.warning("%s: %d of its %d timing record(s) were measured while other sparsebench runs were measuring "
                        "(run_id %s); its cost ratios may be skewed: --force a quiet run", m.method, len(contended),
                        len(m.records), ", ".join(contended))
    return measured, suite, profile


def _ok_records(records: list[dict], key_of: dict[str, str]) -> dict[str, list[dict]]:
    by_key: dict[str, list[dict]] = {k: [] for k in key_of.values()}
    for rec in records:
        if rec["status"] == "ok" and rec["key"] in by_key:
            by_key[rec["key"]].append(rec)
    return {m: by_key[k] for m, k in key_of.items()}


def compare_all(new: Measured, baselines: list[Measured], results_dir: Path, suite: Any, alpha: float) -> list[Comparison]:
    from .sidecars import read_sidecar
    from .suites.tasks import get_task

    task = get_task(suite.task)
    axes = task.cost_axes
    # A metric some methods cannot report (recall_vs_exact@10 needs an exact reference) is
    # compared only where both sides have it: paired_rows pairs the queries that carry it.
    metrics = [m for m in suite.metrics if m in new.latest["metrics"]]
    directions = {m: new.latest["metrics"][m].get("direction", "higher") for m in metrics}
    log_metrics = frozenset(m for m in metrics if str(new.latest["metrics"][m].get("aggregation", "")).startswith("exp(mean NLL"))
    new_pq = read_sidecar(results_dir, new.latest["per_query"])
    raw = [
        paired_rows(new_pq, read_sidecar(results_dir, b.latest["per_query"]), metrics, directions, f"{new.method} vs {b.method}",
                    log_metrics)
        for b in baselines
    ]
    corrected = apply_holm(raw, alpha)
    main = suite.main_metric
    out = []
    for b, rows in zip(baselines, corrected):
        costs = cost_rows(new.records, b.records, axes)
        main_row = next(r for r in rows if r.metric == main)
        out.append(Comparison(new.method, b.method, rows, costs, dominated_axes(main_row.new, main_row.base, main_row.direction, costs),
                              task.item_name))
    return out


# --- output -----------------------------------------------------------------------------------


def _num(x: float | None, pattern: str = "{:.4g}") -> str:
    return "-" if x is None else pattern.format(x)


def _p(x: float) -> str:
    return f"{x:.2g}" if x < 0.001 else f"{x:.4f}"


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


def render(c: Comparison, main_metric: str, repeats: int, n_baselines: int) -> str:
    n = c.metrics[0].n if c.metrics else 0
    lines = [f"{c.new} vs {c.baseline}  ({n} {c.items} paired by id; costs over {repeats} run(s) each)"]
    mrows = [["metric", "new", "baseline", "delta", "p t-test", "p perm", "p Holm", "improved", "degraded"]]
    for r in c.metrics:
        mark = "*" if r.significant else ""
        mrows.append([r.metric + (" (main)" if r.metric == main_metric else ""), f"{r.new:.4f}", f"{r.base:.4f}",
                      f"{r.delta:+.4f}", _p(r.p_ttest), _p(r.p_perm), _p(r.p_holm) + mark, str(r.improved), str(r.degraded)])
    lines += ["  " + x for x in _aligned(mrows)]
    crows = [["cost", "unit", "new", "baseline", "ratio new/base", "range (min-max)"]]
    for cr in c.costs:
        rng = cr.ratio_range
        crows.append([cr.axis, cr.unit or "-", _num(cr.new.median), _num(cr.base.median), _num(cr.ratio, "{:.3g}x"),
                      "-" if rng is None else f"{rng[0]:.3g}-{rng[1]:.3g}x"])
    lines += [""] + ["  " + x for x in _aligned(crows)]
    if c.dominated_on:
        lines.append(f"  Pareto (point estimates): {c.new} is dominated by {c.baseline} ({main_metric} vs {', '.join(c.dominated_on)})")
    else:
        lines.append(f"  Pareto: {c.new} is not dominated by {c.baseline} on any ({main_metric}, cost) pair")
    lines.append(f"  *: Holm-adjusted permutation p below alpha (Holm across {n_baselines} baseline(s), per metric)")
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from .registry import parse_override

    overrides = [parse_override(s) for s in args.overrides]
    new_id, base_ids = _canonical_ids(args.new, split_method_ids(args.baselines), overrides)
    if args.latency_tolerance is not None and args.latency_tolerance < 0:
        raise BenchError("--latency-tolerance must be a non-negative fraction, e.g. 0.10")
    got = ensure_measured(args, [new_id, *base_ids], overrides)
    if got is None:
        log.error("a run needed for the comparison failed; its record in %s says why", args.results)
        return EXIT_RUN_FAILED
    measured, suite, profile = got
    comparisons = compare_all(measured[new_id], [measured[b] for b in base_ids], args.results, suite, args.alpha)

    header = f"{suite.ref} on {measured[new_id].latest['dataset']['id']}, profile {profile.profile.id}; alpha {args.alpha:g}"
    body = "\n\n".join(render(c, suite.main_metric, args.timing_repeats, len(base_ids)) for c in comparisons)
    failures = gate_failures(comparisons, suite.main_metric, args.fail_if_worse, args.latency_tolerance)
    verdict = "\n".join(f"GATE FAILED: {f}" for f in failures) or "gates: passed"
    sys.stdout.write(f"\n{header}\n\n{body}\n\n{verdict}\n")
    return EXIT_GATE if failures else EXIT_OK


def gate_failures(comparisons: Sequence[Comparison], main_metric: str, fail_if_worse: bool, tolerance: float | None) -> list[str]:
    out = []
    for c in comparisons:
        main = next(r for r in c.metrics if r.metric == main_metric)
        if fail_if_worse and main.significantly_worse:
            out.append(f"{c.new} is significantly worse than {c.baseline} on {main_metric} "
                       f"(delta {main.delta:+.4f}, Holm-adjusted p {_p(main.p_holm)})")
        if tolerance is not None:
            row = next((r for r in c.costs if r.axis == LATENCY_AXIS), None)
            if row is None:
                raise BenchError(f"{LATENCY_AXIS} is not among the costs of {c.new} and {c.baseline}; cannot apply --latency-tolerance")
            try:
                slow = latency_gate(row.new, row.base, tolerance)
            except BenchError as e:
                raise BenchError(f"{c.new} vs {c.baseline}: {e}") from e
            if slow:
                out.append(f"{c.new} is slower than {c.baseline} on {LATENCY_AXIS} by more than {tolerance:.0%} in every "
                           f"pairing of repeats (best case {row.ratio_range[0]:.3f}x, median {row.ratio:.3f}x)")  # type: ignore[index]
    return out
