"""Wanda and SparseGPT through llm-compressor, in the `prune` worker environment, against
sparsebench's plain reference implementations: same masks, same perplexity, on the real runner
path (the runner starts the method's worker with .venvs/prune's Python).

`make test` creates that environment (scripts/setup.sh --env prune); outside CI a missing one
skips these tests, in CI it fails them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from sparsebench import envs

from .conftest import records_in
from .test_lm import run_lm

if not envs.python_of("prune").exists() and not envs.here_has("prune"):
    if os.environ.get("CI"):
        raise RuntimeError("CI: the prune worker environment is missing; `make test` runs scripts/setup.sh --env prune")
    pytest.skip("no .venvs/prune (scripts/setup.sh --env prune)", allow_module_level=True)


def _records(results_dir: Path) -> dict[str, dict]:
    return {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}


@pytest.mark.parametrize("library, reference", [
    ("wanda", "wanda(backend=reference)"),
    ("wanda(m=4)", "wanda(m=4,backend=reference)"),
    ("sparsegpt(m=8)", "sparsegpt(m=8,backend=reference)"),
])
def test_llmcompressor_prunes_like_the_reference(tiny_lm: Path, results_dir: Path, library: str, reference: str) -> None:
    assert run_lm(results_dir, tiny_lm, "--method", library, "--method", reference) == 0
    recs = _records(results_dir)
    lib, ref = recs[library], recs[reference]
    assert lib["status"] == ref["status"] == "ok"
    assert lib["extra"]["backend"] == "llmcompressor" and ref["extra"]["backend"] == "reference"
    assert lib["extra"]["worker"]["llmcompressor"] and "llmcompressor" not in ref["extra"]["worker"]
    assert lib["extra"]["worker"]["transformers"].startswith("5.1")  # the environment llm-compressor pins
    assert lib["extra"]["layer_sparsity"] == ref["extra"]["layer_sparsity"]
    for metric in ("perplexity/austen", "perplexity/wiki", "token_accuracy"):
        assert lib["metrics"][metric]["value"] == pytest.approx(ref["metrics"][metric]["value"], rel=1e-4), metric


def test_unstructured_sparsegpt_matches_the_reference(tiny_lm: Path, results_dir: Path) -> None:
    assert run_lm(results_dir, tiny_lm, "--method", "sparsegpt(sparsity=0.3)",
                  "--method", "sparsegpt(sparsity=0.3,backend=reference)") == 0
    recs = _records(results_dir)
    lib, ref = recs["sparsegpt(sparsity=0.3)"], recs["sparsegpt(sparsity=0.3,backend=reference)"]
    for name, frac in ref["extra"]["layer_sparsity"].items():
        assert lib["extra"]["layer_sparsity"][name] == pytest.approx(frac, abs=2e-3), name
    assert lib["metrics"]["perplexity"]["value"] == pytest.approx(ref["metrics"]["perplexity"]["value"], rel=1e-3)


def test_a_missing_worker_environment_is_one_line_exit_2(tiny_lm: Path, results_dir: Path, tmp_path: Path,
                                                         monkeypatch, caplog) -> None:
    if envs.here_has("prune"):
        pytest.skip("this interpreter is the prune environment")
    monkeypatch.setenv("SPARSEBENCH_ENVS", str(tmp_path / "no-envs"))
    with caplog.at_level(logging.WARNING):
        assert run_lm(results_dir, tiny_lm, "--method", "dense", "--method", "wanda") == 2
    err = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(err) == 1 and "worker environment 'prune'" in err[0] and "scripts/setup.sh --env prune" in err[0]
    assert not (results_dir / "lm.jsonl").exists()  # refused before the dense baseline ran
