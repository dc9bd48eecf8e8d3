"""KV-cache methods in the main environment: KIVI quantization against its float64 definition,
the bytes a quantized cache holds, the identity points (bits=16; scoring through an untouched
cache), Q-Filters' direction, and the refusals. kvpress's presses run in tests/test_kvpress.py."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsebench import registry
from sparsebench.kv import quant
from sparsebench.kv.measure import uncompressed_bytes

from .conftest import records_in
from .test_lm import run_lm


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_packing_round_trips(bits: int) -> None:
    codes = torch.randint(0, 1 << bits, (3, 2, 5, 16), generator=torch.Generator().manual_seed(bits)).to(torch.uint8)
    packed = quant.pack(codes, bits)
    assert packed.shape[-1] == 16 * bits // 8 and packed.dtype == torch.uint8
    assert torch.equal(quant.unpack(packed, bits), codes)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_key_and_value_quantization_equal_the_float64_definition(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    k = torch.randn(2, 3, 32, 16, generator=g) * torch.linspace(0.1, 5, 16)  # outlier channels, as in keys
    v = torch.randn(2, 3, 32, 16, generator=g)
    fast_k = quant.dequantize_keys(quant.quantize_keys(k, bits), bits, torch.float32).numpy()
    fast_v = quant.dequantize_values(quant.quantize_values(v, bits, 8), bits, 8, torch.float32).numpy()
    ref_k = quant.quantize_reference(k.numpy(), bits, axis=2)  # per channel: the group runs over tokens
    ref_v = quant.quantize_reference(v.numpy().reshape(2, 3, 32, 2, 8), bits, axis=4).reshape(2, 3, 32, 16)
    for fast, ref, x in ((fast_k, ref_k, k), (fast_v, ref_v, v)):
        step = (x.numpy().max() - x.numpy().min()) / ((1 << bits) - 1)
        # float32 against float64 may round a value sitting on a half step the other way: one step, rarely.
        off = np.abs(fast - ref)
        assert off.max() <= step * 1.001
        assert (off > 1e-5).mean() < 1e-3
        # and quantization is quantization: the error is within half a step of the group's range
        assert np.abs(fast - x.numpy()).max() <= step / 2 * 1.01 + 1e-3


def test_a_kivi_layer_quantizes_full_groups_and_keeps_the_rest_exact() -> None:
    layer = quant.make_layer_class()(4, 8, 0)
    g = torch.Generator().manual_seed(0)
    stream_k = torch.randn(1, 2, 30, 16, generator=g)
    stream_v = torch.randn(1, 2, 30, 16, generator=g)
    keys, values = layer.update(stream_k[:, :, :21], stream_v[:, :, :21])  # a prefill of 21 tokens
    for t in range(21, 30):  # then one token at a time
        keys, values = layer.update(stream_k[:, :, t : t + 1], stream_v[:, :, t : t + 1])
    assert layer.get_seq_length() == 30 and layer.quantized_tokens == 24 and keys.shape == (1, 2, 30, 16)
    assert torch.equal(keys[:, :, 24:], stream_k[:, :, 24:]) and torch.equal(values[:, :, 24:], stream_v[:, :, 24:])
    for start in (0, 8, 16):
        want_k = quant.quantize_reference(stream_k[:, :, start : start + 8].numpy(), 4, axis=2)
        np.testing.assert_allclose(keys[:, :, start : start + 8].numpy(), want_k, atol=2e-3)
        want_v = quant.quantize_reference(stream_v[:, :, start : start + 8].numpy().reshape(1, 2, 8, 2, 8), 4, axis=4)
        np.testing.assert_allclose(values[:, :, start : start + 8].numpy(), want_v.reshape(1, 2, 8, 16), atol=2e-3)
    # What it holds: 3 groups of packed 4-bit codes with float16 scales and minima, 6 tokens in float32.
    codes = 2 * 3 * (2 * 8 * 16 // 2)
    key_scales = 3 * 2 * (2 * 16) * 2
    value_scales = 3 * 2 * (2 * 8 * 2) * 2
    assert layer.stored_bytes() == codes + key_scales + value_scales + 2 * 2 * 6 * 16 * 4


def test_principal_direction_is_the_dominant_query_axis_signed_by_its_mean() -> None:
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    q = torch.randn(500, 16, generator=g) * 0.3 + (3 + torch.randn(500, 1, generator=g)) * axis
    from sparsebench.kv.qfilters import principal_direction

    v = principal_direction(q)
    assert float(v @ axis.double()) > 0.99 and float(v.norm()) == pytest.approx(1.0)
    assert float(principal_direction(-q) @ axis.double()) < -0.99


def test_kivi_records_quantized_kv_bytes_and_bits_16_is_the_dense_model(tiny_lm: Path, results_dir: Path) -> None:
    methods = "dense,kivi(dense,bits=16),kivi(dense,bits=8,group=16),kivi(dense,bits=2,group=16)"
    assert run_lm(results_dir, tiny_lm, "--method", methods) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    dense, ident = recs["dense"], recs["kivi(dense,bits=16)"]
    assert all(r["status"] == "ok" for r in recs.values()), [r.get("error") for r in recs.values()]
    # The identity point: the same windows scored through an untouched cache.
    for metric in ("perplexity", "nll", "token_accuracy"):
        assert ident["metrics"][metric]["value"] == pytest.approx(dense["metrics"][metric]["value"], rel=1e-5, abs=1e-6)
    assert ident["extra"]["kv_scoring"]["prefilled"] == 16 and "kv_scoring" not in dense["extra"]
    # tiny_lm: 2 layers, 2 key/value heads of 16 dims; 16 prefilled tokens in float32.
    full = uncompressed_bytes(_config(tiny_lm), 16)
    assert dense["costs"]["kv_bytes"]["value"] == ident["costs"]["kv_bytes"]["value"] == full == 2 * 2 * 2 * 16 * 16 * 4
    assert dense["costs"]["kv_bytes_decode"]["value"] == uncompressed_bytes(_config(tiny_lm), 18)
    for bits in (8, 2):
        rec = recs[f"kivi(dense,bits={bits},group=16)"]
        # One full group of 16 tokens per layer: packed codes, a float16 scale and minimum per key
        # channel and per value token, nothing left in full precision.
        per_layer = 2 * (2 * 16 * 16 * bits // 8) + 2 * (2 * 16) * 2 + 2 * (2 * 16) * 2
        assert rec["costs"]["kv_bytes"]["value"] == 2 * per_layer
        assert rec["costs"]["kv_bytes"]["compression_achieved"] == pytest.approx(1 - 2 * per_layer / full)
    assert recs["kivi(dense,bits=2,group=16)"]["metrics"]["nll"]["value"] != dense["metrics"]["nll"]["value"]


def test_scoring_through_an_untouched_cache_equals_scoring_the_whole_window(tiny_lm: Path) -> None:
    from sparsebench.lm.evaluate import score_windows, score_windows_after_prefix
    from sparsebench.lm.model import load_causal_lm
    from sparsebench.lm.windows import Window

    lm = load_causal_lm(str(tiny_lm))
    ids = torch.randint(3, 300, (5, 40), generator=torch.Generator().manual_seed(0)).tolist()
    windows = [Window(f"austen/{i}", "austen", i, tuple(x)) for i, x in enumerate(ids)]
    whole = score_windows(lm.model, windows, 2)
    cached = score_windows_after_prefix(lm.model, windows, 2, 17, None)
    for w in windows:
        assert cached[w.id]["nll"] == pytest.approx(whole[w.id]["nll"], rel=1e-6)
        assert cached[w.id]["token_accuracy"] == whole[w.id]["token_accuracy"]


def _config(folder: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def test_a_press_refuses_an_architecture_kvpress_does_not_support(tmp_path: Path, results_dir: Path, caplog) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64)).save_pretrained(folder)
    with caplog.at_level(logging.ERROR):
        assert run_lm(results_dir, folder, "--method", "snapkv(dense,ratio=0.5)") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "SnapKVPress" in errors[0] and "GPT2LMHeadModel" in errors[0]
    assert not (results_dir / "lm.jsonl").exists()


@pytest.mark.parametrize("method, message", [
    ("snapkv(kivi(dense),ratio=0.5)", "one KV-cache method per model"),
    ("snapkv(dense,ratio=1)", "ratio=1"),
    ("kivi(dense,bits=3)", "bits=3"),
    ("kivi(dense,group=0)", "group must be at least 1"),
    ("quanto(dense,bits=8)", "kivi covers 8"),
    ("quanto(dense,residual=-1)", "residual at least 0"),
    ("cq(dense,bits=1)", "coupled codes are 2, 4, 8 bits"),
    ("cq(dense,channels=0)", "channels must be at least 1"),
    ("h2o(window(density=0.5))", "eager attention"),
])
def test_bad_kv_methods_are_refused_before_anything_runs(method: str, message: str, tiny_lm: Path, results_dir: Path,
                                                         caplog) -> None:
    with caplog.at_level(logging.ERROR):
        assert run_lm(results_dir, tiny_lm, "--method", method) == 2
    assert any(message in r.getMessage() for r in caplog.records)
    assert not (results_dir / "lm.jsonl").exists()


def test_every_kv_method_is_registered_with_its_card() -> None:
    names = {"streaming_llm", "snapkv", "pyramidkv", "h2o", "knorm", "tova", "expected_attention", "qfilter", "kivi",
             "quanto", "cq"}
    for name in names:
        cls, info = registry.lookup(name)
        assert info.family == "kv-cache" and info.paper and set(info.tasks) == {"lm", "long-context"}
        assert registry.build(info.example_id)


def test_transformers_quantized_cache_holds_fewer_bytes_and_bits_16_is_dense(tiny_lm: Path, results_dir: Path) -> None:
    methods = "dense,quanto(dense,bits=16),quanto(dense,group=16,residual=4),quanto(dense,bits=2,group=16,residual=4)"
    assert run_lm(results_dir, tiny_lm, "--method", methods) == 0
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    assert all(r["status"] == "ok" for r in recs.values()), [r.get("error") for r in recs.values()]
    dense = recs["dense"]
    ident = recs["quanto(dense,bits=16)"]
    assert ident["metrics"]["nll"]["value"] == pytest.approx(dense["metrics"]["nll"]["value"], rel=1e-5)
    full = dense["costs"]["kv_bytes"]["value"]
    four, two = recs["quanto(dense,group=16,residual=4)"], recs["quanto(dense,bits=2,group=16,residual=4)"]
    assert four["extra"]["worker"]["optimum-quanto"] == "0.2.7"
    assert four["extra"]["backend"] == "transformers QuantizedCache (optimum-quanto)"
    # Packed 4-bit and 2-bit codes with their scales and shifts: well under float32, 2 bits under 4.
    assert full / 8 < four["costs"]["kv_bytes"]["value"] < full / 3
    assert full / 16 < two["costs"]["kv_bytes"]["value"] < four["costs"]["kv_bytes"]["value"]
    assert two["metrics"]["nll"]["value"] != dense["metrics"]["nll"]["value"]


@pytest.mark.smoke
def test_qfilters_from_calibration_text_predict_where_smollm2_attends() -> None:
    """The filters are computed, not fetched: on the real model, kvpress's Q-Filter score of a key
    (-(filter . k)) must rise with the attention the prompt's last queries pay it."""
    from sparsebench.kv.qfilters import compute_qfilters
    from sparsebench.lm.data import load_lm_data
    from sparsebench.lm.model import load_causal_lm
    from sparsebench.lm.windows import calibration_samples

    lm = load_causal_lm("smollm2-135m")
    data = load_lm_data("embedded:austen,wiki", "austen+wiki")
    calib, _ = calibration_samples(lm.tokenizer, data.texts, 8, 256, 0)
    filters = compute_qfilters(lm.model, calib)
    lm.model.set_attn_implementation("eager")
    ids = torch.tensor([lm.tokenizer(data.texts[0].eval_text[:20000])["input_ids"][:384]])
    with torch.inference_mode():
        out = lm.model(input_ids=ids, output_attentions=True, use_cache=False)
        keys = {}
        handles = [layer.self_attn.k_proj.register_forward_hook(lambda m, i, o, n=n: keys.__setitem__(n, o))
                   for n, layer in enumerate(lm.model.model.layers)]
        try:
            lm.model(input_ids=ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
    correlations = []
    cfg = lm.model.config
    rotary = lm.model.model.rotary_emb
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cos, sin = rotary(keys[0], torch.arange(ids.shape[1])[None])
    for layer, k in keys.items():
        k = k.view(1, -1, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
        k, _ = apply_rotary_pos_emb(k, k, cos, sin)  # post-rotary keys, as the cache holds them
        score = -(filters[layer][:, None, :] * k[0]).sum(-1)
        mass = out.attentions[layer][0][:, -64:].mean(1)
        mass = mass.reshape(cfg.num_key_value_heads, -1, mass.shape[-1]).mean(1)
        for h in range(cfg.num_key_value_heads):  # sinks and the queries' own window left out
            correlations.append(float(torch.corrcoef(torch.stack([score[h, 4:-64], mass[h, 4:-64]]))[0, 1]))
    # Measured 0.38 on average with 96% of heads positive at 512 tokens; unsigned filters would
    # average about 0, flipped ones the negative.
    assert np.mean(correlations) > 0.2 and np.mean(np.array(correlations) > 0) > 0.8


def test_coupled_codes_are_the_nearest_centroids_of_the_float64_definition() -> None:
    from sparsebench.kv import coupled

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 20, 8, generator=g) * torch.linspace(0.2, 3, 8)  # 24 channels, coupled by 4: 6 groups
    centroids = torch.randn(6, 16, 4, generator=g)
    book = coupled.Codebook(centroids, channels=4, bits=4)
    codes = quant.unpack(coupled.encode(x, book), 4)
    np.testing.assert_array_equal(codes.numpy(), coupled.encode_reference(x.numpy(), centroids.numpy(), 4))
    # Decoding puts each group's centroid back where its channels came from.
    back = coupled.decode(coupled.encode(x, book), book, heads=3, dtype=torch.float32)
    flat = back.permute(0, 2, 1, 3).reshape(2, 20, 6, 4)
    assert torch.equal(flat, centroids[torch.arange(6)[None, None], codes.long()])


def test_kmeans_lowers_the_quantization_error_and_codes_cost_bits_over_channels() -> None:
    from sparsebench.kv import coupled

    g = torch.Generator().manual_seed(1)
    # Coupled channels are correlated: a 2-d latent drives all 4 channels of a group.
    latent = torch.randn(1, 2, 600, 2, generator=g)
    x = torch.cat([latent @ torch.randn(2, 4, generator=g) for _ in range(2)], dim=-1) + 0.05 * torch.randn(1, 2, 600, 8, generator=g)
    error = {}
    for iterations in (0, 10):
        book = coupled.learn_codebook(x, channels=4, bits=4, iterations=iterations)
        back = coupled.decode(coupled.encode(x, book), book, heads=2, dtype=torch.float32)
        error[iterations] = float(((back - x) ** 2).mean())
    assert error[10] < 0.7 * error[0]
    # 600 tokens x 4 groups of 4 channels at 4 bits: 2 codes a byte, 1 bit per channel.
    assert coupled.encode(x, book).numel() == 600 * 4 // 2


def test_a_coupled_layer_codes_all_but_the_residual_and_holds_one_byte_per_group() -> None:
    from sparsebench.kv import coupled

    g = torch.Generator().manual_seed(2)
    k, v = torch.randn(1, 2, 30, 16, generator=g), torch.randn(1, 2, 30, 16, generator=g)
    calib = torch.randn(2, 2, 300, 16, generator=g)  # 600 vectors for 256 centroids
    kb = coupled.learn_codebook(calib, channels=8, bits=8, iterations=3)
    vb = coupled.learn_codebook(-calib, channels=8, bits=8, iterations=3)
    layer = coupled.make_layer_class()(kb, vb, 5)
    keys, values = layer.update(k[:, :, :20], v[:, :, :20])
    for t in range(20, 30):
        keys, values = layer.update(k[:, :, t : t + 1], v[:, :, t : t + 1])
    assert layer.get_seq_length() == 30 and layer.quantized_tokens == 25 and keys.shape == (1, 2, 30, 16)
    assert torch.equal(keys[:, :, 25:], k[:, :, 25:]) and torch.equal(values[:, :, 25:], v[:, :, 25:])
    assert torch.equal(keys[:, :, :25], coupled.decode(coupled.encode(k[:, :, :25], kb), kb, 2, torch.float32))
    # 25 coded tokens x 4 groups (32 channels / 8) x 1 byte, keys and values; 5 tokens in float32.
    assert layer.stored_bytes() == 2 * 25 * 4 + 2 * 2 * 5 * 16 * 4


def test_cq_learns_codebooks_on_calibration_text_and_bits_16_is_the_dense_model(tiny_lm: Path, results_dir: Path) -> None:
    methods = "dense,cq(dense,bits=16),cq(dense,channels=2,bits=4),cq(dense,channels=8,bits=4),cq(dense,channels=2,bits=4,fisher=true)"
    assert run_lm(results_dir, tiny_lm, "--method", methods) == 0  # 4 calibration samples of 16 tokens
    recs = {r["method"]: r for r in records_in(results_dir / "lm.jsonl")}
    assert all(r["status"] == "ok" for r in recs.values()), [r.get("error") for r in recs.values()]
    dense, ident = recs["dense"], recs["cq(dense,bits=16)"]
    assert ident["metrics"]["nll"]["value"] == pytest.approx(dense["metrics"]["nll"]["value"], rel=1e-5)
    full = dense["costs"]["kv_bytes"]["value"]  # 2 layers x 2 heads x 16 dims x 16 tokens, float32 keys and values
    two, half = recs["cq(dense,channels=2,bits=4)"], recs["cq(dense,channels=8,bits=4)"]
    # 32 channels a layer: 16 groups of 2 (2 bits a channel) or 4 groups of 8 (half a bit a channel).
    assert two["costs"]["kv_bytes"]["value"] == 2 * 2 * 16 * 16 // 2 == full / 16
    assert half["costs"]["kv_bytes"]["value"] == 2 * 2 * 16 * 4 // 2 == full / 64
    assert two["extra"]["kv"]["bits_per_channel"] == 2 and two["extra"]["kv"]["codebook_bytes"] == 2 * 2 * 16 * 16 * 2 * 2
    assert two["extra"]["backend"] == "sparsebench coupled-quantization cache (k-means codebooks)"
    assert two["metrics"]["nll"]["value"] != dense["metrics"]["nll"]["value"]
    # Fisher-guided centroids: the same codes and bytes, other centroids
    guided = recs["cq(dense,channels=2,bits=4,fisher=true)"]
    assert guided["costs"]["kv_bytes"]["value"] == two["costs"]["kv_bytes"]["value"]
    assert guided["extra"]["kv"]["centroids"] == "fisher-guided" and two["extra"]["kv"]["centroids"] == "uniform"
    assert guided["extra"]["backend"] == "sparsebench coupled-quantization cache (k-means codebooks, Fisher-guided)"
    assert guided["metrics"]["nll"]["value"] != two["metrics"]["nll"]["value"]


def _kmeans_reference(points: np.ndarray, weights: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """Weighted Lloyd in float64, one group at a time, point by point: the definition."""
    out = []
    for g in range(points.shape[0]):
        c = points[g, start[g]].astype(np.float64).copy()
        for _ in range(iterations):
            sums, mass = np.zeros_like(c), np.zeros(len(c))
            for x, w in zip(points[g].astype(np.float64), weights[g].astype(np.float64)):
                j = int(np.argmin(((c - x) ** 2).sum(-1)))
                sums[j] += w * x
                mass[j] += w
            c = np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], c)
        out.append(c)
    return np.stack(out)


def test_weighted_kmeans_equals_its_float64_definition_and_unit_weights_are_plain_kmeans() -> None:
    from sparsebench.kv import coupled

    g = torch.Generator().manual_seed(3)
    points = torch.randn(3, 200, 4, generator=g)
    weights = torch.rand(3, 200, generator=g) ** 4 * 10  # skewed, as squared gradients are
    init = torch.Generator().manual_seed(5)  # the draws kmeans makes: one permutation per group, in order
    start = torch.stack([torch.randperm(200, generator=init)[:8] for _ in range(3)])
    got = coupled.kmeans(points, 8, iterations=6, seed=5, weights=weights)
    want = _kmeans_reference(points.numpy(), weights.numpy(), start.numpy(), 6)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
    assert torch.equal(coupled.kmeans(points, 8, 6, 5, torch.ones(3, 200)), coupled.kmeans(points, 8, 6, 5))
    # a point that carries almost all of the weight pulls its centroid onto itself
    heavy = torch.ones(3, 200)
    heavy[:, 7] = 1e6
    pulled = coupled.kmeans(points, 8, 6, 5, heavy)
    assert min(float((pulled[0] - points[0, 7]).norm(dim=-1).min()), 1.0) < 1e-2
    with pytest.raises(ValueError, match="non-negative"):
        coupled.kmeans(points, 8, 2, 5, -torch.ones(3, 200))


def test_cache_fisher_is_the_squared_gradient_of_the_next_token_loss(tiny_lm: Path) -> None:
    """Values: equal to the squared gradients at v_proj's output (the values the cache holds, taken
    by an independent hook). Keys: rotary embeddings rotate each head's key, so the squared
    gradient norm per token and head equals the one at k_proj's output."""
    from transformers import AutoModelForCausalLM

    from sparsebench.kv import coupled

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm), dtype=torch.float32).eval()
    ids = torch.randint(3, 300, (2, 24), generator=torch.Generator().manual_seed(4))
    held = coupled.cache_fisher(model, ids)
    assert not any(p.grad is not None for p in model.parameters())  # no weight gradient was kept
    assert len(held) == 2
    heads, dim = 2, 16
    for layer_idx, (keys, values, fk, fv) in enumerate(held):
        assert keys.shape == values.shape == fk.shape == fv.shape == (1, heads, 2 * 24, dim)
        assert bool((fk >= 0).all()) and float(fk.sum()) > 0
        attn = model.model.layers[layer_idx].self_attn
        for i in range(2):
            seen: dict[str, torch.Tensor] = {}

            def keep(name: str):
                def hook(_m, _inp, out):
                    out.retain_grad()
                    seen[name] = out
                return hook

            handles = [attn.k_proj.register_forward_hook(keep("k")), attn.v_proj.register_forward_hook(keep("v"))]
            try:
                out = model(input_ids=ids[i : i + 1], labels=ids[i : i + 1])
                out.loss.backward()
            finally:
                for h in handles:
                    h.remove()
                model.zero_grad(set_to_none=True)
            gv = seen["v"].grad.view(1, 24, heads, dim).transpose(1, 2) ** 2
            gk = (seen["k"].grad.view(1, 24, heads, dim).transpose(1, 2) ** 2).sum(-1)
            part = slice(24 * i, 24 * (i + 1))
            torch.testing.assert_close(fv[:, :, part], gv, rtol=1e-4, atol=1e-12)
            torch.testing.assert_close(fk[:, :, part].sum(-1), gk, rtol=1e-4, atol=1e-12)
    # and the Fisher weights change the codebook (the weighted means move)
    keys, _, fk, _ = held[0]
    uniform = coupled.learn_codebook(keys, channels=4, bits=2, iterations=5)
    guided = coupled.learn_codebook(keys, channels=4, bits=2, iterations=5, fisher=fk)
    assert not torch.equal(uniform.centroids, guided.centroids)
