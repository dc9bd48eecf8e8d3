"""The sae suite: SAEBench's metrics against plain definitions, the identity and zero-ablation
points of CE loss recovered, the splice, the probe, the vSAE loss against its float64 reference,
and every SAE method trained and measured through the runner on a tiny Llama.

The trainers (dictionary_learning) live in the sae worker environment: `make test` creates it
(scripts/setup.sh --env sae); outside CI a missing one skips those tests, in CI it fails them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebench import envs
from sparsebench.cli import main
from sparsebench.sae import metrics as sm

from .conftest import records_in

SMALL = ["--set", "context_length=32", "--set", "train_tokens=4096", "--set", "eval_windows_per_text=3",
         "--set", "probe_windows=6", "--set", "epochs=2", "--set", "batch_size=128", "--set", "layer=1",
         "--set", "latency_repeats=1"]


def run_sae(results: Path, model: Path, *args: str) -> int:
    return main(["run", "--suite", "sae", "--no-progress", "--results", str(results), "--set", f"model={model}", *SMALL,
                 *args])


def need_sae_env() -> str:
    python = envs.python_of("sae")
    if python.exists():
        return str(python)
    if os.environ.get("CI"):
        raise RuntimeError("CI: the sae worker environment is missing; `make test` runs scripts/setup.sh --env sae")
    pytest.skip("no .venvs/sae (scripts/setup.sh --env sae)")


class _Linear:
    """A ReLU SAE with fixed random weights: enough to check metric definitions."""

    def __init__(self, d: int, f: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(f, d, generator=g) / d**0.5
        self.b = torch.randn(f, generator=g) - 1.0  # most latents off on most tokens
        self.b[:5] = -100.0  # and these never on

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.w.T + self.b)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.w


def test_core_metrics_equal_their_plain_definitions() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g) * 3 + 1
    sae = _Linear(8, 40, 2)
    got = sm.core(sae, x, 40, batch=64)  # batches: the sums must not depend on them
    xn = x.double().numpy()
    f = sae.encode(x).double().numpy()
    xh = sae.decode(sae.encode(x)).double().numpy()
    fired = (f != 0).sum(axis=0)
    cos = (xn * xh).sum(1) / np.linalg.norm(xn, axis=1) / np.linalg.norm(xh, axis=1).clip(1e-8)
    assert got["l0"] == pytest.approx((f != 0).sum(1).mean())
    assert got["fvu"] == pytest.approx(((xn - xh) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum(), rel=1e-5)
    assert got["cosine"] == pytest.approx(np.nan_to_num(cos).mean(), rel=1e-5)
    assert got["dead_latents"] == pytest.approx((fired == 0).mean()) and 0 < got["dead_latents"] < 1
    assert got["dense_latents"] == pytest.approx((fired / 300 > 0.1).mean())


def test_ce_loss_recovered_is_one_for_the_identity_and_zero_for_zero_ablation(tiny_lm: Path) -> None:
    from sparsebench.lm.model import load_causal_lm
    from sparsebench.lm.windows import eval_windows
    from sparsebench.lmtext import load_text
    from sparsebench.lm.data import LMText
    from sparsebench.sae.activations import block

    lm = load_causal_lm(str(tiny_lm))
    texts = [LMText("austen", load_text("austen", "eval").text[:20000], "")]
    windows = eval_windows(lm.tokenizer, texts, 32, 4)

    class Identity:
        def encode(self, x): return x
        def decode(self, f): return f

    class Zero:
        def encode(self, x): return x
        def decode(self, f): return torch.zeros_like(f)

    layer = block(lm.model, 1)
    ident = sm.ce_losses(lm.model, layer, windows, 2, Identity())
    zero = sm.ce_losses(lm.model, layer, windows, 2, Zero())
    mean = {k: float(np.mean(v)) for k, v in ident.items()}
    assert ident["sae"] == ident["clean"]  # the splice itself changes nothing
    assert mean["zero"] != mean["clean"]  # (an untrained model's ablated loss may even be the lower one)
    assert sm.recovered(mean["clean"], mean["zero"], mean["sae"]) == 1.0
    zmean = {k: float(np.mean(v)) for k, v in zero.items()}
    assert sm.recovered(zmean["clean"], zmean["zero"], zmean["sae"]) == 0.0


def test_the_splice_leaves_position_zero_and_replaces_the_rest(tiny_lm: Path) -> None:
    from sparsebench.lm.model import load_causal_lm
    from sparsebench.sae.activations import block

    lm = load_causal_lm(str(tiny_lm))
    ids = torch.tensor([[5, 9, 11, 17, 23, 42]])
    seen = []
    handle = sm.splice(lm.model, block(lm.model, 0), lambda x: seen.append(x.shape) or torch.zeros_like(x))
    grab = block(lm.model, 0).register_forward_hook(lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.inference_mode():
            lm.model(input_ids=ids)
    finally:
        handle.remove()
        grab.remove()
    assert seen[0] == (5, 64)  # positions 1.. of the one window, flattened
    out = seen[1]
    assert torch.count_nonzero(out[0, 1:]) == 0 and torch.count_nonzero(out[0, 0]) > 0


def test_the_probe_finds_the_one_informative_latent() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    x = rng.normal(size=(40, 30))
    x[:, 17] += 4 * y  # only latent 17 carries the label
    assert sm.probe_accuracy(x, y, k=1) == 1.0
    x_noise = x.copy()
    x_noise[:, 17] = rng.normal(size=40)
    assert sm.probe_accuracy(x_noise, y, k=1) < 0.9


_VSAE = """
import json, sys, torch
from sparsebench.sae.variational import classes, loss_reference
sae_cls, trainer_cls = classes()
for learn, std in ((True, 0.2), (True, 30.0), (False, 0.0)):  # 30: log-variances past the clamp
    torch.manual_seed(0)
    tr = trainer_cls(steps=10, activation_dim=8, dict_size=24, k=3, layer=0, lm_name="t", kl=0.7, learn_variance=learn,
                     noise_seed=5, device="cpu", auxk_alpha=0.0, warmup_steps=1)
    if learn:
        torch.nn.init.normal_(tr.ae.log_var.weight, std=std)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(6, 24, generator=torch.Generator().manual_seed(5))
    got = float(tr.loss(x, step=0))
    ae = tr.ae
    lv = (ae.log_var.weight.detach().numpy(), ae.log_var.bias.detach().numpy()) if learn else (None, None)
    ref = loss_reference(x.numpy(), ae.encoder.weight.detach().numpy(), ae.encoder.bias.detach().numpy(), lv[0], lv[1],
                         ae.decoder.weight.detach().numpy(), ae.b_dec.detach().numpy(), eps.numpy(), 3, 0.7)
    # inference: the posterior mean through TopK, no noise
    f = ae.encode(x)
    print(json.dumps({"learn": learn, "got": got, "ref": ref, "l0": float((f != 0).sum(1).float().mean()),
                      "kl": tr.kl_value}))
"""


def test_the_vsae_loss_equals_its_float64_reference() -> None:
    python = need_sae_env()
    out = subprocess.run([python, "-c", _VSAE], check=True, capture_output=True, text=True, timeout=300)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3
    for r in rows:
        assert r["got"] == pytest.approx(r["ref"], rel=1e-5)
        assert r["kl"] > 0 and r["l0"] <= 3


def test_the_identity_sae_runs_through_the_runner(tiny_lm: Path, results_dir: Path) -> None:
    assert run_sae(results_dir, tiny_lm, "--method", "identity_sae") == 0
    [rec] = records_in(results_dir / "sae.jsonl")
    assert rec["status"] == "ok" and rec["task"] == "sae"
    m = rec["metrics"]
    assert m["ce_loss_recovered"]["value"] == 1.0 and m["fvu"]["value"] == 0.0
    assert m["cosine"]["value"] == pytest.approx(1.0) and m["l0"]["value"] <= 64
    assert rec["costs"]["sae_bytes"]["value"] == 0
    assert rec["extra"]["windows"]["eval"] == 6 and rec["extra"]["windows"]["eval_tokens"] == 6 * 31
    assert set(rec["extra"]["probe"]["accuracy"]) == {"1", "5"}


def test_every_sae_trains_in_the_sae_environment_at_its_l0(tiny_lm: Path, results_dir: Path) -> None:
    need_sae_env()
    ids = ["topk_sae(dict_size=128,k=4)", "matryoshka_sae(dict_size=128,k=4)", "relu_sae(dict_size=128,l1=0.05)",
           "vsae(dict_size=128,k=4)"]
    assert run_sae(results_dir, tiny_lm, "--method", ",".join(ids)) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "sae.jsonl")}
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    d = 64
    for r in recs.values():
        m, c = r["metrics"], r["costs"]
        assert "dictionary_learning" in r["extra"]["backend"] and r["extra"]["worker"]["dictionary-learning"] == "0.1.0"
        assert 0 <= m["fvu"]["value"] < 1.0, r["method"]  # trained: better than the mean
        # 4096 tokens over 2 texts: 64 windows of 32 each, less position 0; 2 epochs of 128-token batches
        assert c["train_s"]["value"] > 0 and c["train_s"]["tokens"] == 128 * 31 and c["train_s"]["steps"] == 128 * 31 * 2 // 128
        assert c["sae_bytes"]["value"] == 4 * (2 * d * 128 + 128 + d)  # encoder, its bias, decoder, decoder bias
        assert 0 < c["encode_us_per_token"]["value"]
        assert np.isfinite(m["ce_loss_recovered"]["value"])
    topk = recs["topk_sae(dict_size=128,k=4)"]
    assert topk["metrics"]["l0"]["value"] == pytest.approx(4.0)  # TopK at inference: exactly k (activations are dense)
    assert recs["vsae(dict_size=128,k=4)"]["metrics"]["l0"]["value"] <= 4.0


@pytest.mark.parametrize("args, message", [
    (["--method", "identity_sae", "--set", "layer=7"], "layer=7 is out of range"),
    (["--method", "bm25"], "the sae task runs sparse autoencoders"),
    (["--method", "topk_sae(k=0)"], "1 <= k <= dict_size"),
])
def test_bad_sae_runs_are_refused_before_anything_runs(args, message, tiny_lm: Path, results_dir: Path, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        assert run_sae(results_dir, tiny_lm, *args) == 2
    assert any(message in r.getMessage() for r in caplog.records)
    assert not (results_dir / "sae.jsonl").exists()


def test_residual_is_the_blocks_output_and_stops_there(tiny_lm: Path) -> None:
    from sparsebench.lm.model import load_causal_lm
    from sparsebench.lm.windows import Window
    from sparsebench.sae.activations import block, residual

    lm = load_causal_lm(str(tiny_lm))
    windows = [Window(f"w{i}", "t", 0, tuple(range(3 + i, 19 + i))) for i in range(3)]
    got = residual(lm.model, 0, windows, batch_size=2)
    with torch.inference_mode():
        ref = lm.model(input_ids=torch.tensor([w.ids for w in windows]), output_hidden_states=True).hidden_states[1]
    assert got.shape == (3, 16, 64) and torch.equal(got, ref.float())
    calls = []
    hook = block(lm.model, 1).register_forward_hook(lambda *a: calls.append(1))
    try:
        residual(lm.model, 0, windows, batch_size=2)
    finally:
        hook.remove()
    assert calls == []  # the block above never ran
