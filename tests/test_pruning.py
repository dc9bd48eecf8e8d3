"""Pruning and activation sparsity: the masks each scheme leaves per layer, the identity point,
the plain references, the stored format, and the method ids' bad input (one line, exit 2,
nothing written). The llm-compressor backend is checked against these in test_pruning_llmc.py."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsebench.cli import main
from sparsebench.pruning import activation, masks, prune, prunable_linears
from sparsebench.pruning.reference import sparsegpt_reference, wanda_reference
from sparsebench.pruning.sparse_format import CSRLinear, decode, encode, storage, to_sparse_csr_linear

from .conftest import records_in
from .test_lm import run_lm


@pytest.fixture(scope="module")
def model(tiny_lm: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_lm).eval()


@pytest.fixture(scope="module")
def calibration(tiny_lm: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    from sparsebench.lmtext import load_text

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    ids = tok(load_text("austen", "calib").text[:20_000], add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[: 8 * 32]).reshape(8, 32)


def logits(m: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m(input_ids=ids).logits


# --------------------------------------------------------------------- per-layer zero fractions
@pytest.mark.parametrize("scheme", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_zero_fraction_per_layer_is_the_requested_sparsity(model, calibration, scheme, sparsity) -> None:
    m = copy.deepcopy(model)
    report = prune(m, scheme, sparsity, calibration=calibration, backend="reference")
    linears = prunable_linears(m)
    assert len(linears) == 14  # 2 layers x q, k, v, o, gate, up, down; never embeddings or lm_head
    assert not (m.lm_head.weight == 0).any()
    for name, lin in linears.items():
        w = lin.weight
        if scheme == "sparsegpt":
            # The paper's rule: one threshold per 128-column block over all rows, `<=` the
            # int(numel * s)-th smallest score, so int(numel*s) + 1 zeros per block.
            blocks = [w[:, i:i + 128] for i in range(0, w.shape[1], 128)]
            assert int((w == 0).sum()) == sum(int(b.numel() * sparsity) + 1 for b in blocks), name
        else:
            # Per output row, exactly round(s * in) zeros.
            per_row = (w == 0).sum(dim=1)
            assert (per_row == round(sparsity * w.shape[1])).all(), name
        assert abs(float((w == 0).float().mean()) - sparsity) <= 1 / w.shape[1], name
        assert report.layers[name] == (int((w == 0).sum()), w.numel())


@pytest.mark.parametrize("scheme", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_nm_pattern_holds_in_every_group_of_every_layer(model, calibration, scheme, pattern) -> None:
    n, mm = masks.parse_pattern(pattern)
    m = copy.deepcopy(model)
    report = prune(m, scheme, None, pattern, calibration=calibration, backend="reference")
    assert report.sparsity == pytest.approx(1 - n / mm)
    for name, lin in prunable_linears(m).items():
        w = lin.weight
        groups = (w != 0).reshape(w.shape[0], -1, mm).sum(dim=2)
        assert (groups == n).all(), name  # exactly N kept (random weights: no accidental zeros)
        assert float((w == 0).float().mean()) == pytest.approx(1 - n / mm), name


@pytest.mark.parametrize("scheme", ["magnitude", "wanda", "sparsegpt"])
def test_sparsity_zero_leaves_the_logits_bit_identical(model, calibration, scheme) -> None:
    m = copy.deepcopy(model)
    prune(m, scheme, 0.0, calibration=calibration, backend="reference")
    assert torch.equal(logits(m, calibration), logits(model, calibration))


# --------------------------------------------------------------------------- plain references
def test_wanda_reference_equals_a_loop_over_rows() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 16, generator=g)
    x = torch.randn(40, 16, generator=g) * torch.linspace(0.1, 3.0, 16)  # features of unequal norm
    got = wanda_reference(w, x, 0.5)
    norms = [sum(float(x[t, j]) ** 2 for t in range(40)) ** 0.5 for j in range(16)]
    want = w.clone()
    for i in range(6):
        scores = [(abs(float(w[i, j])) * norms[j], j) for j in range(16)]
        for _, j in sorted(scores)[:8]:
            want[i, j] = 0.0
    assert torch.equal(got, want)
    # Wanda differs from magnitude exactly where the activation norms reorder the weights.
    from sparsebench.pruning.magnitude import magnitude_prune_weight

    assert not torch.equal(got != 0, magnitude_prune_weight(w, 0.5) != 0)


def test_sparsegpt_reconstructs_the_layer_output_better_than_masking_alone() -> None:
    """The OBS update: under the mask SparseGPT chose, its weights beat the original values and
    are bounded below by least squares of each row on its kept inputs; on inputs whose features
    differ in scale (as LLM activations do) it beats Wanda and magnitude at the same sparsity."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(16, 64, generator=g, dtype=torch.float64)
    x = torch.randn(512, 64, generator=g, dtype=torch.float64) * torch.linspace(0.2, 3.0, 64, dtype=torch.float64)
    pruned = sparsegpt_reference(w, x, 0.5, blocksize=64)
    keep = pruned != 0
    err = lambda v: float(((x @ w.T - x @ v.T) ** 2).sum())  # noqa: E731
    from sparsebench.pruning.magnitude import magnitude_prune_weight

    assert err(pruned) < err(w * keep)
    assert err(pruned) < err(wanda_reference(w, x, 0.5)) < err(magnitude_prune_weight(w, 0.5))
    best = w.clone()
    for i in range(16):  # least squares of each row on its kept columns: the lower bound for this mask
        cols = keep[i].nonzero().squeeze(1)
        best[i] = 0
        best[i, cols] = torch.linalg.lstsq(x[:, cols], x @ w[i]).solution
    assert err(best) <= err(pruned) * (1 + 1e-9)


def test_bad_sparsity_and_patterns_are_value_errors(model) -> None:
    for bad in (1.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="sparsity"):
            prune(copy.deepcopy(model), "magnitude", bad)
    with pytest.raises(ValueError, match="implies sparsity 0.5"):
        prune(copy.deepcopy(model), "magnitude", 0.3, "2:4")
    with pytest.raises(ValueError, match="not a multiple of M=48"):
        prune(copy.deepcopy(model), "magnitude", None, "24:48")
    with pytest.raises(ValueError, match="needs calibration"):
        prune(copy.deepcopy(model), "wanda", 0.5, backend="reference")


# -------------------------------------------------------------------------- activation sparsity
def test_teal_reaches_its_target_and_is_removable(model, calibration) -> None:
    m = copy.deepcopy(model)
    before = logits(m, calibration)
    thresholds = activation.calibrate_thresholds(m, calibration, 0.5)
    assert set(thresholds) == {n for n in prunable_linears(m) if n.split(".")[-1] in ("gate_proj", "up_proj", "down_proj")}
    achieved = activation.measure(m, thresholds, calibration)
    for name in thresholds:
        assert achieved[name] == pytest.approx(0.5, abs=0.03), name
    with activation.apply(m, thresholds):
        assert not torch.equal(logits(m, calibration), before)
    assert torch.equal(logits(m, calibration), before)  # hooks off: the model is as it was
    zero = activation.calibrate_thresholds(m, calibration, 0.0)
    with activation.apply(m, zero):
        assert torch.equal(logits(m, calibration), before)


# ------------------------------------------------------------------------------ sparse storage
@pytest.mark.parametrize("layout", ["dense", "csr", "bitmask"])
def test_stored_layouts_are_lossless(layout) -> None:
    from sparsebench.pruning.magnitude import magnitude_prune_weight

    w = magnitude_prune_weight(torch.randn(12, 40, generator=torch.Generator().manual_seed(3)), 0.6)
    assert torch.equal(decode(encode("x.weight", w, layout), "x.weight"), w)


def test_model_bytes_shrink_with_sparsity_and_csr_linears_compute_the_same(model, calibration) -> None:
    dense = storage(model)
    m = copy.deepcopy(model)
    prune(m, "magnitude", 0.7)
    sparse = storage(m)
    assert sparse.bytes_on_disk < dense.bytes_on_disk
    assert sparse.nnz == pytest.approx(0.3 * sparse.numel, rel=0.02)
    assert {layout for layout, _ in sparse.layouts.values()} <= {"csr", "bitmask"}
    want = logits(m, calibration)
    to_sparse_csr_linear(m)
    assert all(isinstance(mod, CSRLinear) for mod in (m.model.layers[0].mlp.up_proj, m.model.layers[1].self_attn.q_proj))
    assert torch.allclose(logits(m, calibration), want, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ through the runner (methods)
def test_every_method_at_sparsity_zero_reproduces_the_dense_perplexity(tiny_lm: Path, results_dir: Path) -> None:
    ids = ["dense", "magnitude(sparsity=0)", "wanda(sparsity=0,backend=reference)",
           "sparsegpt(sparsity=0,backend=reference)", "teal(sparsity=0)"]
    assert run_lm(results_dir, tiny_lm, *[a for i in ids for a in ("--method", i)]) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    assert len(recs) == 5 and all(r["status"] == "ok" for r in recs.values())
    dense = recs["dense"]["metrics"]
    for method, rec in recs.items():
        for metric in ("perplexity", "perplexity/austen", "perplexity/wiki", "token_accuracy"):
            assert rec["metrics"][metric]["value"] == dense[metric]["value"], (method, metric)


def test_pruned_records_carry_what_was_measured(tiny_lm: Path, results_dir: Path) -> None:
    ids = ["magnitude(sparsity=0.5)", "wanda(m=4,backend=reference)", "teal(sparsity=0.5)"]
    assert run_lm(results_dir, tiny_lm, *[a for i in ids for a in ("--method", i)]) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    # canonical ids: defaults (sparsity=0.5) omitted, arguments in declaration order
    mag, nm, teal = recs["magnitude"], recs["wanda(m=4,backend=reference)"], recs["teal"]
    for rec in (mag, nm):
        assert rec["costs"]["weight_sparsity"]["value"] == pytest.approx(0.5, abs=0.01)
        assert all(v == pytest.approx(0.5, abs=1 / 64) for v in rec["extra"]["layer_sparsity"].values())
    assert nm["extra"]["pattern"] == "2:4" and nm["extra"]["backend"] == "reference"
    assert len(nm["extra"]["calibration"]["samples"]) == 4  # the drawn samples are recorded
    assert teal["costs"]["activation_sparsity"]["value"] == pytest.approx(0.5, abs=0.05)
    assert teal["costs"]["effective_flops_per_token"]["value"] < teal["costs"]["flops_per_token"]["value"]


@pytest.mark.parametrize("method, says", [
    ("magnitude(sparsity=1.0)", "out of range"),
    ("wanda(sparsity=-0.1)", "out of range"),
    ("magnitude(m=4,sparsity=0.3)", "N:M needs a whole N"),
    ("sparsegpt(m=48)", "does not divide the layers: hidden_size = 64 is not a multiple of m=48"),
    ("teal(sparsity=1.5)", "out of range"),
    ("magnitude(sparsity=0.7,kernel=semi24)", "kernel=semi24 serves the 2:4 pattern only (m=4, sparsity=0.5); got unstructured"),
    # A 2:4 kernel on a profile without a GPU: refused before the model loads, not recorded as a failure.
    ("wanda(m=4,kernel=semi24,backend=reference)", "need an NVIDIA GPU of compute capability 8.0 or later; this profile's device is cpu"),
])
def test_bad_method_arguments_are_one_line_exit_2_and_nothing_written(
        tiny_lm: Path, results_dir: Path, caplog, method: str, says: str) -> None:
    with caplog.at_level(logging.WARNING):
        assert run_lm(results_dir, tiny_lm, "--method", method) == 2
    err = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(err) == 1 and says in err[0] and "\n" not in err[0], err
    assert not (results_dir / "lm.jsonl").exists()
