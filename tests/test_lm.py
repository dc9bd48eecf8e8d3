"""The lm task end to end on a tiny real causal LM: records, metrics against an independent
computation, the sidecar of windows, lower-is-better ranking, compare over windows, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparsebench.cli import main

from .conftest import records_in

SMALL = ["--set", "context_length=32", "--set", "windows_per_text=3", "--set", "batch_size=2",
         "--set", "prefill_tokens=16", "--set", "decode_tokens=2", "--set", "latency_repeats=1",
         "--set", "calibration_samples=4", "--set", "calibration_length=16"]


def run_lm(results: Path, model: Path, *args: str) -> int:
    return main(["run", "--suite", "lm", "--no-progress", "--results", str(results), "--set", f"model={model}", *SMALL, *args])


def test_dense_baseline_record(tiny_lm: Path, results_dir: Path) -> None:
    assert run_lm(results_dir, tiny_lm, "--method", "dense") == 0
    [rec] = records_in(results_dir / "lm.jsonl")
    assert rec["status"] == "ok" and rec["task"] == "lm" and rec["model"] == {"id": str(tiny_lm)}
    assert rec["settings"]["model"] == str(tiny_lm)
    assert rec["metrics"]["perplexity"]["direction"] == "lower"
    assert rec["metrics"]["token_accuracy"]["direction"] == "higher"
    assert rec["metrics"]["perplexity"]["n"] == 6 and rec["metrics"]["perplexity/austen"]["n"] == 3
    for axis in ("prefill_ms", "decode_ms_per_token", "eval_tokens_per_s", "model_bytes", "calibration_s", "peak_rss_mb"):
        assert rec["costs"][axis]["value"] > 0 or axis == "calibration_s", axis
    # An unpruned model has (almost) no zero weights, and is stored densely.
    assert rec["costs"]["weight_sparsity"]["value"] < 0.01
    assert rec["costs"]["model_bytes"]["format"].startswith("safetensors")
    assert rec["extra"]["worker"]["transformers"]
    sidecar = json.loads((results_dir / rec["per_query"]["path"]).read_text())
    per_window = sidecar.get("per_query", sidecar)
    assert sorted(per_window) == sorted(k for k in per_window if k.split("/")[0] in ("austen", "wiki"))
    assert len(per_window) == 6
    assert main(["validate", str(results_dir / "lm.jsonl")]) == 0


def test_perplexity_equals_an_independent_computation(tiny_lm: Path, results_dir: Path) -> None:
    """Perplexity recomputed with the model's own loss (labels=ids) on the windows the record names."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sparsebench.lmtext import load_text

    assert run_lm(results_dir, tiny_lm, "--method", "dense") == 0
    [rec] = records_in(results_dir / "lm.jsonl")
    sidecar = json.loads((results_dir / rec["per_query"]["path"]).read_text())
    per_window = sidecar.get("per_query", sidecar)
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    losses = {}
    for name in ("austen", "wiki"):
        ids = tok(load_text(name, "eval").text, add_special_tokens=False)["input_ids"]
        for wid in [w for w in per_window if w.startswith(name + "/")]:
            start = int(wid.split("/")[1])
            window = torch.tensor([ids[start : start + 32]])
            with torch.no_grad():
                losses[wid] = float(model(window, labels=window).loss)
    assert len(losses) == 6
    for wid, loss in losses.items():
        assert per_window[wid]["nll"] == pytest.approx(loss, rel=1e-5)
    expected = math.exp(sum(losses.values()) / len(losses))
    assert rec["metrics"]["perplexity"]["value"] == pytest.approx(expected, rel=1e-5)
    austen = [v for k, v in losses.items() if k.startswith("austen/")]
    assert rec["metrics"]["perplexity/austen"]["value"] == pytest.approx(math.exp(sum(austen) / 3), rel=1e-5)


def test_a_retrieval_method_is_refused_by_the_lm_suite(tiny_lm: Path, results_dir: Path, caplog) -> None:
    assert run_lm(results_dir, tiny_lm, "--method", "bm25") == 2
    err = caplog.text
    assert "bm25 is a sparse-encoder method; the lm task runs language-model methods" in err
    assert not results_dir.exists() or not (results_dir / "lm.jsonl").exists()


@pytest.mark.parametrize("model", ["nobody/no-such-model", "/nonexistent/folder"])
def test_an_unloadable_model_is_one_line_and_exit_2(model: str, results_dir: Path, caplog) -> None:
    rc = main(["run", "--suite", "lm", "--no-progress", "--results", str(results_dir), "--set", f"model={model}"])
    assert rc == 2
    err = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert len(err) == 1 and f"model {model!r} cannot be loaded" in err[0] and "Pre-fetch it" in err[0]
    assert not (results_dir / "lm.jsonl").exists()


def test_paired_rows_test_perplexity_on_nll_and_count_lower_as_better() -> None:
    from sparsebench.compare import paired_rows

    new = {f"w{i}": {"nll": 2.0 + 0.01 * i, "perplexity": math.exp(2.0 + 0.01 * i)} for i in range(10)}
    base = {f"w{i}": {"nll": 2.5 + 0.01 * i, "perplexity": math.exp(2.5 + 0.01 * i)} for i in range(10)}
    new["w0"]["perplexity/a"] = base["w0"]["perplexity/a"] = 1.0  # a metric only some windows have
    [row, part] = paired_rows(new, base, ["perplexity", "perplexity/a"], {"perplexity": "lower", "perplexity/a": "lower"},
                              "t", frozenset({"perplexity"}))
    assert row.new == pytest.approx(math.exp(sum(v["nll"] for v in new.values()) / 10))
    assert row.base == pytest.approx(math.exp(sum(v["nll"] for v in base.values()) / 10))
    assert row.delta < 0 and row.improved == 10 and row.degraded == 0 and not row.significantly_worse
    assert part.n == 1


def test_report_and_compare_rank_perplexity_lower_as_better(tiny_lm: Path, results_dir: Path, tmp_path: Path, capsys) -> None:
    """Real lm records: the report's lm section ranks by perplexity ascending, its frontiers
    reverse the quality axis, deltas are against `dense`; compare pairs the windows."""
    from .test_report import parse, sections

    ids = ["dense", "magnitude(sparsity=0.7)", "magnitude(sparsity=0.3)", "wanda(sparsity=0.5,backend=reference)"]
    assert run_lm(results_dir, tiny_lm, *[a for i in ids for a in ("--method", i)]) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    ppl = {m: r["metrics"]["perplexity"]["value"] for m, r in recs.items()}
    out = tmp_path / "site"
    assert main(["report", "--results", str(results_dir), "--out", str(out)]) == 0
    [page] = (out / "suites").glob("lm-*.html")
    dom = parse(page.read_text())
    [section] = [s for (suite, _), s in sections(dom).items() if suite.startswith("lm@")]
    assert str(tiny_lm) in section.find_all("h1")[0].text()  # grouped by model
    board = section.find_all("table", "leaderboard")[0]
    order = [td.find_all("a")[0].text() for td in board.find_all("td", "method")]
    assert order == sorted(ppl, key=ppl.get)  # best (lowest) perplexity first
    assert "Relative to baseline dense" in section.text()
    axes = {f.attrs["data-axis"] for f in section.find_all("figure", "frontier")}
    assert {"prefill_ms", "decode_ms_per_token", "model_bytes"} <= axes
    assert "lower is better: axis reversed" in section.text()

    capsys.readouterr()
    rc = main(["compare", "magnitude(sparsity=0.3)", "--baselines", "magnitude(sparsity=0.7)", "--suite", "lm",
               "--results", str(results_dir), "--set", f"model={tiny_lm}", *SMALL, "--timing-repeats", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "6 windows paired by id" in text
    assert len(records_in(results_dir / "lm.jsonl")) == 4  # everything was measured already: nothing re-ran
