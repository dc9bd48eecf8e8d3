"""`bench export --format csv|parquet --out FILE`: records as one flat table, for notebooks.

One row per record. Nested fields are flattened into columns; parameters stay one JSON string
(methods have different parameters, and a column per parameter would mostly be empty); every
cost column carries its unit in its name (`latency_p50_ms [ms]`), because a number without its
unit must not leave the project. Records are read with `records.read`, as strictly as `bench
validate` reads them. In CSV, a text cell that a spreadsheet would take for a formula (starting
with = + - @, a tab or a carriage return) gets a leading `'`: record text is untrusted and must
not run in the spreadsheet of whoever opens the export. Numbers stay numbers; Parquet is typed
and left as is. Exit codes: 0 written, 2 bad input (BenchError).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .errors import BenchError
from .records import suite_version

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BASE_COLUMNS = ("suite", "version", "method", "family", "params", "dataset", "profile", "fingerprint", "commit", "status",
                "key", "run_id", "started_at")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write records as one flat CSV or Parquet table (one row per record, units in cost column names)",
        description="Flatten results/*.jsonl into one table: one row per record. In CSV, text cells starting "
        "with = + - @, a tab or CR get a leading ' so that a spreadsheet shows them instead of running them.",
        epilog="exit codes: 0 written, 2 bad input (unknown format, corrupt results file)",
    )
    p.add_argument("--format", choices=FORMATS, required=True, help="csv, or parquet (via pyarrow)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    p.add_argument("--status", choices=("ok", "all"), default="ok", help="only ok records (default) or all of them")
    return p


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    name, _, _ = rec["suite"].rpartition("@")
    row: dict[str, Any] = {
        "suite": name,
        "version": suite_version(rec["suite"]),
        "method": rec["method"],
        "family": rec["family"],
        "params": json.dumps(rec["params"], sort_keys=True),
        "dataset": _text(rec["dataset"].get("id")),
        "profile": _text(rec["profile"].get("id")),
        "fingerprint": _text(rec["profile"].get("fingerprint")),
        "commit": _text(rec["provenance"].get("git_commit")),
        "status": rec["status"],
        "key": rec["key"],
        "run_id": rec["run_id"],
        "started_at": rec["started_at"],
    }
    for metric, q in rec["metrics"].items():
        row[metric] = _number(q.get("value"))
    for axis, q in rec["costs"].items():
        row[cost_column(axis, _text(q.get("unit")) or "")] = _number(q.get("value"))
    return row


# Columns keep one type each (Parquet refuses a column of mixed types): record fields that are
# not what the schema means (checked by `bench validate`, not by the reader) are normalised.
def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _number(value: Any) -> float | int | None:
    """A metric or cost value; anything but a number (a string, a bool) is no value."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def cost_column(axis: str, unit: str) -> str:
    return f"{axis} [{unit}]" if unit else axis


def defuse(cell: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: formula-like strings get a leading quote."""
    if isinstance(cell, str) and cell.startswith(FORMULA_PREFIXES):
        return "'" + cell
    return cell


def for_csv(df: Any) -> Any:
    """The frame with every string cell and column name defused; numeric columns are untouched."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = df.rename(columns=defuse)
    for col in out.columns:
        if is_object_dtype(out[col]) or is_string_dtype(out[col]):  # object: mixed cells, e.g. None and text
            out[col] = out[col].map(defuse)
    return out


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
        # CRLF rows (RFC 4180): the csv writer then quotes every cell holding a CR or LF; with
        # "\n" rows a bare CR stays unquoted and spreadsheets start a new row (and cell) there.
        for_csv(df).to_csv(args.out, index=False, lineterminator="\r\n")
    else:
        df.to_parquet(args.out, index=False, engine="pyarrow")
    log.info("wrote %d record(s), %d columns to %s", len(df), len(df.columns), args.out)
    return 0
