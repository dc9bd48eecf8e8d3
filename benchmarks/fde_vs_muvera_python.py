#!/usr/bin/env python3
"""Our MUVERA encodings (`sparsebench.kernels.fde`) against muvera-python's, on the same tokens.

muvera-python (a Rust kernel behind numpy; it follows Google's reference implementation: Gray-code
partition ids, a sparse AMS sketch for the inner projection) encodes one set at a time; ours
encodes a packed batch of sets with a few GEMMs and one index_add per repetition. Both are run at
the same settings (repetitions, SimHash bits, projection dimension) on the retrieval suite's
token states (maxsim(minilm) over the FAQ passages; computed and cached on first use) and
reported side by side:

- document encoding time for the whole corpus (median of --repeats; the two take turns);
- single-query encoding latency (p50 over the suite's queries, each encoded alone);
- candidate quality: the share of exact MaxSim's top 10 inside each encoding's top `--candidates`
  by inner product (mean over queries), so that speed is not bought with a worse encoding.

    .venv/bin/pip install muvera-python==0.2.0   # once
    .venv/bin/python benchmarks/fde_vs_muvera_python.py
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsebench import registry  # noqa: E402
from sparsebench.cache import ArtifactCache, default_cache_dir  # noqa: E402
from sparsebench.datasets.resolve import load_source  # noqa: E402
from sparsebench.kernels.fde import Fde, pack  # noqa: E402
from sparsebench.methods.base import RunContext  # noqa: E402

log = logging.getLogger("fde_bench")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--ksim", type=int, default=4)
    ap.add_argument("--dproj", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=default_cache_dir() / "benchmarks" / "fde_vs_muvera_python.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import muvera
    import torch

    torch.set_num_threads(args.threads)
    data = load_source("embedded:faq")
    queries = [q.text for q in data.judged_queries()]
    ctx = RunContext(cache=ArtifactCache(default_cache_dir()), threads=args.threads, progress=False)
    source = registry.build("maxsim(minilm)").open(ctx)
    source.index(data.corpus)
    tokens, offsets = source.doc_tokens()
    q_tokens = source.query_tokens(queries)
    exact = source.exact_search(queries, 10)
    position = {d: i for i, d in enumerate(source.doc_ids)}
    exact_top = [{position[d] for d, _ in row} for row in exact]
    docs = [tokens[offsets[i]: offsets[i + 1]] for i in range(len(offsets) - 1)]
    dim = tokens.shape[1]

    ours = Fde(dim, args.ksim, args.dproj, args.reps, seed=0)
    theirs = muvera.Muvera(num_repetitions=args.reps, num_simhash_projections=args.ksim, dimension=dim,
                           projection_type="ams_sketch", projection_dimension=args.dproj, seed=0)
    impls = {
        "sparsebench": (lambda: ours.encode(tokens, offsets, "document"),
                        lambda q: ours.encode(*pack([q]), "query")[0]),
        "muvera-python": (lambda: np.asarray(theirs.encode_documents(docs), dtype=np.float32),
                          lambda q: np.asarray(theirs.encode_queries(q), dtype=np.float32)),
    }
    doc_s: dict[str, list[float]] = {name: [] for name in impls}
    encoded: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # turns, so a load change hits both
        for name, (enc_docs, _) in impls.items():
            t0 = time.perf_counter()
            encoded[name] = enc_docs()
            doc_s[name].append(time.perf_counter() - t0)
    rows = []
    for name, (_, enc_query) in impls.items():
        lat, q_fde = [], []
        for q in q_tokens:
            t0 = time.perf_counter_ns()
            q_fde.append(enc_query(q))
            lat.append((time.perf_counter_ns() - t0) / 1e6)
        scores = np.stack(q_fde) @ encoded[name].T
        top = np.argsort(-scores, axis=1)[:, : args.candidates]
        recall = float(np.mean([len(exact_top[i] & set(top[i].tolist())) / len(exact_top[i]) for i in range(len(top))]))
        rows.append({"impl": name, "fde_dim": int(encoded[name].shape[1]), "doc_encode_s": statistics.median(doc_s[name]),
                     "query_encode_p50_ms": statistics.median(lat), "exact_top10_in_candidates": recall})
    base = rows[0]
    print(f"| FDE | dims | corpus encode s ({len(docs)} docs, {len(tokens)} vectors) | query encode p50 ms | "
          f"exact top 10 in top {args.candidates} |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['fde_dim']} | {r['doc_encode_s']:.2f} | {r['query_encode_p50_ms']:.3f} | "
              f"{r['exact_top10_in_candidates']:.3f} |")
    other = rows[1]
    print(f"\nmuvera-python / sparsebench: corpus encode {other['doc_encode_s'] / base['doc_encode_s']:.2f}x, "
          f"query encode {other['query_encode_p50_ms'] / base['query_encode_p50_ms']:.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
