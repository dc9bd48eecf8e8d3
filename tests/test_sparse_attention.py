"""Sparse attention methods inside a real (tiny, random) Llama: identity at density 1, the
in-model kernel against the dense reference with the same mask, decode against prefill, the
density achieved, the needle cases and the long-context task end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparsebench import registry
from sparsebench.attention import hook
from sparsebench.cli import main
from sparsebench.kernels import block_attention
from sparsebench.lm.model import load_causal_lm
from sparsebench.lm.needles import exact_match, make_cases
from sparsebench.lmtext import load_text
from sparsebench.methods.lm_base import Calibration

from .conftest import records_in

METHODS = ["window", "sink_window", "strided", "quest", "loki"]


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def _apply(tiny_lm: Path, method_id: str):
    lm = load_causal_lm(str(tiny_lm))
    method = registry.build(method_id)
    g = torch.Generator().manual_seed(1)
    calib = Calibration(torch.randint(0, 300, (3, 64), generator=g)) if method.needs_calibration else None
    report = method.apply(lm, calib, None)
    return lm, report


def _ids(n: int = 200) -> torch.Tensor:
    return torch.randint(3, 300, (2, n), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", METHODS)
def test_density_one_reproduces_the_dense_logits(tiny_lm: Path, name: str) -> None:
    dense = load_causal_lm(str(tiny_lm))
    ids = _ids()
    ref = _logits(dense.model, ids)
    lm, report = _apply(tiny_lm, f"{name}(density=1.0,block=16)")
    assert lm.model.config._attn_implementation == hook.NAME  # the method's path ran, not transformers' own
    out = _logits(lm.model, ids)
    assert (out - ref).abs().max().item() <= 1e-5
    assert report.attention.density("prefill") == pytest.approx(1.0)


@pytest.mark.parametrize("name", METHODS)
def test_sparse_logits_differ_and_equal_the_dense_reference_with_the_same_mask(tiny_lm: Path, name: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _ids()
    dense = _logits(load_causal_lm(str(tiny_lm)).model, ids)
    lm, report = _apply(tiny_lm, f"{name}(density=0.25,block=16)")
    out = _logits(lm.model, ids)
    assert (out - dense).abs().max().item() > 1e-3  # the pattern changes what the model computes
    density = report.attention.density("prefill")
    # ceil rounding and the diagonal block keep it at or above the request; the strided pattern
    # reaches only the densities its integer strides give over 13 blocks
    assert 0.25 <= density < (0.6 if name == "strided" else 0.45)
    # The same layouts through the float64 dense reference instead of the block-sparse kernel.
    monkeypatch.setattr(hook, "block_sparse_attention", block_attention.reference_attention)
    ref = _logits(lm.model, ids)
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["window", "sink_window", "strided"])
def test_a_decode_step_attends_what_a_prefill_query_at_its_position_attends(tiny_lm: Path, name: str) -> None:
    lm, report = _apply(tiny_lm, f"{name}(density=0.3,block=16)")
    ids = _ids(203)[:1]
    with torch.inference_mode():
        out = lm.model(input_ids=ids[:, :200], use_cache=True)
        cache = out.past_key_values
        for t in range(200, 203):
            out = lm.model(input_ids=ids[:, t : t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
        full = lm.model(input_ids=ids).logits[:, -1]
    assert (out.logits[:, -1] - full).abs().max().item() <= 1e-4
    assert report.attention.phases["decode"].queries > 0
    assert 0 < report.attention.density("decode") < 1


def test_quest_keeps_the_block_whose_keys_match_the_query() -> None:
    """A planted key block aligned with the query gets the largest bound and is kept."""
    from sparsebench.attention.patterns import quest_layout

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 1, 8, generator=g)
    k = torch.randn(1, 1, 16 * 8, 8, generator=g) * 0.1
    k[0, 0, 3 * 16 : 4 * 16] = q[0, 0, 0] * 3  # block 3 aligned with head 0's query
    lay = quest_layout(q, k, density=0.25, block_size=16, first_row=7)  # 8 visible blocks, budget 2
    assert lay.shape == (1, 1, 1, 8)
    assert lay[0, 0, 0].nonzero().flatten().tolist() == [3, 7]


def test_bad_density_is_refused_before_anything_runs(tiny_lm: Path, results_dir: Path, caplog) -> None:
    code = main(["run", "--suite", "lm", "--no-progress", "--results", str(results_dir), "--set", f"model={tiny_lm}",
                 "--method", "window(density=0)"])
    assert code == 2
    assert "density=0" in caplog.text and "(0, 1]" in caplog.text
    assert not (results_dir / "lm.jsonl").exists()


def test_needle_cases_are_exact_length_deterministic_and_hold_their_answer(tiny_lm: Path) -> None:
    tok = load_causal_lm(str(tiny_lm)).tokenizer

    def text_of(ids) -> str:  # the tiny byte-level BPE has no decoder: join its tokens
        return "".join(tok.convert_ids_to_tokens(list(ids))).replace("\u0120", " ").replace("\u010a", "\n")

    hay = load_text("austen", "eval").text[:200_000]
    cases = make_cases(tok, hay, ["passkey", "multikey"], [300, 400], [0.1, 0.9], keys=3, seed=0)
    again = make_cases(tok, hay, ["passkey", "multikey"], [300, 400], [0.1, 0.9], keys=3, seed=0)
    assert cases == again and len(cases) == 8
    for c in cases:
        assert len(c.ids) == c.length
        text = text_of(c.ids)
        assert text.count(c.answer) == (2 if c.kind == "passkey" else 1)
        needle = text_of(c.ids[c.needle_position : c.needle_position + 20])
        assert ("pass key" in needle) if c.kind == "passkey" else ("magic number" in needle)
    deep, shallow = (next(c for c in cases if c.kind == "passkey" and c.length == 400 and c.depth == d) for d in (0.1, 0.9))
    assert deep.needle_position < shallow.needle_position
    assert make_cases(tok, hay, ["passkey"], [300], [0.5], keys=3, seed=1)[0].answer != \
        make_cases(tok, hay, ["passkey"], [300], [0.5], keys=3, seed=0)[0].answer
    assert exact_match(" 12345. Remember", "12345") and not exact_match(" 1234", "12345") and not exact_match("none", "1")


def test_long_context_smoke_subset_end_to_end(tiny_lm: Path, results_dir: Path) -> None:
    args = ["run", "--suite", "long-context", "--smoke", "--no-progress", "--results", str(results_dir),
            "--set", f"model={tiny_lm}", "--set", "lengths=300", "--set", "calibration_samples=2",
            "--set", "max_new_tokens=3", "--method", "dense,quest(density=0.25,block=16),loki(density=0.25,block=16)"]
    assert main(args) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "long-context.jsonl")}
    assert set(recs) == {"dense", "quest(block=16)", "loki(block=16)"}
    for name, rec in recs.items():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["settings"]["lengths"] == "300" and rec["settings"]["depths"] == "0.5"
        assert rec["metrics"]["accuracy"]["n"] == 2 and rec["metrics"]["accuracy/passkey"]["n"] == 1
        sidecar = json.loads((results_dir / rec["per_query"]["path"]).read_text())
        cases = sidecar.get("per_query", sidecar)
        assert sorted(cases) == ["multikey/300/0.5", "passkey/300/0.5"]
        assert all(v["accuracy"] in (0.0, 1.0) for v in cases.values())
        density = rec["costs"]["attention_density"]["value"]
        assert density == 1.0 if name == "dense" else 0.25 <= density < 0.45
        assert rec["costs"]["prefill_ms"]["tokens"] == 300
    assert recs["dense"]["costs"]["attention_flops_per_token"]["value"] > recs["quest(block=16)"]["costs"]["attention_flops_per_token"]["value"]
    assert main(["validate", str(results_dir / "long-context.jsonl")]) == 0
    # Run again: nothing to do (the smoke settings are part of the records' keys).
    assert main(args) == 0
    assert len(records_in(results_dir / "long-context.jsonl")) == 3
