"""`bench export --format trec-qrels|mteb`: what trec_eval/ir-measures/ranx and mteb read, checked with those tools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ir_measures
import pytest
from mteb.results.task_result import TaskResult

from sparsebench.cli import main

from .conftest import EXTRA_QRELS, QUERIES, SAMPLE_RESULTS, records_in


def bench(*argv: str) -> int:
    return main(list(argv))


def test_exported_qrels_and_saved_run_reproduce_the_record(tiny_beir: Path, results_dir: Path, tmp_path: Path) -> None:
    qrels_file = tmp_path / "out" / "tiny.qrels"
    runs = tmp_path / "runs"
    dataset = f"beir:{tiny_beir}"
    assert bench("export", "--format", "trec-qrels", "--dataset", dataset, "--out", str(qrels_file)) == 0
    assert bench("run", "--suite", "retrieval", "--no-progress", "--in-process", "--dataset", dataset,
                 "--results", str(results_dir), "--method", "bm25", "--save-runs", str(runs)) == 0

    lines = qrels_file.read_text().splitlines()
    expected_lines = {f"{q} 0 {d} 1" for q, (_, d) in QUERIES.items()}
    expected_lines |= {f"{q} 0 {d} {g}" for q, docs in EXTRA_QRELS.items() for d, g in docs.items()}
    assert len(lines) == len(expected_lines) and set(lines) == expected_lines

    [rec] = records_in(results_dir / "retrieval.jsonl")
    [run_file] = runs.glob("*.trec")
    qrels = list(ir_measures.read_trec_qrels(str(qrels_file)))
    run = list(ir_measures.read_trec_run(str(run_file)))
    got = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100], qrels, run)
    for name in ("nDCG@10", "RR@10", "R@100"):
        assert got[ir_measures.parse_measure(name)] == pytest.approx(rec["metrics"][name]["value"], abs=1e-12), name
    assert rec["metrics"]["nDCG@10"]["value"] < 1.0  # the extra judgments make ranking matter


def test_qrels_of_a_declared_dataset_and_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "faq.qrels"
    assert bench("export", "--format", "trec-qrels", "--dataset", "faq", "--out", str(out)) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 474  # the suite declares 474 judgments for faq
    assert all(len(line.split(" ")) == 4 and line.split(" ")[1] == "0" for line in lines)
    assert bench("export", "--format", "trec-qrels", "--dataset", "nosuch", "--out", str(out)) == 2


def test_ids_with_whitespace_are_refused(tiny_beir: Path, tmp_path: Path) -> None:
    qrels = tiny_beir / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text().replace("q1\td01", "q1\td 01"))
    corpus = tiny_beir / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace('"_id": "d01"', '"_id": "d 01"'))
    out = tmp_path / "x.qrels"
    assert bench("export", "--format", "trec-qrels", "--dataset", f"beir:{tiny_beir}", "--out", str(out)) == 2
    assert not out.exists()


def test_mteb_results_read_back_with_mteb(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, results)
    out = tmp_path / "mteb"
    assert bench("export", "--format", "mteb", "--out", str(out), "--results", str(results)) == 0

    recs = [r for r in records_in(results / "retrieval.jsonl") if r["status"] == "ok"]
    files = sorted(out.rglob("*.json"))
    assert len(files) == len(recs) == 5
    for rec in recs:
        path = out / rec["method"] / rec["profile"]["id"] / "faq.json"
        result = TaskResult.from_disk(path)
        [entry] = result.scores["test"]
        assert result.task_name == "faq"
        assert result.dataset_revision == rec["dataset"]["checksum"]
        assert entry["hf_subset"] == "default"
        assert entry["main_score"] == pytest.approx(rec["metrics"]["nDCG@10"]["value"], abs=1e-12)
        assert entry["ndcg_at_10"] == pytest.approx(rec["metrics"]["nDCG@10"]["value"], abs=1e-12)
        assert entry["mrr_at_10"] == pytest.approx(rec["metrics"]["RR@10"]["value"], abs=1e-12)
        assert entry["recall_at_100"] == pytest.approx(rec["metrics"]["R@100"]["value"], abs=1e-12)
        assert result.get_score() == pytest.approx(rec["metrics"]["nDCG@10"]["value"], abs=1e-12)
        assert result.evaluation_time == pytest.approx(rec["duration_s"])


def test_mteb_keeps_the_latest_ok_record_of_a_method(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, results)
    rec = next(r for r in records_in(results / "retrieval.jsonl") if r["method"] == "bm25")
    nd = rec["metrics"]["nDCG@10"]
    rerun = {**rec, "run_id": "rerun01", "metrics": {**rec["metrics"], "nDCG@10": {**nd, "value": 0.5}}}
    failed = {**rec, "run_id": "failed01", "status": "failed", "error": "boom", "metrics": {}, "costs": {}}
    with (results / "retrieval.jsonl").open("a") as f:
        f.write(json.dumps(rerun) + "\n" + json.dumps(failed) + "\n")
    out = tmp_path / "mteb"
    assert bench("export", "--format", "mteb", "--out", str(out), "--results", str(results)) == 0
    assert len(list(out.rglob("*.json"))) == 5
    result = TaskResult.from_disk(out / "bm25" / "cpu-2core" / "faq.json")
    assert result.scores["test"][0]["main_score"] == 0.5


def test_mteb_export_with_no_results_is_bad_input(tmp_path: Path) -> None:
    assert bench("export", "--format", "mteb", "--out", str(tmp_path / "m"), "--results", str(tmp_path / "none")) == 2


def test_pytest_benchmark_json_is_read_by_pytest_benchmark_compare(tmp_path: Path) -> None:
    import csv
    import statistics
    import subprocess
    import sys

    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, results)
    out = tmp_path / "bench.json"
    assert main(["export", "--format", "pytest-benchmark", "--results", str(results), "--out", str(out)]) == 0
    table = tmp_path / "compare.csv"
    done = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out), f"--csv={table}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {r["name"].rsplit("::", 1)[1]: r for r in csv.DictReader(table.open())}
    recs = [json.loads(line) for line in (results / "retrieval.jsonl").read_text().splitlines()]
    assert set(rows) == {r["method"] for r in recs}
    for rec in recs:
        per_query = json.loads((results / rec["per_query"]["path"]).read_text())
        seconds = [q["latency_ms"] / 1000 for q in per_query.values()]
        row = rows[rec["method"]]
        assert int(row["rounds"]) == len(seconds) == rec["metrics"]["nDCG@10"]["n"]
        assert float(row["median"]) == pytest.approx(statistics.median(seconds), rel=1e-9)
        assert float(row["min"]) == pytest.approx(min(seconds), rel=1e-9)
