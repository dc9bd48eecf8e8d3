"""`bench export --format csv|parquet --out FILE`: records as one flat table, for notebooks.

One row per record. Nested fields are flattened into columns; parameters stay one JSON string
(methods have different parameters, and a column per parameter would mostly be empty); every
cost column carries its unit in its name (`latency_p50_ms [ms]`), because a number without its
unit must not leave the project. Exit codes: 0 written, 2 bad input (BenchError).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .errors import BenchError

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
BASE_COLUMNS = ("suite", "version", "method", "family", "params", "dataset", "profile", "fingerprint", "commit", "status",
                "key", "run_id", "started_at")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write records as one flat CSV or Parquet table (one row per record, units in cost column names)",
        description="Flatten results/*.jsonl into one table: one row per record.",
        epilog="exit codes: 0 written, 2 bad input (unknown format, corrupt results file)",
    )
    p.add_argument("--format", choices=FORMATS, required=True, help="csv, or parquet (via pyarrow)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    p.add_argument("--status", choices=("ok", "all"), default="ok", help="only ok records (default) or all of them")
    return p


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    name, _, version = rec["suite"].partition("@")
    row: dict[str, Any] = {
        "suite": name,
        "version": int(version) if version.isdigit() else None,
        "method": rec["method"],
        "family": rec["family"],
        "params": json.dumps(rec["params"], sort_keys=True),
        "dataset": rec["dataset"].get("id"),
        "profile": rec["profile"].get("id"),
        "fingerprint": rec["profile"].get("fingerprint"),
        "commit": rec["provenance"].get("git_commit"),
        "status": rec["status"],
        "key": rec["key"],
        "run_id": rec["run_id"],
        "started_at": rec["started_at"],
    }
    for metric, q in rec["metrics"].items():
        row[metric] = q.get("value")
    for axis, q in rec["costs"].items():
        row[cost_column(axis, q.get("unit", ""))] = q.get("value")
    return row


def cost_column(axis: str, unit: str) -> str:
    return f"{axis} [{unit}]" if unit else axis


def frame(results_dir: Path, status: str) -> Any:
    """A pandas DataFrame of every record (strictly read: a corrupt file is an error, not a gap)."""
    import pandas as pd

    from .records import read

    files = sorted(results_dir.glob("*.jsonl"))
    if not files:
        raise BenchError(f"{results_dir}: no results files (*.jsonl) to export")
    rows = [flatten(r) for f in files for r in read(f) if status == "all" or r["status"] == "ok"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    # Fixed columns first, then metrics and costs in the order first seen.
    return df[[*BASE_COLUMNS, *(c for c in df.columns if c not in BASE_COLUMNS)]]


def run(args: argparse.Namespace) -> int:
    df = frame(args.results, args.status)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        df.to_csv(args.out, index=False)
    else:
        df.to_parquet(args.out, index=False, engine="pyarrow")
    log.info("wrote %d record(s), %d columns to %s", len(df), len(df.columns), args.out)
    return 0
