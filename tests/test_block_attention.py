"""Block-sparse causal attention: our kernel and FlexAttention against the float64 reference,
the causal layout against torch SDPA, layout helpers, shape errors, and a tiny run of
benchmarks/block_attention.py (tests/test_benchmarks.py holds pytest-benchmark timings only)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sparsebench.kernels.block_attention import (
    block_sparse_attention,
    causal_layout,
    flex_attention_blocks,
    layout_density,
    reference_attention,
    sliding_window_layout,
    topk_layout,
)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "block_attention.py"


def qkv(b: int, h: int, kv: int, length: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, length, d, generator=g), torch.randn(b, kv, length, d, generator=g),
            torch.randn(b, kv, length, d, generator=g))


def random_layout(b: int, kv: int, nb: int, seed: int, p: float = 0.5) -> torch.Tensor:
    """Random blocks, and on purpose rows that skip their diagonal block but attend an earlier
    one: the kernel's groups without the causal diagonal mask, which top-k-like layouts never make."""
    g = torch.Generator().manual_seed(seed)
    layout = torch.rand(b, kv, nb, nb, generator=g) < p
    if nb > 1:
        layout[..., nb - 1, nb - 1] = False
        layout[..., nb - 1, 0] = True
        layout[..., 1, 1] = False
        layout[..., 1, 0] = True
    return layout


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


# (B, H, KV, L, block size, head dim): GQA 9/3, 4/2, 2/1 and plain 4/4; L a multiple of the
# block size and not (padded last block, down to a single partial block).
SHAPES = [
    (1, 9, 3, 256, 64, 64),
    (2, 9, 3, 300, 64, 32),
    (2, 4, 2, 300, 64, 16),
    (1, 4, 2, 128, 16, 16),
    (2, 2, 1, 100, 16, 16),
    (1, 2, 1, 96, 32, 32),
    (2, 4, 4, 96, 32, 16),
    (1, 4, 4, 70, 32, 16),
    (1, 4, 2, 20, 32, 16),
]


@pytest.mark.parametrize("b,h,kv,length,bs,d", SHAPES)
@pytest.mark.parametrize("kind", ["per-batch-head", "broadcast", "per-batch", "per-head", "causal", "topk"])
def test_kernel_matches_reference(b: int, h: int, kv: int, length: int, bs: int, d: int, kind: str) -> None:
    q, k, v = qkv(b, h, kv, length, d, seed=length + bs)
    nb = -(-length // bs)
    layout = {
        "per-batch-head": lambda: random_layout(b, kv, nb, seed=1),
        "broadcast": lambda: random_layout(1, 1, nb, seed=2),
        "per-batch": lambda: random_layout(b, 1, nb, seed=3),
        "per-head": lambda: random_layout(1, kv, nb, seed=4),
        "causal": lambda: causal_layout(nb),
        "topk": lambda: topk_layout(nb, 0.4, b, kv, seed=5),
    }[kind]()
    got = block_sparse_attention(q, k, v, layout, bs)
    ref = reference_attention(q, k, v, layout, bs)
    assert got.shape == q.shape and got.dtype == q.dtype
    assert max_err(got, ref) <= 1e-4


def test_reference_is_plain_masked_softmax() -> None:
    """The reference itself, against softmax written out per query row for a tiny case."""
    b, h, kv, length, bs, d = 1, 4, 2, 12, 4, 8
    q, k, v = qkv(b, h, kv, length, d, seed=7)
    layout = random_layout(1, kv, 3, seed=8)
    ref = reference_attention(q, k, v, layout, bs)
    for head in range(h):
        for i in range(length):
            keys = [j for j in range(i + 1) if layout[0, head // (h // kv), i // bs, j // bs]]
            if not keys:
                assert ref[0, head, i].abs().max() == 0
                continue
            s = torch.stack([q[0, head, i].double() @ k[0, head // (h // kv), j].double() for j in keys]) / math.sqrt(d)
            want = torch.softmax(s, 0) @ v[0, head // (h // kv), keys].double()
            assert max_err(ref[0, head, i], want) <= 1e-6


def test_row_without_any_block_is_zero() -> None:
    q, k, v = qkv(1, 4, 2, 128, 16)
    layout = causal_layout(4).repeat(1, 2, 1, 1)
    layout[0, 1, 2] = False  # query block 2 of KV head 1 attends nothing
    got = block_sparse_attention(q, k, v, layout, 32)
    assert got[0, 2:4, 64:96].abs().max() == 0
    assert max_err(got, reference_attention(q, k, v, layout, 32)) <= 1e-4


def test_comparison_can_fail() -> None:
    """A different layout gives a clearly different output: the 1e-4 checks above discriminate."""
    q, k, v = qkv(1, 4, 2, 256, 16)
    layout = causal_layout(4)
    other = layout.clone()
    other[..., 3, 0] = False
    assert max_err(block_sparse_attention(q, k, v, other, 64), reference_attention(q, k, v, layout, 64)) > 1e-2


@pytest.mark.parametrize("b,h,kv,length,bs", [(1, 9, 3, 256, 64), (2, 9, 3, 300, 64), (2, 4, 2, 100, 16),
                                              (1, 2, 1, 128, 32), (1, 4, 4, 200, 32)])
def test_causal_layout_equals_sdpa(b: int, h: int, kv: int, length: int, bs: int) -> None:
    q, k, v = qkv(b, h, kv, length, 64, seed=3)
    got = block_sparse_attention(q, k, v, causal_layout(-(-length // bs)), bs)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert max_err(got, want) <= 1e-5


def test_flex_matches_reference() -> None:
    """One shape (each new shape recompiles FlexAttention, seconds on a CPU): GQA, a padded last
    block, and two layouts of the same shape, one with rows that skip their diagonal."""
    b, h, kv, length, bs, d = 1, 4, 2, 300, 64, 16
    q, k, v = qkv(b, h, kv, length, d, seed=11)
    nb = -(-length // bs)
    for layout in (random_layout(1, kv, nb, seed=12), causal_layout(nb).expand(1, kv, nb, nb)):
        got = flex_attention_blocks(q, k, v, layout, bs)
        assert max_err(got, reference_attention(q, k, v, layout, bs)) <= 1e-4


def test_layout_density() -> None:
    for nb in (1, 5, 32):
        assert layout_density(causal_layout(nb)) == 1.0
    layout = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    # KV head 0: 5 of the 10 causal blocks; the block above the diagonal does not count.
    for r, c in [(0, 0), (1, 1), (2, 0), (3, 1), (3, 3), (0, 3)]:
        layout[0, 0, r, c] = True
    assert layout_density(layout[:, :1]) == 5 / 10
    layout[0, 1] = True  # KV head 1: all 10 (and the 6 above the diagonal, ignored)
    assert layout_density(layout) == (5 / 10 + 10 / 10) / 2


@pytest.mark.parametrize("density", [1.0, 0.5, 0.25, 0.125, 0.3])
def test_topk_layout(density: float) -> None:
    nb = 16
    layout = topk_layout(nb, density, batch=2, heads=3, seed=0)
    assert layout.shape == (2, 3, nb, nb) and layout.dtype == torch.bool
    rows = torch.arange(1, nb + 1)
    want = torch.tensor([max(1, math.ceil(density * r - 1e-9)) for r in rows.tolist()])
    assert torch.equal(layout.sum(-1), want.expand(2, 3, nb))
    assert layout.diagonal(dim1=-2, dim2=-1).all()
    assert not (layout & ~torch.ones(nb, nb, dtype=torch.bool).tril()).any()
    assert torch.equal(layout, topk_layout(nb, density, batch=2, heads=3, seed=0))
    if density < 1:
        assert not torch.equal(layout[0, 0], layout[0, 1])  # each head chooses its own blocks
        assert not torch.equal(layout, topk_layout(nb, density, batch=2, heads=3, seed=1))


def test_sliding_window_layout() -> None:
    layout = sliding_window_layout(6, 3)
    assert torch.equal(layout.sum(-1).flatten(), torch.tensor([1, 2, 3, 3, 3, 3]))
    assert layout[0, 0, 5, 3:6].all() and not layout[0, 0, 5, :3].any()
    assert torch.equal(sliding_window_layout(6, 6), causal_layout(6))
    assert layout_density(sliding_window_layout(4, 1)) == 4 / 10


@pytest.mark.parametrize("fn", [block_sparse_attention, reference_attention, flex_attention_blocks])
@pytest.mark.parametrize("case,match", [
    ("heads", "multiple of the key/value heads"),
    ("kv_differ", "k .* and v .* differ"),
    ("rank", "want 4-D"),
    ("head_dim", "same batch, length and head dim"),
    ("length", "same batch, length and head dim"),
    ("layout_blocks", r"want \[B\|1, KV\|1, 4, 4\] blocks for length 64 at block size 16"),
    ("layout_rank", r"want \[B\|1, KV\|1, 4, 4\]"),
    ("layout_batch", "batch and head dims must be 1 or B=2 and KV=2"),
    ("layout_heads", "batch and head dims must be 1 or B=2 and KV=2"),
    ("layout_dtype", "want torch.bool"),
    ("block_size", "block size 0"),
])
def test_bad_shapes_raise(fn: Any, case: str, match: str) -> None:
    q, k, v = qkv(2, 4, 2, 64, 16)
    layout = causal_layout(4)
    bs = 16
    if case == "heads":
        q = torch.randn(2, 3, 64, 16)
    elif case == "kv_differ":
        v = torch.randn(2, 2, 64, 8)
    elif case == "rank":
        q = q[0]
    elif case == "head_dim":
        k, v = torch.randn(2, 2, 64, 8), torch.randn(2, 2, 64, 8)
    elif case == "length":
        k, v = k[:, :, :32], v[:, :, :32]
    elif case == "layout_blocks":
        layout = causal_layout(5)
    elif case == "layout_rank":
        layout = causal_layout(4)[0, 0]
    elif case == "layout_batch":
        layout = causal_layout(4).expand(3, 1, 4, 4)
    elif case == "layout_heads":
        layout = causal_layout(4).expand(1, 4, 4, 4)
    elif case == "layout_dtype":
        layout = causal_layout(4).float()
    elif case == "block_size":
        bs = 0
    with pytest.raises(ValueError, match=match):
        fn(q, k, v, layout, bs)


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_block_attention", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


TINY = ["--lengths", "200,128", "--block-size", "32", "--densities", "0.5,0.25", "--repeats", "2", "--warmup", "1",
        "--no-flex"]


def test_benchmark_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench_module()
    out = tmp_path / "ba.json"
    assert bench.main([*TINY, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    points = report["points"]
    assert len(points) == 2 * 2 * 2  # lengths x densities x (top-k, window)
    for p in points:
        assert p["ours_max_err"] <= 1e-4 and p["dense_max_err"] <= 1e-4
        assert p["ours_ms"] > 0 and p["dense_ms"] > 0
        assert p["limit"] == pytest.approx(1 / p["achieved_density"])
        assert p["ours_of_limit"] == pytest.approx(p["dense_ms"] / p["ours_ms"] / p["limit"])
        assert p["requested_density"] <= p["achieved_density"] <= 1
        assert "flex_ms" not in p
    # L=200 at block 32: 7 blocks, density 1/4 -> rows keep 1,1,1,1,2,2,2 of 1..7 blocks.
    topk = next(p for p in points if p["length"] == 200 and p["layout"] == "topk" and p["requested_density"] == 0.25)
    assert topk["achieved_density"] == pytest.approx(10 / 28)
    table = capsys.readouterr().out
    assert "| L | layout |" in table and len(re.findall(r"^\| 200\*? \|", table, re.M)) == 4


def test_benchmark_refuses_a_wrong_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An implementation whose output is off is not timed, and the run fails."""
    bench = _bench_module()

    def wrong(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: torch.Tensor, bs: int) -> torch.Tensor:
        return block_sparse_attention(q, k, v, layout, bs) + 1e-3

    monkeypatch.setattr(bench, "block_sparse_attention", wrong)
    out = tmp_path / "ba.json"
    assert bench.main(["--lengths", "128", "--block-size", "32", "--densities", "0.5", "--repeats", "1", "--warmup", "1",
                       "--no-flex", "--json", str(out)]) == 1
    for p in json.loads(out.read_text())["points"]:
        assert "ours_ms" not in p and "1.00e-03" in p["ours_error"] and p["dense_ms"] > 0
