"""`bench compare`: paired statistics, cost spreads, gates and exit codes, on real runs.

The faq cases reuse the committed sample records (copied to a temp dir: real measurements on
profile cpu-2core, which the runner finds by key and does not re-measure) and measure only what
is missing, in-process. Latency gates are tested on records whose p50 is set by the test,
because real timings are noise, and unit tests never assert timings.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from sparsebench import compare, records
from sparsebench.errors import BenchError
from sparsebench.stats import holm

from sparsebench.cli import main

from .conftest import SAMPLE_RESULTS, records_in

# Keys carry the profile id: pin the sample's profile so they match on any machine.
PROFILE = ("--profile", "cpu-2core", "--profile-mismatch", "allow")


def bench_compare(*argv: str) -> int:
    """`bench compare ...` through the real entry point (BenchError -> exit 2)."""
    return main(["compare", *argv])


# --- pure logic -------------------------------------------------------------------------------


def pq(values: dict[str, float]) -> dict[str, dict[str, float]]:
    return {q: {"nDCG@10": v} for q, v in values.items()}


def test_paired_rows_count_improved_and_degraded_and_holm_is_across_baselines() -> None:
    new = pq({"a": 1.0, "b": 0.5, "c": 0.2, "d": 0.9})
    base1 = pq({"a": 0.5, "b": 0.5, "c": 0.4, "d": 0.1})
    base2 = pq({"a": 1.0, "b": 0.5, "c": 0.2, "d": 0.9})  # identical: no difference at all
    rows = [compare.paired_rows(new, b, ["nDCG@10"], {}, "t") for b in (base1, base2)]
    r1, r2 = rows[0][0], rows[1][0]
    assert (r1.improved, r1.degraded, r1.n) == (2, 1, 4) and r1.delta == pytest.approx(0.275)
    assert (r2.delta, r2.p_perm, r2.improved, r2.degraded) == (0.0, 1.0, 0, 0)
    adjusted = compare.apply_holm(rows, alpha=0.05)
    assert [r[0].p_holm for r in adjusted] == holm([r1.p_perm, r2.p_perm])
    assert not adjusted[1][0].significantly_worse


def test_differing_query_sets_are_bad_input() -> None:
    with pytest.raises(BenchError, match="different queries"):
        compare.paired_rows(pq({"a": 1.0, "b": 0.0}), pq({"a": 1.0, "c": 0.0}), ["nDCG@10"], {}, "x vs y")


def test_latency_gate_fires_only_when_every_pairing_of_repeats_is_too_slow() -> None:
    base = compare.Spread((1.0, 1.1, 1.2), "ms")
    # Median ratio 1.23 > 1.10, but the fastest NEW repeat (1.30) is within 10% of the slowest
    # baseline repeat (1.32 limit): the repeats overlap enough that noise could explain it.
    overlapping = compare.Spread((1.30, 1.35, 1.40), "ms")
    assert not compare.latency_gate(overlapping, base, 0.10)
    assert compare.latency_gate(compare.Spread((1.5, 1.6, 1.7), "ms"), base, 0.10)
    with pytest.raises(BenchError, match="not reported"):
        compare.latency_gate(compare.Spread((), "ms"), base, 0.10)


def test_pareto_dominance_uses_the_declared_direction_of_each_axis() -> None:
    def row(axis: str, direction: str, new: float, base: float) -> compare.CostRow:
        return compare.CostRow(axis, "", direction, compare.Spread((new,), ""), compare.Spread((base,), ""))

    costs = [row("latency_p50_ms", "lower", 2.0, 1.0), row("batch_throughput", "higher", 100.0, 50.0),
             row("postings", None, 1.0, 2.0)]  # type: ignore[arg-type]
    assert compare.dominated_axes(0.4, 0.5, "higher", costs) == ["latency_p50_ms"]
    assert compare.dominated_axes(0.6, 0.5, "higher", costs) == []


# --- end to end on a tiny BEIR folder -----------------------------------------------------------


def test_bad_input_and_failed_runs_have_their_exit_codes(tiny_beir, results_dir) -> None:
    common = ("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--no-progress", "--timing-repeats", "1")
    assert bench_compare("bm25x", "--baselines", "bm25", *common) == 2  # unknown method
    assert bench_compare("bm25(k1=1.2)", "--baselines", "bm25", *common) == 2  # the same id as its baseline
    # A stemmer PyStemmer does not know is bad input too: refused when the id is built.
    assert bench_compare("bm25(stemmer=klingon)", "--baselines", "bm25", *common) == 2
    assert not (results_dir / "retrieval.jsonl").exists()  # refused before anything ran
    # A model directory that is not there fails when the method opens: recorded, and exit 3.
    assert bench_compare("minilm(model=/nonexistent/model-dir)", "--baselines", "bm25", *common) == 3
    statuses = {r["method"]: r["status"] for r in records_in(results_dir / "retrieval.jsonl")}
    assert statuses == {"minilm(model=/nonexistent/model-dir)": "failed", "bm25": "ok"}


def _clone_with_p50(path: Path, rec: dict, p50: float) -> None:
    """Another repeat of an existing record with a chosen median latency (same sidecar)."""
    clone = json.loads(json.dumps(rec))
    clone["run_id"] = uuid.uuid4().hex[:12]
    clone["costs"]["latency_p50_ms"]["value"] = p50
    records.append(path, clone)


def test_timing_repeats_are_measured_and_the_latency_gate_uses_their_spread(tiny_beir, results_dir, capsys) -> None:
    # 5 queries x 3 timed repeats = 15 samples: enough for a median (13).
    common = ("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--no-progress",
              "--set", "latency_repeats=3", "--baselines", "bm25")
    assert bench_compare("bm25(k1=0.9)", "--timing-repeats", "2", *common) == 0
    path = results_dir / "retrieval.jsonl"
    recs = records_in(path)
    assert sorted(r["method"] for r in recs) == ["bm25", "bm25", "bm25(k1=0.9)", "bm25(k1=0.9)"]  # forced repeats
    assert all(r["costs"]["latency_p50_ms"]["value"] is not None for r in recs)

    new, base = next(r for r in recs if r["method"] == "bm25(k1=0.9)"), next(r for r in recs if r["method"] == "bm25")
    for p50 in (1.0, 1.1, 1.2):
        _clone_with_p50(path, base, p50)
    for p50 in (1.30, 1.35, 1.40):  # median 23% slower, but overlapping within 10%: noise-aware pass
        _clone_with_p50(path, new, p50)
    capsys.readouterr()
    assert bench_compare("bm25(k1=0.9)", "--timing-repeats", "3", "--latency-tolerance", "0.10", *common) == 0
    out = capsys.readouterr().out
    assert "1.23x" in out and "1.08-1.4x" in out and "gates: passed" in out
    for p50 in (1.5, 1.6, 1.7):  # now every repeat is >10% slower than every baseline repeat
        _clone_with_p50(path, new, p50)
    assert bench_compare("bm25(k1=0.9)", "--timing-repeats", "3", "--latency-tolerance", "0.10", *common) == 1
    out = capsys.readouterr().out
    assert "GATE FAILED: bm25(k1=0.9) is slower than bm25 on latency_p50_ms by more than 10%" in out
    # Without the gate, the same comparison passes: gates fire only when asked for.
    assert bench_compare("bm25(k1=0.9)", "--timing-repeats", "3", *common) == 0
    assert len(records_in(path)) == 13  # nothing was re-measured: every key had its repeats


# --- end to end on the embedded faq collection --------------------------------------------------


@pytest.fixture(scope="module")
def faq_results(tmp_path_factory) -> Path:
    """The sample records plus the two BM25 variants the tied case needs, measured once."""
    root = tmp_path_factory.mktemp("faq") / "results"
    shutil.copytree(SAMPLE_RESULTS, root)
    return root


def faq_compare(results: Path, new: str, baselines: str) -> int:
    return bench_compare(new, "--baselines", baselines, "--results", str(results), "--in-process", "--no-progress",
                         "--timing-repeats", "1", "--fail-if-worse", *PROFILE)


def main_metric_line(out: str, baseline: str) -> str:
    section = out.split(f" vs {baseline}  (")[1]
    return next(line for line in section.splitlines() if line.strip().startswith("nDCG@10 (main)"))


def test_faq_better_method_passes(faq_results, capsys) -> None:
    # bm25 (0.479) vs bm25(k1=0.9) (0.462) and bm25(b=0.4) (0.428): better on both, p < 1e-4.
    assert faq_compare(faq_results, "bm25", "bm25(k1=0.9),bm25(b=0.4)") == 0
    out = capsys.readouterr().out
    assert "+0.0166" in main_metric_line(out, "bm25(k1=0.9)") and "+0.0509" in main_metric_line(out, "bm25(b=0.4)")
    assert "474 queries paired by id" in out and "gates: passed" in out


def test_faq_worse_method_fails_the_gate(faq_results, capsys) -> None:
    # bm25(k1=0.9,b=0.4) (0.418) vs bm25 (0.479) and bm25(b=0.4) (0.428): the second gap is small
    # (-0.0102, permutation p 0.0035) but stays significant after Holm, which doubles the smallest
    # p (vs bm25, 1e-4) and leaves the larger one as it is.
    assert faq_compare(faq_results, "bm25(k1=0.9,b=0.4)", "bm25,bm25(b=0.4)") == 1
    out = capsys.readouterr().out
    assert "-0.0102" in main_metric_line(out, "bm25(b=0.4)") and "0.0035*" in main_metric_line(out, "bm25(b=0.4)")
    assert out.count("GATE FAILED") == 2


def test_faq_tied_method_passes_and_a_second_call_runs_nothing(faq_results, capsys) -> None:
    # Dropping the stopword list barely moves BM25 (IDF already discounts stopwords), and the
    # ATIRE variant differs from Lucene's only in the IDF of very common terms: three methods of
    # the same quality, none significantly different (p ~ 0.75-0.8 before correction).
    assert faq_compare(faq_results, "bm25(stopwords=none)", "bm25,bm25(variant=atire)") == 0
    out = capsys.readouterr().out
    for baseline in ("bm25", "bm25(variant=atire)"):
        line = main_metric_line(out, baseline)
        assert "*" not in line and "1.0000" in line  # Holm-adjusted p capped at 1
    n = len(records_in(faq_results / "retrieval.jsonl"))
    assert n == 7  # 5 samples + the two methods it had to measure
    assert faq_compare(faq_results, "bm25(stopwords=none)", "bm25,bm25(variant=atire)") == 0
    assert len(records_in(faq_results / "retrieval.jsonl")) == n


def test_a_metric_only_one_side_reports_is_left_out_of_that_pairing(faq_results, capsys) -> None:
    # minilm reports recall_vs_exact@10 (against its own exact search); bm25 has no exact reference.
    assert faq_compare(faq_results, "minilm", "bm25") == 0
    out = capsys.readouterr().out
    assert "+0.2409" in main_metric_line(out, "bm25") and "recall_vs_exact@10" not in out
    assert faq_compare(faq_results, "bm25", "minilm") == 1  # worse, and no KeyError either way
