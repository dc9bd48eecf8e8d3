"""2:4 semi-structured sparse linears against dense ones on a GPU, at the lm suite's layer shapes.

Answers "does the 2:4 kernel pay here, and from how many tokens on?" for the layers of the suite's
model (SmolLM2-135M: d=576, MLP 1536, 3 KV heads of 64) and, for scale, 7B-class shapes. Each
point is one linear: weight magnitude-pruned to 2:4 (`sparsebench.pruning.magnitude`), timed as
`F.linear` dense and through `SemiStructuredLinear` (torch's cuSPARSELt and CUTLASS backends), with CUDA events,
median of `--repeats` timings after warm-up. The sparse output is checked against the dense
pruned layer's within the dtype's tolerance before anything is timed. Values of random weights do
not change these kernels' speed, so no trained model is needed.

    python benchmarks/semistructured_24.py --json out.json      # needs a CUDA GPU (sm80+)
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsebench.pruning.magnitude import magnitude_prune_weight  # noqa: E402
from sparsebench.pruning.semistructured import SemiStructuredLinear, device_problem, resolve_backend  # noqa: E402

log = logging.getLogger("semistructured_24")

# (name, out_features, in_features)
SMOLLM2 = [("q/o_proj", 576, 576), ("k/v_proj", 192, 576), ("gate/up_proj", 1536, 576), ("down_proj", 576, 1536)]
LARGE = [("7B attn", 4096, 4096), ("7B gate/up", 11008, 4096), ("7B down", 4096, 11008)]
TOLERANCE = {torch.float32: 2e-2, torch.float16: 2e-2, torch.bfloat16: 8e-2}  # max |diff| / max |dense|


def time_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.inference_mode()
def point(out_f: int, in_f: int, tokens: int, dtype: torch.dtype, backend: str, repeats: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(in_f, out_f, bias=False)
    lin.weight.data = magnitude_prune_weight(torch.randn(out_f, in_f, generator=g), 0.5, (2, 4))
    lin = lin.to("cuda", dtype)
    x = torch.randn(tokens, in_f, generator=g).to("cuda", dtype)
    sparse = SemiStructuredLinear(lin, backend=backend)
    ref, got = lin(x), sparse(x)
    rel_err = float((ref.float() - got.float()).abs().max() / ref.float().abs().max())
    if rel_err > TOLERANCE[dtype]:
        raise AssertionError(f"{out_f}x{in_f} {dtype} tokens={tokens}: 2:4 output differs from dense by {rel_err:.2e}")
    dense_ms = time_ms(lambda: lin(x), repeats)
    sparse_ms = time_ms(lambda: sparse(x), repeats)
    return {"out": out_f, "in": in_f, "tokens": tokens, "dtype": str(dtype).removeprefix("torch."), "backend": backend,
            "dense_ms": dense_ms, "semi24_ms": sparse_ms, "speedup": dense_ms / sparse_ms, "max_rel_err": rel_err}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write every point here")
    ap.add_argument("--tokens", default="1,256,2048,8192", help="rows of the input (1 = one decode step)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--backends", default="cutlass,cusparselt")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problem = device_problem("cuda")
    if problem:
        log.error("%s", problem)
        return 2
    # fp32 dense matmuls stay IEEE fp32 (torch's default); the sparse kernels take fp32 through TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    log.info("%s, torch %s", torch.cuda.get_device_name(), torch.__version__)
    log.info("%-14s %-12s %6s %-9s %-10s %10s %10s %8s", "layer", "shape", "tokens", "dtype", "backend", "dense ms",
             "2:4 ms", "speedup")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        for backend in args.backends.split(","):
            try:
                resolve_backend(backend, dtype)
            except ValueError as e:
                log.info("skipped: %s", e)
                continue
            for name, out_f, in_f in SMOLLM2 + LARGE:
                for tokens in (int(t) for t in args.tokens.split(",")):
                    try:
                        r = point(out_f, in_f, tokens, dtype, backend, args.repeats, args.seed) | {"layer": name}
                    except (RuntimeError, AssertionError) as e:  # an unsupported shape is a result too
                        log.warning("%s %dx%d tokens=%d %s %s: %s", name, out_f, in_f, tokens, dtype_name, backend, e)
                        rows.append({"layer": name, "out": out_f, "in": in_f, "tokens": tokens, "dtype": dtype_name,
                                     "backend": backend, "error": str(e).splitlines()[0][:300]})
                        continue
                    rows.append(r)
                    log.info("%-14s %-12s %6d %-9s %-10s %10.4f %10.4f %7.2fx", name, f"{out_f}x{in_f}", tokens,
                             r["dtype"], backend, r["dense_ms"], r["semi24_ms"], r["speedup"])
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                         "repeats": args.repeats, "points": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
