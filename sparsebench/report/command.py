"""`bench report`: render results/ into the static leaderboard site (reports/index.html and its pages)."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from ..errors import BenchError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="render the HTML leaderboard site from a results directory",
        description="Render results/*.jsonl (and their per-query files) into a static site: OUT/index.html (a card per "
        "suite and profile), a page per suite x dataset x profile, a card per method and a cross-profile view. "
        "Every page opens from disk. Reads only the results directory; never runs anything.",
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory to read (default: ./results)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory; the site starts at OUT/index.html (default: ./reports)")
    p.add_argument("--baseline", metavar="METHOD_ID", help="method id for cost ratios and metric deltas (default: bm25 where a group has it)")
    p.add_argument("--budget", action="append", default=[], metavar="AXIS=VALUE",
                   help="a cost budget for the best-quality-within-budget table, e.g. latency_p50_ms=5; repeatable")
    p.add_argument("--title", default="sparsebench leaderboard", help="page title")
    p.add_argument("--generated-at", metavar="TEXT",
                   help="a stamp to show on the page (e.g. a date or CI run); without it the page depends only on the results")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for the quality intervals (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")


def parse_budget(text: str) -> tuple[str, float]:
    axis, sep, value = text.partition("=")
    axis = axis.strip()
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not axis or not math.isfinite(number):
        raise BenchError(f"--budget {text!r}: write AXIS=NUMBER, e.g. --budget latency_p50_ms=5")
    return axis, number


def run(args: argparse.Namespace) -> int:
    from .. import registry
    from .model import ReportOptions
    from .render import write_report

    if args.resamples < 1:
        raise BenchError(f"--resamples {args.resamples}: must be at least 1")
    options = ReportOptions(
        baseline=args.baseline,
        budgets=tuple(sorted(parse_budget(b) for b in args.budget)),
        title=args.title,
        generated_at=args.generated_at,
        resamples=args.resamples,
        seed=args.seed,
    )
    # The registry's cards as plain data: the reporter itself imports no method code.
    path = write_report(args.results, args.out, options, strict_options=True, catalogue=registry.catalogue())
    log.info("report: %s", path)
    return 0
