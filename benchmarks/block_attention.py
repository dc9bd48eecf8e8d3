#!/usr/bin/env python3
"""Block-sparse causal attention against dense SDPA, at the lm suite's head layout.

Answers "how much of the work saved by a block-sparse layout turns into time?" for our kernel
(`sparsebench.kernels.block_attention.block_sparse_attention`) and for torch's FlexAttention
(compiled, with a BlockMask built from the same layout), both against dense
`F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)`. The heads are SmolLM2-135M's
(9 query heads sharing 3 key/value heads, head dim 64, batch 1), fp32, causal.

Layouts, at each requested density (default 1/2, 1/4, 1/8) and sequence length (1024, 4096):

- top-k: seeded random, shaped like a query-aware top-k selection: each query block row keeps
  its diagonal block and randomly chosen earlier blocks, ceil(density * (row + 1)) blocks in
  all, chosen anew for each key/value head;
- window: a block sliding window (the same for every head) whose density is the closest to the
  top-k layout's achieved density.

The achieved density (kept blocks over causal blocks) is below 1 but above the requested one
(every row keeps at least its diagonal block), so each point reports it, the work-ratio limit
1 / achieved (the speedup if time were proportional to blocks), and each speedup as a fraction
of that limit.

Before anything is timed, each implementation's output is checked against the float64 dense
reference (max abs difference <= 1e-4); one that fails is not timed at that point and the run
exits 1. Timing: --warmup calls each (FlexAttention's compile happens there and is reported on
its own), then --repeats rounds in which the implementations take turns, so a load change on a
shared machine hits them alike; the median per implementation. Our kernel's time includes its
layout preprocessing (grouping the rows, building the gathers); FlexAttention is timed with a
BlockMask built beforehand, and the BlockMask's construction is timed as its own column.

    .venv/bin/python benchmarks/block_attention.py                     # CPU, L 1024 and 4096
    .venv/bin/python benchmarks/block_attention.py --device cuda --lengths 4096,16384
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsebench.kernels.block_attention import (  # noqa: E402
    block_sparse_attention,
    causal_layout,
    flex_attention_masked,
    flex_block_mask,
    layout_density,
    reference_attention,
    sliding_window_layout,
    topk_layout,
)

log = logging.getLogger("block_attention")

TOLERANCE = 1e-4  # max |output - float64 reference|, fp32
NOISY = 1.5  # a point is flagged when an implementation's slowest timed call exceeds its fastest by this factor
IMPLS = ("dense", "ours", "flex", "blockmask")


def window_for_density(n_blocks: int, density: float) -> int:
    """The sliding window (in blocks) whose layout density is the closest to `density`."""
    return min(range(1, n_blocks + 1), key=lambda w: abs(layout_density(sliding_window_layout(n_blocks, w)) - density))


def timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    """A function that runs `fn` once and returns its time in ms (CUDA events on a GPU: the
    kernels run asynchronously, so host clocks would time the launch only)."""
    if device.type == "cuda":
        def cuda_ms(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        return cuda_ms

    def cpu_ms(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return cpu_ms


def time_interleaved(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int,
                     device: torch.device) -> dict[str, list[float]]:
    """Every timed call's ms per function: `repeats` rounds of one call each, in an order that
    rotates every round (so no function always runs right after the same other one)."""
    tick = timer(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            times[n].append(tick(fns[n]))
    return times


def max_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.double() - ref.double()).abs().max())


@torch.inference_mode()
def bench_length(length: int, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    gen = torch.Generator().manual_seed(args.seed + length)
    b, h, kv, d, bs = args.batch, args.q_heads, args.kv_heads, args.head_dim, args.block_size
    q = torch.randn(b, h, length, d, generator=gen).to(device)
    k = torch.randn(b, kv, length, d, generator=gen).to(device)
    v = torch.randn(b, kv, length, d, generator=gen).to(device)
    nb = -(-length // bs)

    def dense() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    dense_err = max_error(dense(), reference_attention(q, k, v, causal_layout(nb).to(device), bs))
    if dense_err > TOLERANCE:  # the baseline itself: nothing at this length can be reported
        log.error("L=%d: dense SDPA differs from the reference by %.2e", length, dense_err)
        return [{"length": length, "error": f"dense SDPA differs from the reference by {dense_err:.2e}"}]
    rows = []
    for density in args.densities:
        topk = topk_layout(nb, density, b, kv, seed=args.seed)
        achieved_topk = layout_density(topk)
        window = window_for_density(nb, achieved_topk)
        for kind, layout in (("topk", topk), ("window", sliding_window_layout(nb, window))):
            layout = layout.to(device)
            achieved = layout_density(layout)
            row: dict[str, Any] = {"length": length, "layout": kind, "requested_density": density,
                                   "achieved_density": achieved, "limit": 1.0 / achieved,
                                   "window_blocks": window if kind == "window" else None,
                                   "dense_max_err": dense_err}
            ref = reference_attention(q, k, v, layout, bs)
            fns: dict[str, Callable[[], Any]] = {"dense": dense}

            def ours(layout: torch.Tensor = layout) -> torch.Tensor:
                return block_sparse_attention(q, k, v, layout, bs)

            candidates: dict[str, Callable[[], Any]] = {"ours": ours}
            if args.flex:
                block_mask = flex_block_mask(layout, bs, length, device, h)

                def flex(block_mask: Any = block_mask) -> torch.Tensor:
                    return flex_attention_masked(q, k, v, block_mask)

                def blockmask(layout: torch.Tensor = layout) -> Any:
                    return flex_block_mask(layout, bs, length, device, h)

                candidates["flex"] = flex
            for name, fn in candidates.items():
                try:
                    t0 = time.perf_counter()
                    err = max_error(fn(), ref)
                    if name == "flex":  # the first call compiles (or finds the kernel compiled for these shapes)
                        row["flex_first_call_s"] = time.perf_counter() - t0
                except Exception as e:  # noqa: BLE001 - an implementation that cannot run is a result too
                    row[f"{name}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                    log.error("L=%d %s density %.3f %s: %s", length, kind, achieved, name, row[f"{name}_error"])
                    continue
                row[f"{name}_max_err"] = err
                if err > TOLERANCE:
                    row[f"{name}_error"] = f"max abs difference from the reference {err:.2e} > {TOLERANCE:g}"
                    log.error("L=%d %s density %.3f %s: %s; not timed", length, kind, achieved, name, row[f"{name}_error"])
                    continue
                fns[name] = fn
                if name == "flex":
                    fns["blockmask"] = blockmask
            times = time_interleaved(fns, args.warmup, args.repeats, device)
            med = {name: statistics.median(t) for name, t in times.items()}
            for name, t in times.items():
                row[f"{name}_ms"] = med[name]
                row[f"{name}_times_ms"] = t
            # A shared machine's load spikes hit single calls; a point whose calls spread this much
            # is flagged in the table (its median may still hold, its ratios are less sure).
            row["noisy"] = any(max(t) > NOISY * min(t) for t in times.values())
            for name in ("ours", "flex"):
                if name in med:
                    row[f"{name}_speedup"] = med["dense"] / med[name]
                    row[f"{name}_of_limit"] = row[f"{name}_speedup"] / row["limit"]
            rows.append(row)
            log.info("L=%d %-6s density %.3f (limit %.2fx): dense %.2f ms, ours %s, flex %s", length, kind, achieved,
                     row["limit"], med["dense"], _speed(row, "ours"), _speed(row, "flex"))
    return rows


def _speed(row: dict[str, Any], name: str) -> str:
    if f"{name}_ms" in row:
        return f"{row[name + '_ms']:.2f} ms ({row[name + '_speedup']:.2f}x)"
    return "refused" if f"{name}_error" in row else "-"


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [f"\n{report['machine']['device_name']}, torch {report['machine']['torch']}, {s['dtype']}, batch {s['batch']}, "
             f"{s['q_heads']} query / {s['kv_heads']} KV heads, head dim {s['head_dim']}, block {s['block_size']}, "
             f"median of {s['repeats']}\n"]
    head = ["L", "layout", "density req.", "achieved", "limit", "dense ms", "ours ms", "ours x", "ours / limit",
            "flex ms", "flex x", "flex / limit", "BlockMask ms"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))

    def cell(row: dict[str, Any], key: str, fmt: str, impl: str) -> str:
        if key in row:
            return format(row[key], fmt)
        return "refused" if f"{impl}_error" in row else "-"

    for r in report["points"]:
        if "layout" not in r:
            lines.append(f"| {r['length']} | {r['error']} |" + " |" * (len(head) - 2))
            continue
        layout = "top-k" if r["layout"] == "topk" else f"window {r['window_blocks']}"
        cells = [f"{r['length']}{'*' if r['noisy'] else ''}", layout, f"{r['requested_density']:.3g}", f"{r['achieved_density']:.3f}",
                 f"{r['limit']:.2f}x", f"{r['dense_ms']:.2f}",
                 cell(r, "ours_ms", ".2f", "ours"), cell(r, "ours_speedup", ".2f", "ours"),
                 cell(r, "ours_of_limit", ".0%", "ours"),
                 cell(r, "flex_ms", ".2f", "flex"), cell(r, "flex_speedup", ".2f", "flex"),
                 cell(r, "flex_of_limit", ".0%", "flex"), cell(r, "blockmask_ms", ".3f", "flex")]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("noisy") for r in report["points"]):
        lines.append(f"\n\\* an implementation's timed calls at this point spread more than {NOISY}x (load spikes); "
                     "the JSON file has every call's time")
    return "\n".join(lines) + "\n"


def machine(device: torch.device) -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"device": device.type, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU {model}, {torch.get_num_threads()} threads",
            "cpu_model": model, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "loadavg_before": list(os.getloadavg()), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--lengths", default="1024,4096", help="sequence lengths, comma-separated")
    ap.add_argument("--densities", default="0.5,0.25,0.125", help="requested densities, comma-separated")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--q-heads", type=int, default=9, help="SmolLM2-135M: 9")
    ap.add_argument("--kv-heads", type=int, default=3, help="SmolLM2-135M: 3")
    ap.add_argument("--head-dim", type=int, default=64, help="SmolLM2-135M: 64")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per implementation (median)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per implementation first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-flex", dest="flex", action="store_false", help="leave FlexAttention out (its compile is slow)")
    ap.add_argument("--json", type=Path, default=None, help="default: <cache>/benchmarks/block_attention.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    args.densities = _floats(args.densities)
    if args.repeats < 1 or args.warmup < 1:
        ap.error("--repeats and --warmup must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        log.error("--device cuda: no CUDA device visible to torch %s", torch.__version__)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda":
        # fp32 stays IEEE fp32 in every implementation (TF32 would fail the 1e-4 check and
        # would not be the same arithmetic across them).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    # Each (length, layout shape) compiles FlexAttention once (dynamic=False); past dynamo's
    # default limit of 8 it would silently fall back to an eager, dense-cost FlexAttention.
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))

    from sparsebench.cache import default_cache_dir

    info = machine(device)
    log.info("%s, torch %s, load average %s", info["device_name"], torch.__version__, info["loadavg_before"])
    points = [row for length in args.lengths for row in bench_length(length, args, device)]
    info["loadavg_after"] = list(os.getloadavg())
    settings = {"lengths": args.lengths, "densities": args.densities, "block_size": args.block_size,
                "batch": args.batch, "q_heads": args.q_heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim,
                "dtype": "float32", "repeats": args.repeats, "warmup": args.warmup, "seed": args.seed,
                "flex": args.flex, "tolerance": TOLERANCE, "model": "SmolLM2-135M heads"}
    report = {"machine": info, "settings": settings, "points": points}
    path = args.json or default_cache_dir() / "benchmarks" / "block_attention.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", path)
    sys.stdout.write(markdown(report))
    failed = [p for p in points if "error" in p or any(k.endswith("_error") for k in p)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
