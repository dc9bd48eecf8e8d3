"""Dominance with confidence: the pure classifier, and the same verdicts on a rendered page made
from constructed records (written through the runner's own record and sidecar code)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from sparsebench import records, sidecars
from sparsebench.report import ReportOptions, build_report, build_site, render_site
from sparsebench.report.dominance import DOMINATED, FRONTIER, FRONTIER_TIED, TIED, Point, classify
from sparsebench.stats import bootstrap_ci, bootstrap_cis, holm, paired_t_pvalues

from .test_report import parse

N = 60
RNG = np.random.default_rng(7)
BASE = RNG.uniform(0.2, 0.8, N)  # one query set: per-query quality shared by the constructed methods


def per_query(shift: float, noise: float = 0.0, seed: int = 0) -> dict[str, float]:
    jitter = np.random.default_rng(seed).normal(0.0, noise, N) if noise else np.zeros(N)
    jitter -= jitter.mean()  # the mean is exactly BASE's plus the shift: the order of means is by construction
    return {f"q{i:02d}": float(v) for i, v in enumerate(BASE + shift + jitter)}


def point(ident: str, pq: dict[str, float], cost: float, on: bool, lo: float | None = None, hi: float | None = None) -> Point:
    return Point(ident, float(np.mean(list(pq.values()))), cost, cost if lo is None else lo, cost if hi is None else hi, pq, on)


def test_cheaper_but_tied_on_quality_is_tied_not_dominating() -> None:
    # A is cheaper; B's quality is a hair above A's mean, but far inside the per-query noise
    a = per_query(0.0, noise=0.05, seed=1)
    b = per_query(0.005, noise=0.05, seed=2)
    a_mean, b_mean = np.mean(list(a.values())), np.mean(list(b.values()))
    # B above A on mean quality, and more expensive: both on the nominal frontier
    assert b_mean > a_mean
    v = classify([point("A", a, 1.0, True), point("B", b, 5.0, True)], "lower")
    p = sps.ttest_rel(list(b.values()), list(a.values())).pvalue
    assert p > 0.05
    assert v["A"].status == FRONTIER
    assert v["B"].status == FRONTIER_TIED and v["B"].against == "A"
    assert v["B"].p_holm == pytest.approx(p)  # one claim on the plot: Holm leaves it as is
    # now A is cheaper and (nominally) better: B is off the frontier, but only tied, not dominated
    a_up = per_query(0.011, noise=0.05, seed=3)
    v = classify([point("A", a_up, 1.0, True), point("B", b, 5.0, False)], "lower")
    assert v["B"].status == TIED and v["B"].against == "A" and v["B"].p_holm > 0.05


def test_clearly_better_and_cheaper_dominates_and_holm_counts_every_claim() -> None:
    a = per_query(0.10, noise=0.02, seed=4)
    b = per_query(0.0, noise=0.02, seed=5)
    c = per_query(0.0, noise=0.02, seed=6)
    v = classify([point("A", a, 1.0, True), point("B", b, 2.0, False), point("C", c, 3.0, False)], "lower")
    assert v["A"].status == FRONTIER
    assert v["B"].status == DOMINATED and v["C"].status == DOMINATED
    raw = [float(paired_t_pvalues(np.array([list(a.values())]), list(x.values()))[0]) for x in (b, c)]
    assert [v["B"].p_holm, v["C"].p_holm] == pytest.approx(holm(raw))


def test_cost_within_the_spread_of_repeats_is_not_dominance() -> None:
    a = per_query(0.10, noise=0.02, seed=4)
    b = per_query(0.0, noise=0.02, seed=5)
    # A's repeats reach 2.5 ms, B's best repeat is 2.2 ms: the cost difference is within the noise
    v = classify([point("A", a, 1.0, True, lo=0.9, hi=2.5), point("B", b, 3.0, False, lo=2.2, hi=3.1)], "lower")
    assert v["B"].status == TIED and "spread" in v["B"].reason
    # higher-is-better costs (throughput) flip the comparison
    v = classify([point("A", a, 900.0, True, lo=850.0, hi=950.0), point("B", b, 500.0, False, lo=480.0, hi=520.0)], "higher")
    assert v["B"].status == DOMINATED


def test_equal_cost_and_significantly_better_quality_dominates() -> None:
    # two models of the same size (bytes: no spread): the better one dominates, the cheaper-only
    # rule does not apply; a third point of equal cost and tied quality stays tied
    a = per_query(0.10, noise=0.02, seed=4)
    b = per_query(0.0, noise=0.02, seed=5)
    c = per_query(0.098, noise=0.05, seed=6)
    v = classify([point("A", a, 100.0, True), point("B", b, 100.0, False), point("C", c, 100.0, False)], "lower")
    assert v["B"].status == DOMINATED and v["B"].against == "A"
    assert v["C"].status == TIED and v["C"].against == "A"


def test_no_per_query_values_means_no_dominance_claim() -> None:
    a = Point("A", 0.9, 1.0, 1.0, 1.0, None, True)
    b = Point("B", 0.5, 2.0, 2.0, 2.0, None, False)
    v = classify([a, b], "lower")
    assert v["B"].status == TIED and "no per-query values" in v["B"].reason


def test_lower_is_better_quality() -> None:
    # perplexity-like: lower quality values are better; A is lower (better) and cheaper
    a = per_query(-0.10, noise=0.02, seed=8)
    b = per_query(0.0, noise=0.02, seed=9)
    v = classify([point("A", a, 1.0, True), point("B", b, 2.0, False)], "lower", quality_dir="lower")
    assert v["B"].status == DOMINATED


def test_batched_bootstrap_and_t_test_equal_the_single_ones() -> None:
    rows = np.random.default_rng(1).random((7, 33))
    for row, ci in zip(rows, bootstrap_cis(rows, 0.9, 500, 3)):
        assert ci == pytest.approx(bootstrap_ci(row, 0.9, 500, 3), abs=1e-12)
    base = rows[0]
    for row, p in zip(rows[1:], paired_t_pvalues(rows[1:], base)):
        assert p == pytest.approx(sps.ttest_rel(row, base).pvalue, rel=1e-9)
    assert list(paired_t_pvalues(np.array([base, base + 0.25]), base)) == [1.0, 0.0]


# --- the same on a rendered page ------------------------------------------------------------

def write(results: Path, method: str, pq: dict[str, float], latency: float, run_id: str = "r0") -> str:
    key = hashlib.sha256(method.encode()).hexdigest()
    rec = {
        "schema": 1, "key": key, "run_id": run_id, "suite": "retrieval@1", "task": "retrieval",
        "method": method, "method_name": method.split("(")[0], "family": "sparse-encoder",
        "params": {}, "settings": {}, "dataset": {"id": "faq", "checksum": "c" * 64, "counts": {}},
        "main_metric": "nDCG@10",
        "metrics": {"nDCG@10": {"value": float(np.mean(list(pq.values()))), "unit": "", "n": N, "direction": "higher"}},
        "costs": {"latency_p50_ms": {"value": latency, "unit": "ms", "n": N}},
        "profile": {"id": "cpu-2core", "fingerprint": "fp", "matched": True},
        "provenance": {"git_commit": "abc", "git_dirty": False, "packages": {}},
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": f"2026-01-01T00:00:1{len(run_id)}+00:00",
        "status": "ok", "error": None, "duration_s": 1.0,
        "per_query": sidecars.write_sidecar(results, "retrieval", key, run_id, {q: {"nDCG@10": v} for q, v in pq.items()}),
    }
    records.append(results / "retrieval.jsonl", rec)
    return "rec-" + key


def test_rendered_page_shows_tied_and_dominated_points(tmp_path: Path) -> None:
    results = tmp_path / "results"
    fast = per_query(0.004, noise=0.05, seed=1)
    tied = per_query(0.0, noise=0.05, seed=2)  # slower and a hair worse: nominally dominated, not significantly
    bad = per_query(-0.2, noise=0.02, seed=3)  # slower and clearly worse
    keys = {"fast": write(results, "fast", fast, 1.0), "tied": write(results, "tied", tied, 4.0),
            "bad": write(results, "bad", bad, 6.0)}
    assert np.mean(list(fast.values())) > np.mean(list(tied.values()))
    pages = render_site(build_site(build_report(results, ReportOptions())))
    [page] = [html for rel, html in pages.items() if rel.startswith("suites/")]
    dom = parse(page)
    [table] = [t for t in dom.find_all("table", "frontier-table") if t.attrs["data-axis"] == "latency_p50_ms"]
    status = {tr.attrs["data-key"]: tr.find_all("td", "status")[0].attrs["data-status"] for tr in table.find_all("tr") if "data-key" in tr.attrs}
    frontier = {tr.attrs["data-key"] for tr in table.find_all("tr") if tr.attrs.get("data-frontier") == "yes"}
    assert frontier == {keys["fast"]}  # the plain frontier: the mean comparison alone
    assert status == {keys["fast"]: FRONTIER, keys["tied"]: TIED, keys["bad"]: DOMINATED}
    # the plot draws each status as its class
    circles = {a.attrs["data-key"]: a.find_all("circle")[0].attrs["class"].split() for a in table.parent.find_all("a") if a.find_all("circle")}
    assert TIED in circles[keys["tied"]] and DOMINATED in circles[keys["bad"]] and "front" in circles[keys["fast"]]
    # an older repeat of `fast` that took 7 ms: its spread now covers bad's 6 ms, so bad is only tied
    write(results, "fast", fast, 7.0, run_id="o")
    pages = render_site(build_site(build_report(results, ReportOptions())))
    [page] = [html for rel, html in pages.items() if rel.startswith("suites/")]
    [table] = [t for t in parse(page).find_all("table", "frontier-table") if t.attrs["data-axis"] == "latency_p50_ms"]
    cell = next(tr for tr in table.find_all("tr") if tr.attrs.get("data-key") == keys["bad"]).find_all("td", "status")[0]
    assert cell.attrs["data-status"] == TIED and "spread" in cell.attrs["title"]
