"""`bench export`: records as one flat table (csv, parquet), or in other tools' formats.

`--format csv|parquet --out FILE`: one row per record. Nested fields are flattened into columns;
parameters stay one JSON string (methods have different parameters, and a column per parameter would
mostly be empty). Column names are plain identifiers (`latency_p50_ms`, `nDCG@10`) so that they can
be typed in pandas, SQL and R; every metric and cost column's unit and kind (metric, cost or proxy)
is in a side table, because a number without its unit must not leave the project: `FILE.units.csv`
(column,unit,kind; an empty unit is a dimensionless metric) next to either format, and for Parquet
also in the file itself (schema metadata `sparsebench.units` and each field's `unit`/`kind`). Records
are read with `records.read`, as strictly as `bench validate` reads them. In CSV, a text cell that a
spreadsheet would take for a formula (starting with = + - @, a tab or a carriage return) gets a
leading `'`: record text is untrusted and must not run in the spreadsheet of whoever opens the
export. Numbers stay numbers; Parquet is typed and left as is.

`--format trec-qrels` and `--format mteb` are in `interop.py`. Exit codes: 0 written, 2 bad input
(BenchError).
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

TABLE_FORMATS = ("csv", "parquet")
FORMATS = (*TABLE_FORMATS, "trec-qrels", "mteb", "pytest-benchmark")
UNITS_METADATA_KEY = b"sparsebench.units"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BASE_COLUMNS = ("suite", "version", "method", "family", "params", "dataset", "profile", "fingerprint", "commit", "status",
                "key", "run_id", "started_at")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="records as CSV/Parquet (units in FILE.units.csv), a dataset's TREC qrels, mteb results or pytest-benchmark JSON",
        description="Flatten results/*.jsonl into one table: one row per record, plain column names, each metric "
        "and cost column's unit and kind in FILE.units.csv (and, for Parquet, in the schema metadata). In CSV, "
        "text cells starting with = + - @, a tab or CR get a leading ' so that a spreadsheet shows them instead "
        "of running them. --format trec-qrels writes a dataset's judgments (qid 0 docid grade); --format mteb "
        "writes one mteb TaskResult JSON per dataset, profile and method; --format pytest-benchmark writes the "
        "per-query latencies as a pytest-benchmark JSON file (pytest-benchmark compare FILE reads it).",
        epilog="exit codes: 0 written, 2 bad input (unknown format, corrupt results file)",
    )
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="csv or parquet (records, units in FILE.units.csv); trec-qrels (a dataset's judgments, "
                   "for trec_eval/ir-measures/ranx with bench run --save-runs); mteb (one mteb TaskResult JSON "
                   "per dataset, profile and method, under DIR); pytest-benchmark (latencies, one JSON file)")
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help="file to write (a directory for mteb)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    p.add_argument("--status", choices=("ok", "all"), help="csv/parquet: only ok records (default) or all of them")
    p.add_argument("--suite", help="trec-qrels: suite whose datasets --dataset names (default: retrieval)")
    p.add_argument("--dataset", help="trec-qrels: declared dataset name, or beir:PATH[#SPLIT], irds:ID, "
                   "mteb:TASK[#SPLIT] as for bench run (default: the suite's)")
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
        row[axis] = _number(q.get("value"))
    return row


def units(rec: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """column -> (unit, kind) for a record's metric and cost columns; kind is metric, cost or proxy."""
    out = {m: (_text(q.get("unit")) or "", "metric") for m, q in rec["metrics"].items()}
    for axis, q in rec["costs"].items():
        out[axis] = (_text(q.get("unit")) or "", "proxy" if q.get("proxy") is True else "cost")
    return out


def merge_units(recs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """One unit per column over all exported records; a column with two units cannot be one column."""
    merged: dict[str, tuple[str, str]] = {}
    for rec in recs:
        for col, (unit, kind) in units(rec).items():
            seen = merged.setdefault(col, (unit, kind))
            if seen != (unit, kind):
                raise BenchError(
                    f"{col}: records disagree on its unit or kind ({seen[0]!r} {seen[1]} vs {unit!r} {kind}, record "
                    f"{rec['run_id']}); bench validate names the record with the wrong unit"
                )
    return merged


# Columns keep one type each (Parquet refuses a column of mixed types): record fields that are
# not what the schema means (checked by `bench validate`, not by the reader) are normalised.
def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _number(value: Any) -> float | int | None:
    """A metric or cost value; anything but a number (a string, a bool) is no value."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def read_records(results_dir: Path, status: str) -> list[dict[str, Any]]:
    """Every record of results_dir/*.jsonl (strictly read: a corrupt file is an error, not a gap)."""
    from .records import read

    files = sorted(results_dir.glob("*.jsonl"))
    if not files:
        raise BenchError(f"{results_dir}: no results files (*.jsonl) to export")
    return [r for f in files for r in read(f) if status == "all" or r["status"] == "ok"]


def frame(recs: list[dict[str, Any]]) -> Any:
    """A pandas DataFrame, one row per record."""
    import pandas as pd

    df = pd.DataFrame([flatten(r) for r in recs])
    if df.empty:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    # Fixed columns first, then metrics and costs in the order first seen.
    return df[[*BASE_COLUMNS, *(c for c in df.columns if c not in BASE_COLUMNS)]]


def units_path(out: Path) -> Path:
    """FILE.csv -> FILE.units.csv, FILE.parquet -> FILE.units.csv (next to the table it describes)."""
    return out.with_name(f"{out.stem if out.suffix else out.name}.units.csv")


def units_frame(col_units: dict[str, tuple[str, str]], columns: list[str]) -> Any:
    import pandas as pd

    rows = [{"column": c, "unit": col_units[c][0], "kind": col_units[c][1]} for c in columns if c in col_units]
    return pd.DataFrame(rows, columns=["column", "unit", "kind"])


def write_csv(df: Any, path: Path) -> None:
    # CRLF rows (RFC 4180): the csv writer then quotes every cell holding a CR or LF; with
    # "\n" rows a bare CR stays unquoted and spreadsheets start a new row (and cell) there.
    for_csv(df).to_csv(path, index=False, lineterminator="\r\n")


def write_parquet(df: Any, path: Path, col_units: dict[str, tuple[str, str]]) -> None:
    """Parquet with the units in the file: schema metadata (all columns) and each field's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = [
        f.with_metadata({"unit": col_units[f.name][0], "kind": col_units[f.name][1]}) if f.name in col_units else f
        for f in table.schema
    ]
    as_json = json.dumps({c: {"unit": u, "kind": k} for c, (u, k) in col_units.items()}, sort_keys=True)
    schema = pa.schema(fields, metadata={**(table.schema.metadata or {}), UNITS_METADATA_KEY: as_json.encode()})
    pq.write_table(table.cast(schema), path)


def check_options(args: argparse.Namespace) -> None:
    """Options that belong to another format are refused rather than silently ignored."""
    table = args.format in TABLE_FORMATS
    if table and (args.suite or args.dataset):
        raise BenchError(f"--suite/--dataset choose a dataset for --format trec-qrels, not {args.format}")
    if not table and args.status:
        raise BenchError(f"--status applies to csv and parquet; --format {args.format} exports ok records only")
    if args.format in ("mteb", "pytest-benchmark") and (args.suite or args.dataset):
        raise BenchError(f"--format {args.format} exports records from --results; --suite/--dataset are for trec-qrels")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    if args.format not in TABLE_FORMATS:
        from . import interop

        return interop.run(args)
    recs = read_records(args.results, args.status or "ok")
    df = frame(recs)
    col_units = merge_units(recs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        write_csv(df, args.out)
    else:
        write_parquet(df, args.out, col_units)
    side = units_path(args.out)
    write_csv(units_frame(col_units, list(df.columns)), side)
    log.info("wrote %d record(s), %d columns to %s; units in %s", len(df), len(df.columns), args.out, side)
    return 0
