"""kvpress's presses through sparsebench's adapter, in the `kv` worker environment, on the real
runner path (the runner starts these methods' workers with .venvs/kv's Python): ratio 0 is the
dense model, the bytes the cache holds fall with the ratio, every press runs on both suites.

`make test` creates that environment (scripts/setup.sh --env kv); outside CI a missing one skips
these tests, in CI it fails them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from sparsebench import envs
from sparsebench.cli import main
from sparsebench.methods.kv_cache import KVPRESS_ARCHITECTURES

from .conftest import records_in
from .test_lm import run_lm

if not envs.python_of("kv").exists() and not envs.here_has("kv"):
    if os.environ.get("CI"):
        raise RuntimeError("CI: the kv worker environment is missing; `make test` runs scripts/setup.sh --env kv")
    pytest.skip("no .venvs/kv (scripts/setup.sh --env kv)", allow_module_level=True)

PRESSES = ["streaming_llm", "snapkv", "pyramidkv", "h2o", "knorm", "tova", "expected_attention", "qfilter"]
# Windows of 96 tokens, the first 64 prefilled into the cache: ratios are then whole positions.
KV = ["--set", "context_length=96", "--set", "prefill_tokens=64"]


def _records(results_dir: Path, suite: str = "lm") -> dict[str, dict]:
    return {r["method"]: r for r in records_in(results_dir / f"{suite}.jsonl")}


def test_the_architectures_we_accept_are_the_ones_kvpress_supports() -> None:
    code = "import json; from kvpress.presses.base_press import SUPPORTED_MODELS as s; print(json.dumps([c.__name__ for c in s]))"
    out = subprocess.run([str(envs.python_of("kv")), "-c", code], capture_output=True, text=True, check=True)
    assert sorted(json.loads(out.stdout)) == sorted(KVPRESS_ARCHITECTURES)


def _in_kv_env(tiny_lm: Path, methods: list[str]) -> dict:
    helper = Path(__file__).parent / "helpers" / "kv_presses.py"
    out = subprocess.run([str(envs.python_of("kv")), str(helper), str(tiny_lm), *methods], capture_output=True,
                         text=True, cwd=Path(__file__).parent.parent, env={**os.environ, "TQDM_DISABLE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_ratio_zero_is_the_dense_model_and_bytes_fall_with_the_ratio(tiny_lm: Path) -> None:
    # SnapKV and PyramidKV score from the last window_size prompt queries; 64 would be the whole prefill.
    shrinking = {"snapkv(dense,ratio=0.25,window_size=8)": 0.25, "snapkv(dense,window_size=8)": 0.5,
                 "snapkv(dense,ratio=0.75,window_size=8)": 0.75, "streaming_llm(dense,ratio=0.75)": 0.75,
                 "knorm(dense,ratio=0.75)": 0.75, "pyramidkv(dense,window_size=8,beta=2)": 0.5,
                 "h2o(dense,ratio=0.25)": 0.25, "tova(dense,ratio=0.25)": 0.25,
                 "expected_attention(dense,ratio=0.25)": 0.25, "qfilter(dense,ratio=0.25)": 0.25}
    identity = [f"{p}(dense,ratio=0.0)" for p in PRESSES]
    got = _in_kv_env(tiny_lm, identity + list(shrinking))
    dense = torch.tensor(got["dense"])
    full = got[identity[0]]["bytes"]
    for method in identity:  # the first 64 positions prefilled, the last 32 run against the cache
        assert torch.allclose(torch.tensor(got[method]["logits"]), dense, atol=1e-5), method
        assert got[method]["bytes"] == full and got[method]["tokens"] == 64 * got[method]["layers"], method
    assert got["h2o(dense,ratio=0.0)"]["attention"] == "eager"
    for method, ratio in shrinking.items():
        assert got[method]["bytes"] == pytest.approx((1 - ratio) * full, rel=0.05), method
        assert not torch.allclose(torch.tensor(got[method]["logits"])[64:], dense[64:], atol=1e-5), method
        assert torch.allclose(torch.tensor(got[method]["logits"])[:64], dense[:64], atol=1e-5), method  # prefill: dense
    # PyramidKV gives deeper layers less: same total, uneven layers (where its budget formula
    # leaves every layer at least window_size positions; else it falls back to SnapKV's even split).
    lo, hi = got["pyramidkv(dense,window_size=8,beta=2)"]["range"]
    assert lo < hi


def test_presses_run_on_the_runner_path_in_the_kv_environment(tiny_lm: Path, results_dir: Path) -> None:
    assert run_lm(results_dir, tiny_lm, *KV, "--method", "dense,snapkv(dense,window_size=8)") == 0
    recs = _records(results_dir)
    assert all(r["status"] == "ok" for r in recs.values()), {m: r.get("error") for m, r in recs.items()}
    dense, rec = recs["dense"], recs["snapkv(dense,window_size=8)"]
    assert rec["extra"]["worker"]["kvpress"] == "0.5.5" and rec["extra"]["worker"]["transformers"].startswith("5.2")
    assert rec["extra"]["kv_scoring"]["prefilled"] == 64
    full = dense["costs"]["kv_bytes"]["value"]
    assert rec["costs"]["kv_bytes"]["value"] == pytest.approx(full / 2, rel=0.05)
    assert rec["costs"]["kv_kept_fraction"]["value"] == pytest.approx(0.5, rel=0.05)
    # decoding appends uncompressed positions to what the prefill kept
    steps = rec["costs"]["kv_bytes_decode"]["decode_steps"]
    assert rec["costs"]["kv_bytes_decode"]["value"] == pytest.approx(full / 2 + steps * full / 64, rel=0.05)
    assert rec["metrics"]["nll"]["value"] != dense["metrics"]["nll"]["value"]


def test_presses_compose_with_a_pruned_model_and_run_the_long_context_suite(tiny_lm: Path, results_dir: Path) -> None:
    args = ["run", "--suite", "long-context", "--smoke", "--no-progress", "--results", str(results_dir),
            "--set", f"model={tiny_lm}", "--set", "lengths=300", "--set", "calibration_samples=2",
            "--set", "max_new_tokens=3",
            "--method", "dense,qfilter(dense,ratio=0.5),h2o(magnitude(sparsity=0.5),ratio=0.5)"]
    assert main(args) == 0
    recs = _records(results_dir, "long-context")
    assert all(r["status"] == "ok" for r in recs.values()), {m: r.get("error") for m, r in recs.items()}
    full = recs["dense"]["costs"]["kv_bytes"]["value"]
    for method in ("qfilter(dense)", "h2o(magnitude)"):
        assert recs[method]["costs"]["kv_bytes"]["value"] == pytest.approx(full / 2, rel=0.05), method
    pruned = recs["h2o(magnitude)"]
    sparsity = pruned["extra"]["layer_sparsity"]
    assert sparsity and all(f == pytest.approx(0.5, abs=0.01) for f in sparsity.values())
    assert pruned["extra"]["kv"]["attention"] == "eager"


def test_transformers_quantized_cache_over_a_press_quantizes_what_the_press_kept(tiny_lm: Path, results_dir: Path) -> None:
    methods = "quanto(dense,group=16,residual=4),quanto(snapkv(dense,window_size=8),group=16,residual=4)"
    assert run_lm(results_dir, tiny_lm, *KV, "--method", methods) == 0
    recs = _records(results_dir)
    assert all(r["status"] == "ok" for r in recs.values()), {m: r.get("error") for m, r in recs.items()}
    alone, over = recs["quanto(dense,group=16,residual=4)"], recs["quanto(snapkv(dense,window_size=8),group=16,residual=4)"]
    assert over["extra"]["worker"]["kvpress"] and "kvpress" not in alone["extra"]["worker"]
    assert over["costs"]["kv_kept_fraction"]["value"] == pytest.approx(0.5)
    assert over["costs"]["kv_bytes"]["value"] == pytest.approx(alone["costs"]["kv_bytes"]["value"] / 2, rel=0.1)
