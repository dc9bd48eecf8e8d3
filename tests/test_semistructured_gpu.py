"""2:4 semi-structured linears (kernel=semi24) against the dense pruned layers they replace.

These need an NVIDIA GPU with sparse tensor cores, so they carry the `gpu` marker and are left
out of the default (CPU) run; `pytest -m gpu` runs them on a GPU machine. On a CPU profile the
method is refused before anything runs (tests/test_pruning.py checks that refusal)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsebench.pruning import masks, prune, prunable_linears
from sparsebench.pruning.magnitude import magnitude_prune_weight
from sparsebench.pruning.semistructured import SemiStructuredLinear, device_problem, to_semi_structured_linears

pytestmark = pytest.mark.gpu


def _cutlass_refused(backend: str, dtype: torch.dtype) -> bool:
    """torch's CUTLASS 2:4 kernels run on compute capability 8.x only; fp32 has no other."""
    uses_cutlass = backend == "cutlass" or dtype == torch.float32
    return uses_cutlass and torch.cuda.get_device_capability()[0] != 8


@pytest.mark.parametrize("backend", ["auto", "cutlass"])
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2), (torch.float32, 2e-3)])
@pytest.mark.parametrize("tokens", [1, 7, 256])
@pytest.mark.parametrize("out_f,in_f", [(576, 576), (192, 576), (1536, 576), (576, 1536)])
def test_semi24_linear_equals_the_dense_pruned_linear(out_f: int, in_f: int, tokens: int, dtype, tol: float,
                                                      backend: str) -> None:
    g = torch.Generator().manual_seed(out_f + in_f + tokens)
    lin = nn.Linear(in_f, out_f)
    lin.weight.data = magnitude_prune_weight(torch.randn(out_f, in_f, generator=g), 0.5, (2, 4))
    lin = lin.to("cuda", dtype)
    x = torch.randn(2, tokens, in_f, generator=g).to("cuda", dtype)
    if _cutlass_refused(backend, dtype):
        with pytest.raises(ValueError, match="compute capability 8.x only"):
            SemiStructuredLinear(lin, backend=backend)
        return
    with torch.inference_mode():
        ref, got = lin(x), SemiStructuredLinear(lin, backend=backend)(x)
    assert got.shape == ref.shape
    rel = float((ref.float() - got.float()).abs().max() / ref.float().abs().max())
    assert rel < tol, rel


def test_a_weight_that_is_not_2_4_is_refused() -> None:
    lin = nn.Linear(64, 64).to("cuda")
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        SemiStructuredLinear(lin, "dense.weight")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_a_2_4_pruned_llama_gives_the_same_logits_through_the_sparse_kernels(dtype) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    prune(model, "magnitude", None, "2:4")
    model = model.to("cuda", dtype)
    ids = torch.randint(0, 512, (2, 48), device="cuda")
    if _cutlass_refused("auto", dtype):
        assert "compute capability 8.x only" in device_problem("cuda", dtype)
        with pytest.raises(ValueError, match="compute capability 8.x only"):
            to_semi_structured_linears(model)
        return
    with torch.inference_mode():
        ref = model(input_ids=ids).logits.float()
        swapped = to_semi_structured_linears(model)
        got = model(input_ids=ids).logits.float()
    assert len(swapped) == 2 * 7 and not prunable_linears(model)
    assert all(masks.follows_nm(m.weight_24.to_dense(), 2, 4) for m in swapped.values())
    assert float((ref - got).abs().max() / ref.abs().max()) < 5e-3
    assert torch.equal(ref.argmax(-1), got.argmax(-1))
