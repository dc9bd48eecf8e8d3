"""`bench run` end to end on small real data: resume, keys, errors, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sparsebench.cli import main
from sparsebench.suites.spec import builtin_suites

from .conftest import REPO, records_in


def bench(*args: str) -> int:
    return main(["run", "--suite", "retrieval", "--no-progress", *args])


def test_run_resume_force_and_distinct_keys(tiny_beir, results_dir, capsys) -> None:
    common = ("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process")
    assert bench(*common, "--method", "bm25") == 0
    out = capsys.readouterr().out
    assert "nDCG@10" in out and "p50 ms" in out and "\nbm25 " in out
    path = results_dir / "retrieval.jsonl"
    [rec] = records_in(path)
    assert rec["status"] == "ok" and rec["method"] == "bm25" and rec["profile"]["id"] == "cpu-2core"
    assert rec["metrics"]["nDCG@10"]["n"] == 5 and rec["costs"]["latency_p50_ms"]["unit"] == "ms"
    assert rec["provenance"]["packages"]["bm25s"] and "git_commit" in rec["provenance"]
    per_query = json.loads((results_dir / rec["per_query"]["path"]).read_text())
    assert set(per_query) == {"q1", "q2", "q3", "q4", "q5"} and "latency_ms" in per_query["q1"]

    assert bench(*common, "--method", "bm25") == 0  # done already: nothing appended
    assert len(records_in(path)) == 1
    assert bench(*common, "--method", "bm25", "--set", "bm25.k1=0.9") == 0
    recs = records_in(path)
    assert [r["method"] for r in recs] == ["bm25", "bm25(k1=0.9)"] and recs[0]["key"] != recs[1]["key"]
    assert bench(*common, "--method", "bm25", "--force") == 0
    assert len(records_in(path)) == 3
    # a task setting is part of the key too
    assert bench(*common, "--method", "bm25", "--set", "top_k=10") == 0
    assert len({r["key"] for r in records_in(path)}) == 3


def test_ndcg_equals_ir_measures_on_the_same_run(tiny_beir, results_dir, tmp_path) -> None:
    import ir_measures

    runs = tmp_path / "runs"
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process",
                 "--method", "bm25(k1=0.9,b=0.4)", "--save-runs", str(runs)) == 0
    [rec] = records_in(results_dir / "retrieval.jsonl")
    [run_file] = runs.glob("*.trec")
    rows = [line.split("\t") for line in (tiny_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qrels = [ir_measures.Qrel(q, d, int(g)) for q, d, g in rows]
    run = list(ir_measures.read_trec_run(str(run_file)))
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR @ 10], qrels, run)
    assert 0.5 < expected[ir_measures.nDCG @ 10] < 1.0  # non-trivial, so agreement means something
    assert rec["metrics"]["nDCG@10"]["value"] == pytest.approx(expected[ir_measures.nDCG @ 10], abs=1e-12)
    assert rec["metrics"]["RR@10"]["value"] == pytest.approx(expected[ir_measures.RR @ 10], abs=1e-12)


def test_run_files_are_named_by_method_and_referenced_from_the_record(tiny_beir, results_dir, tmp_path, caplog) -> None:
    runs = tmp_path / "runs"
    common = ("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--save-runs", str(runs))
    assert bench(*common, "--method", 'bm25(k1=0.9),bm25(stopwords="en_plus")') == 0
    a, b = records_in(results_dir / "retrieval.jsonl")
    assert a["run_file"] == str(runs / f"bm25(k1=0.9).{a['key'][:8]}.trec")
    assert b["run_file"] == str(runs / f"bm25(stopwords=en_plus).{b['key'][:8]}.trec")
    assert sorted(p.name for p in runs.iterdir()) == sorted(Path(r["run_file"]).name for r in (a, b))
    for p in runs.iterdir():
        p.unlink()
    assert bench(*common, "--method", "bm25(k1=0.9)") == 0  # recorded already: nothing to write it from
    assert not list(runs.iterdir())
    assert any("no run file written" in r.getMessage() and "--force" in r.getMessage() for r in caplog.records)
    # Characters a file name cannot hold (a model path's slashes, quotes) become _.
    from sparsebench.runner import RunSpec, run_file_path

    spec = RunSpec(suite_file="", suite="retrieval@2", task="retrieval", method='minilm(model="/models/my model")', dataset="faq",
                   dataset_id="faq", dataset_checksum="c", metrics=("nDCG@10",), main_metric="nDCG@10", settings={}, profile_id="p")
    assert run_file_path(runs, spec) == runs / f"minilm(model=__models_my_model_).{spec.key[:8]}.trec"


def test_each_metric_carries_its_standard_error_over_queries(tiny_beir, results_dir) -> None:
    import statistics

    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--method", "bm25(k1=0.9)") == 0
    [rec] = records_in(results_dir / "retrieval.jsonl")
    per_query = json.loads((results_dir / rec["per_query"]["path"]).read_text())
    for name, m in rec["metrics"].items():
        xs = [q[name] for q in per_query.values()]
        assert m["stderr"] == pytest.approx(statistics.stdev(xs) / len(xs) ** 0.5, abs=1e-12)
    assert rec["metrics"]["nDCG@10"]["stderr"] > 0  # the tiny data has queries of different difficulty


def test_isolated_worker_records_its_own_peak_memory(tiny_beir, results_dir) -> None:
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", "bm25") == 0
    [rec] = records_in(results_dir / "retrieval.jsonl")
    assert rec["status"] == "ok" and 10 < rec["costs"]["peak_rss_mb"]["value"] < 2000


def test_a_failing_method_is_recorded_and_the_suite_goes_on(tiny_beir, results_dir) -> None:
    rc = bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process",
               "--method", "minilm(model=/nonexistent/model-dir),bm25")
    recs = records_in(results_dir / "retrieval.jsonl")
    assert rc == 1 and [r["status"] for r in recs] == ["failed", "ok"]
    assert "cannot load model" in recs[0]["error"] or "nonexistent" in recs[0]["error"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--method", "bm26"), "did you mean bm25"),
        (("--dataset", "fqa"), "unknown dataset 'fqa'"),
        (("--dataset", "beir:/nonexistent/folder"), "does not exist"),
        (("--set", "topk=5"), "unknown key 'settings.topk'"),
        (("--set", "bm25.k9=5"), "no parameter 'k9'"),
        (("--profile", "h100-x1"), "does not match profile 'h100-x1'"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(args, message, results_dir, caplog) -> None:
    assert bench("--results", str(results_dir), *args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    assert not (results_dir / "retrieval.jsonl").exists()


def test_corrupt_results_file_is_reported_and_kept(tiny_beir, results_dir, caplog) -> None:
    results_dir.mkdir()
    path = results_dir / "retrieval.jsonl"
    path.write_text('{"not": "a record"\n')
    before = path.read_bytes()
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", "bm25") == 2
    [err] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert f"{path}:1" in err and "corrupt record" in err
    assert path.read_bytes() == before


def test_malformed_suite_file(tmp_path, results_dir, caplog) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: retrieval\nversion: [1\n")
    assert main(["run", "--suite", str(suite), "--results", str(results_dir)]) == 2
    [err] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert str(suite) in err and "malformed YAML" in err


def test_sigkill_mid_suite_then_resume_loses_and_duplicates_nothing(tiny_beir, tmp_path) -> None:
    data = yaml.safe_load(builtin_suites()["retrieval"].read_text())
    data["methods"] = [{"method": "bm25", "sweep": {"k1": [0.6, 0.9, 1.2, 1.5, 1.8, 2.1], "b": [0.4, 0.75]}}]
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    path = results / "retrieval.jsonl"
    cmd = [sys.executable, "-m", "sparsebench.cli", "run", "--suite", str(suite), "--dataset", f"beir:{tiny_beir}",
           "--results", str(results), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = records_in(path)
    assert 3 <= len(written) < 12, "the kill should land mid-suite"
    assert subprocess.run(cmd, cwd=REPO, capture_output=True).returncode == 0
    final = records_in(path)
    assert final[: len(written)] == written  # nothing rewritten
    keys = [r["key"] for r in final]
    assert len(keys) == len(set(keys)) == 12 and all(r["status"] == "ok" for r in final)
