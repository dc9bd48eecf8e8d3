"""`bench export`: one flat row per record, cost units in column names, csv and parquet round-trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest


from sparsebench.cli import main

from .conftest import SAMPLE_RESULTS, records_in


def bench_export(*argv: str) -> int:
    """`bench export ...` through the real entry point (BenchError -> exit 2)."""
    return main(["export", *argv])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, root)
    return root


@pytest.mark.parametrize("fmt, reader", [("csv", pd.read_csv), ("parquet", pd.read_parquet)])
def test_round_trip_one_row_per_record_with_units(results, tmp_path, fmt, reader) -> None:
    out = tmp_path / f"records.{fmt}"
    assert bench_export("--format", fmt, "--out", str(out), "--results", str(results)) == 0
    df = reader(out)
    recs = records_in(results / "retrieval.jsonl")
    assert len(df) == len(recs) == 5
    for col in ("suite", "version", "method", "family", "params", "dataset", "profile", "fingerprint", "commit",
                "status", "started_at", "nDCG@10", "RR@10", "R@100", "latency_p50_ms [ms]", "index_bytes [B]",
                "batch_throughput [queries/s]", "peak_rss_mb [MiB]"):
        assert col in df.columns, col
    row = df[df["method"] == "bm25"].iloc[0]
    bm25 = next(r for r in recs if r["method"] == "bm25")
    assert (row["suite"], int(row["version"]), row["profile"], row["commit"]) == ("retrieval", 1, "cpu-2core", bm25["provenance"]["git_commit"])
    assert json.loads(row["params"]) == bm25["params"]
    assert row["nDCG@10"] == pytest.approx(bm25["metrics"]["nDCG@10"]["value"], rel=1e-12)
    assert row["latency_p50_ms [ms]"] == pytest.approx(bm25["costs"]["latency_p50_ms"]["value"], rel=1e-12)
    # a cost only one method reports is empty for the others, not zero
    assert pd.isna(row["encoder_params [count]"])


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
