"""The README's main job, end to end on the embedded data (slow: MiniLM encodes 3,127 passages)."""

import pytest

from sparsebench import registry
from sparsebench.cli import main
from sparsebench.suites.spec import load_suite

from .conftest import records_in


@pytest.mark.slow
def test_default_retrieval_suite(results_dir, capsys) -> None:
    assert main(["run", "--suite", "retrieval", "--results", str(results_dir), "--no-progress"]) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "retrieval.jsonl")}
    suite = load_suite("retrieval")
    assert {registry.build(g.method).info.name for g in suite.methods} <= {r["method_name"] for r in recs.values()}
    assert all(r["status"] == "ok" and r["dataset"]["counts"]["queries"] == 474 for r in recs.values())
    bm25, minilm = recs["bm25"], recs["minilm"]
    # Measured ordering on this collection (see offline-assets.md): dense beats BM25 clearly.
    assert minilm["metrics"]["nDCG@10"]["value"] > bm25["metrics"]["nDCG@10"]["value"] + 0.1
    for rec in (bm25, minilm):
        assert rec["costs"]["latency_p99_ms"]["value"] is not None  # 2 x 474 samples >= 650
        assert rec["costs"]["index_bytes"]["value"] > 0
    # The sparse and hybrid families have three operating points each on the Pareto plots; the
    # compressors and engines one each here (their sweeps are in --grid full: test_suite_spec).
    for name in ("bm25", "bm25_engine", "splade", "rrf", "interp"):
        assert sum(r["method_name"] == name for r in recs.values()) >= 3, name
    for mid in ("truncate(minilm)", "int8(minilm)", "binary(minilm,rescore=10)", "pq(minilm)", "bebr(minilm)", "hnsw(minilm,ef=16)"):
        assert 0 < recs[mid]["costs"]["bytes_per_vector"]["value"] and 0 < recs[mid]["metrics"]["recall_vs_exact@10"]["value"] <= 1, mid
    assert recs["int8(minilm)"]["costs"]["bytes_per_vector"]["value"] == 384
    # The engine scores with bm25's impacts: its exact modes have bm25's quality.
    for mid in ("bm25_engine", "bm25_engine(pruning=exhaustive)"):
        assert recs[mid]["metrics"]["nDCG@10"]["value"] == pytest.approx(bm25["metrics"]["nDCG@10"]["value"], abs=1e-3)
    capsys.readouterr()
    assert main(["run", "--suite", "retrieval", "--results", str(results_dir), "--no-progress"]) == 0
    assert len(records_in(results_dir / "retrieval.jsonl")) == len(recs)  # all keys done already
