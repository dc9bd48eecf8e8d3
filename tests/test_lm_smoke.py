"""CI's smoke subset of the lm suite on the real SmolLM2-135M: short windows, one sparsity, every
method family, then compare and report on what it recorded. The full suite (512-token windows,
three sparsities per method and pattern) is a benchmark run: `bench run --suite lm`.

The model comes from its registry wheel and is dequantized once into the tests' shared model
folder; wanda and sparsegpt run through llm-compressor in the prune worker environment
(`make test` creates it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparsebench import envs
from sparsebench.cli import main

from .conftest import records_in

pytestmark = pytest.mark.smoke

SMOKE = ["--set", "context_length=128", "--set", "windows_per_text=4", "--set", "batch_size=4",
         "--set", "calibration_samples=16", "--set", "calibration_length=128", "--set", "prefill_tokens=64",
         "--set", "decode_tokens=4", "--set", "latency_repeats=1"]
METHODS = ["dense", "magnitude", "magnitude(m=4)", "wanda", "sparsegpt", "teal"]


def test_smoke_subset_on_smollm2(results_dir: Path, tmp_path: Path, capsys) -> None:
    if not envs.python_of("prune").exists() and not os.environ.get("CI"):
        pytest.skip("no .venvs/prune (scripts/setup.sh --env prune)")
    assert main(["run", "--suite", "lm", "--no-progress", "--results", str(results_dir), *SMOKE,
                 *[a for m in METHODS for a in ("--method", m)]]) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    assert sorted(recs) == sorted(METHODS) and all(r["status"] == "ok" for r in recs.values())
    ppl = {m: r["metrics"]["perplexity"]["value"] for m, r in recs.items()}
    # A real pretrained model: the unmodified one predicts this text far better than chance
    # (a 49,152-token vocabulary), and every method at 50% costs it quality.
    assert 3 < ppl["dense"] < 60, ppl
    assert all(ppl[m] > ppl["dense"] for m in METHODS[1:]), ppl
    # Published ordering at 50% unstructured: Wanda and SparseGPT well ahead of magnitude.
    assert ppl["wanda"] < 0.75 * ppl["magnitude"] and ppl["sparsegpt"] < 0.75 * ppl["magnitude"], ppl
    assert recs["wanda"]["extra"]["backend"] == recs["sparsegpt"]["extra"]["backend"] == "llmcompressor"
    assert recs["dense"]["model"] == {"id": "smollm2-135m"}
    dense_bytes = recs["dense"]["costs"]["model_bytes"]["value"]
    assert recs["magnitude"]["costs"]["model_bytes"]["value"] < dense_bytes  # stored sparse, its real bytes
    for m in METHODS[1:4]:
        assert recs[m]["costs"]["weight_sparsity"]["value"] == pytest.approx(0.5, abs=0.01), m

    capsys.readouterr()
    assert main(["compare", "wanda", "--baselines", "magnitude", "--suite", "lm", "--results", str(results_dir),
                 *SMOKE, "--timing-repeats", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "wanda vs magnitude  (8 windows paired by id" in text
    assert len(records_in(results_dir / "lm.jsonl")) == len(METHODS)  # compare re-ran nothing

    out = tmp_path / "site"
    assert main(["report", "--results", str(results_dir), "--out", str(out)]) == 0
    assert "austen+wiki / smollm2-135m" in (out / "index.html").read_text()
    [page] = (out / "suites").glob("lm-*.html")
    assert "Relative to baseline dense" in page.read_text()
