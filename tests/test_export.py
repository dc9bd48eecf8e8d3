"""`bench export`: one flat row per record, plain column names with units in a side table, csv and parquet round-trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparsebench.cli import main
from sparsebench.export import BASE_COLUMNS

from .conftest import records_in


def bench_export(*argv: str) -> int:
    """`bench export ...` through the real entry point (BenchError -> exit 2)."""
    return main(["export", *argv])


@pytest.mark.parametrize("fmt, reader", [("csv", pd.read_csv), ("parquet", pd.read_parquet)])
def test_round_trip_one_row_per_record_with_units(results, tmp_path, fmt, reader) -> None:
    out = tmp_path / f"records.{fmt}"
    assert bench_export("--format", fmt, "--out", str(out), "--results", str(results)) == 0
    df = reader(out)
    recs = records_in(results / "retrieval.jsonl")
    assert len(df) == len(recs) == 5
    for col in ("suite", "version", "method", "family", "params", "dataset", "profile", "fingerprint", "commit",
                "status", "started_at", "nDCG@10", "RR@10", "R@100", "latency_p50_ms", "index_bytes",
                "batch_throughput", "peak_rss_mb"):
        assert col in df.columns, col
    assert not any(c for c in df.columns if " " in c or "[" in c or "]" in c)
    row = df[df["method"] == "bm25"].iloc[0]
    bm25 = next(r for r in recs if r["method"] == "bm25")
    assert (row["suite"], int(row["version"]), row["profile"], row["commit"]) == ("retrieval", int(bm25["suite"].split("@")[1]), "cpu-2core", bm25["provenance"]["git_commit"])
    assert json.loads(row["params"]) == bm25["params"]
    assert row["nDCG@10"] == pytest.approx(bm25["metrics"]["nDCG@10"]["value"], rel=1e-12)
    assert row["latency_p50_ms"] == pytest.approx(bm25["costs"]["latency_p50_ms"]["value"], rel=1e-12)
    # a cost only one method reports is empty for the others, not zero
    assert pd.isna(row["encoder_params"])
    # every metric and cost column has its unit and kind, as the records state them
    units = pd.read_csv(tmp_path / "records.units.csv", keep_default_na=False)
    assert list(units.columns) == ["column", "unit", "kind"]
    table = {r.column: (r.unit, r.kind) for r in units.itertuples()}
    expected = {}
    for rec in recs:
        expected.update({m: (q["unit"], "metric") for m, q in rec["metrics"].items()})
        expected.update({a: (q["unit"], "proxy" if q.get("proxy") else "cost") for a, q in rec["costs"].items()})
    assert table == expected
    assert table["latency_p50_ms"] == ("ms", "cost") and table["postings"] == ("count", "proxy")
    assert table["nDCG@10"] == ("", "metric")
    assert set(table) == set(df.columns) - set(BASE_COLUMNS)


def test_status_filter(results, tmp_path) -> None:
    failed = records_in(results / "retrieval.jsonl")[0]
    failed.update(status="failed", error="boom", metrics={}, costs={}, run_id="failed01")
    with (results / "retrieval.jsonl").open("a") as f:
        f.write(json.dumps(failed) + "\n")
    out = tmp_path / "all.csv"
    assert bench_export("--format", "csv", "--out", str(out), "--results", str(results)) == 0
    assert len(pd.read_csv(out)) == 5
    assert bench_export("--format", "csv", "--out", str(out), "--results", str(results), "--status", "all") == 0
    df = pd.read_csv(out)
    assert len(df) == 6 and list(df["status"]).count("failed") == 1


def test_no_results_is_bad_input(tmp_path) -> None:
    assert bench_export("--format", "csv", "--out", str(tmp_path / "x.csv"), "--results", str(tmp_path / "none")) == 2


def test_csv_cells_that_a_spreadsheet_would_run_are_defused(results, tmp_path) -> None:
    import csv

    rec = records_in(results / "retrieval.jsonl")[0]
    evil = {
        **rec, "run_id": "evil01", "method": "=cmd|' /C calc'!A0", "family": "@SUM(1+1)*cmd|' /C calc'!A0",
        "dataset": {**rec["dataset"], "id": "+1+cmd|' /C calc'!A0"},
        "profile": {**rec["profile"], "fingerprint": "-2+3+cmd|' /C calc'!A0"},
        "provenance": {**rec["provenance"], "git_commit": "\t=1+1"}, "started_at": "\r=1+1",
        "costs": {**rec["costs"], "latency_p50_ms": {**rec["costs"]["latency_p50_ms"], "value": -1.5}},
        "metrics": {**rec["metrics"], "=HYPERLINK(\"http://x\")": {"value": 1.0, "unit": "", "n": 1}},
    }
    with (results / "retrieval.jsonl").open("a") as f:
        f.write(json.dumps(evil) + "\n")
    out = tmp_path / "x.csv"
    assert bench_export("--format", "csv", "--out", str(out), "--results", str(results)) == 0
    with out.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    row = dict(zip(header, next(r for r in rows if "evil01" in r)))
    assert row["method"] == "'=cmd|' /C calc'!A0"
    assert row["family"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["dataset"] == "'+1+cmd|' /C calc'!A0"
    assert row["fingerprint"] == "'-2+3+cmd|' /C calc'!A0"
    assert row["commit"] == "'\t=1+1" and row["started_at"] == "'\r=1+1"
    assert row["latency_p50_ms"] == "-1.5"  # a negative number stays a number
    assert "'=HYPERLINK(\"http://x\")" in header and "=HYPERLINK(\"http://x\")" not in header
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or is_number(cell) for r in [header, *rows] for cell in r)
    # the units table is a CSV too: a formula-like column name is defused there as well
    with (tmp_path / "x.units.csv").open(newline="") as f:
        unit_rows = list(csv.reader(f))
    assert ["'=HYPERLINK(\"http://x\")", "", "metric"] in unit_rows
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for r in unit_rows for cell in r)
    # Parquet is typed data, not a sheet: the text is kept exactly.
    pq = tmp_path / "x.parquet"
    assert bench_export("--format", "parquet", "--out", str(pq), "--results", str(results)) == 0
    df = pd.read_parquet(pq)
    assert df[df["run_id"] == "evil01"].iloc[0]["method"] == "=cmd|' /C calc'!A0"


def test_parquet_carries_units_in_its_schema_and_a_side_table(results, tmp_path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "records.parquet"
    assert bench_export("--format", "parquet", "--out", str(out), "--results", str(results)) == 0
    schema = pq.read_schema(out)
    table = json.loads(schema.metadata[b"sparsebench.units"])
    assert table["latency_p50_ms"] == {"unit": "ms", "kind": "cost"}
    assert table["index_bytes"] == {"unit": "B", "kind": "cost"}
    assert table["vocab_size"] == {"unit": "terms", "kind": "proxy"}
    assert table["nDCG@10"] == {"unit": "", "kind": "metric"}
    field = schema.field("peak_rss_mb")
    assert field.metadata == {b"unit": b"MiB", b"kind": b"cost"}
    assert schema.field("method").metadata is None  # text columns have no unit
    side = pd.read_csv(tmp_path / "records.units.csv", keep_default_na=False)
    assert {r.column: {"unit": r.unit, "kind": r.kind} for r in side.itertuples()} == table
    # pandas still reads it as the same table
    assert len(pd.read_parquet(out)) == 5


def test_a_column_with_two_units_is_refused(results, tmp_path) -> None:
    rec = records_in(results / "retrieval.jsonl")[0]
    odd = {**rec, "run_id": "odd01", "costs": {**rec["costs"], "latency_p50_ms": {**rec["costs"]["latency_p50_ms"], "unit": "s"}}}
    with (results / "retrieval.jsonl").open("a") as f:
        f.write(json.dumps(odd) + "\n")
    out = tmp_path / "x.csv"
    assert bench_export("--format", "csv", "--out", str(out), "--results", str(results)) == 2
    assert not out.exists()


def test_options_of_another_format_are_refused(results, tmp_path) -> None:
    out = str(tmp_path / "x.csv")
    assert bench_export("--format", "csv", "--out", out, "--results", str(results), "--dataset", "faq") == 2
    assert bench_export("--format", "mteb", "--out", str(tmp_path / "m"), "--results", str(results), "--status", "all") == 2


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
