#!/usr/bin/env python3
"""Block-max pruning against exhaustive scoring on SPLADE-tiny's learned term weights.

SPLADE queries are long (the MLM head expands a query to tens of weighted word pieces) and
their weights are skewed, which is where block upper bounds skip most of the postings; BM25's
short queries over a small vocabulary are not (see engine_vs_bm25s.py). For each corpus this
script encodes the documents once with the `splade` method's own retriever (the encodings are
cached under the same content key as `bench run` uses, so a corpus encoded by either is encoded
once), encodes the judged queries once (outside any timing), and then times only the engine:

- batch throughput: every query in one `search_batch_arrays` call, 1 thread and all threads,
  median of --repeats calls;
- single-query latency: batch 1, every query, p50 and p95 over --passes passes;

for exhaustive scoring, block-max safe (alpha=1) and block-max approximate (alpha < 1), on the
unpruned document weights and on documents pruned to their 64 heaviest terms. Safe block-max is
checked against exhaustive (same top-k up to ties at equal scores); the approximate modes report
their overlap with the exact top k. The modes take turns, so a load change hits them alike.

Usage::

    .venv/bin/python scripts/make_corpora.py       # once: builds faq-10k and faq-25k
    .venv/bin/python benchmarks/engine_splade.py   # faq, faq-10k, faq-25k (encodes what is not cached)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine_vs_bm25s import Engine, agreement, default_corpora, machine, percentile, time_latency, time_throughput

log = logging.getLogger("engine_splade")


def engine(name: str, index: Any, batch_of: Any, pruning: str, alpha: float) -> Engine:
    """An engine over already-encoded queries: a query is its position in the encoded list."""
    from sparsebench.kernels.inverted import search_batch_arrays

    def batch(positions: list[int], k: int, threads: int) -> Any:
        return search_batch_arrays(index, batch_of(positions), k, pruning, alpha, threads)

    def hits(out: Any) -> list[list[tuple[int, float]]]:
        ids, scores, counts = out
        return [list(zip(d[:n], s[:n])) for d, s, n in zip(ids.tolist(), scores.tolist(), counts.tolist())]

    def single(position: int, k: int) -> list[tuple[int, float]]:
        return hits(batch([position], k, 1))[0]

    return Engine(name, "ours", single, batch, hits, alpha if alpha < 1 else None)


def bench_corpus(source: str, k: int, threads: Sequence[int], alphas: Sequence[float], doc_top_ks: Sequence[int | None],
                 repeats: int, passes: int, block_size: int) -> dict[str, Any]:
    from sparsebench.cache import ArtifactCache, default_cache_dir
    from sparsebench.datasets.resolve import load_source
    from sparsebench.kernels.inverted import query_batch
    from sparsebench.methods.base import RunContext
    from sparsebench.methods.splade import Splade

    ds = load_source(source)
    texts = [q.text for q in ds.judged_queries()]
    ctx = RunContext(cache=ArtifactCache(default_cache_dir()), threads=1, progress=False)
    out: dict[str, Any] = {"source": source, "documents": len(ds.corpus), "queries": len(texts), "indexes": []}
    queries = None
    for top_k in doc_top_ks:
        retriever = Splade(doc_top_k=top_k, block_size=block_size).open(ctx)
        t0 = time.perf_counter()
        report = retriever.index(ds.corpus)
        log.info("%s doc_top_k=%s: indexed in %.1f s (encodings %s)", ds.id, top_k, time.perf_counter() - t0,
                 "from the cache" if report.cache_hit else "computed now")
        if queries is None:
            t0 = time.perf_counter()
            queries = retriever.encode_queries(texts)
            out["query_encode_ms_per_query"] = (time.perf_counter() - t0) * 1e3 / len(texts)
            out["query_terms_mean"] = float(np.mean([len(q) for q in queries]))
        index = retriever._index  # the engine's index exactly as the method serves it
        encoded = queries

        def batch_of(positions: list[int], index: Any = index) -> Any:
            return query_batch(index, [encoded[p] for p in positions])

        modes = [engine("exhaustive", index, batch_of, "exhaustive", 1.0), engine("block-max safe", index, batch_of, "blockmax", 1.0)]
        modes += [engine(f"block-max alpha={a}", index, batch_of, "blockmax", a) for a in alphas]
        positions = list(range(len(texts)))
        qps, hits = time_throughput(modes, positions, k, threads, repeats)
        latency = time_latency(modes, positions, k, passes)
        reference = hits["exhaustive"]
        rows = []
        for e in modes:
            row = {"mode": e.name, "latency_p50_ms": percentile(latency[e.name], 50),
                   "latency_p95_ms": percentile(latency[e.name], 95),
                   **{f"qps_{t}t": qps[(e.name, t)] for t in threads},
                   "speedup_1t": qps[(e.name, 1)] / qps[("exhaustive", 1)],
                   "agreement": agreement(hits[e.name], reference)}
            rows.append(row)
        out["indexes"].append({"doc_top_k": top_k, "postings": int(len(index.docs)), "rows": rows})
    return out


def markdown(report: dict[str, Any]) -> str:
    threads = report["settings"]["threads"]
    lines = []
    for c in report["corpora"]:
        lines.append(f"\n### {c['source'].split('/')[-1]}: {c['documents']} passages, {c['queries']} queries, "
                     f"{c['query_terms_mean']:.1f} terms per query, k={report['settings']['k']}\n")
        head = ["doc terms", "mode", "p50 ms", "p95 ms", *[f"q/s {t}t" for t in threads], "x exhaustive (1t)", "top-k"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for ix in c["indexes"]:
            for r in ix["rows"]:
                a = r["agreement"]
                same = ("identical" if a["differ_up_to_ties"] == 0 else f"{a['differ_up_to_ties']} differ") \
                    if r["mode"] != "exhaustive" and "alpha" not in r["mode"] else \
                    ("reference" if r["mode"] == "exhaustive" else f"overlap {a['mean_overlap']:.3f}")
                cells = [str(ix["doc_top_k"] or "all"), r["mode"], f"{r['latency_p50_ms']:.3f}", f"{r['latency_p95_ms']:.3f}",
                         *[f"{r[f'qps_{t}t']:.0f}" for t in threads], f"{r['speedup_1t']:.2f}", same]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="block-max against exhaustive scoring on SPLADE-tiny weights")
    parser.add_argument("--corpus", action="append", help="dataset source (embedded:faq, beir:PATH); repeatable; "
                        "default: the FAQ data and the corpora scripts/make_corpora.py builds")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="the multi-thread batch's threads (default: all usable)")
    parser.add_argument("--alpha", type=float, action="append", help="approximate block-max alphas (default 0.9, 0.8)")
    parser.add_argument("--repeats", type=int, default=9, help="timed batch calls (median)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="documents per block of the index (default: the splade method's)")
    parser.add_argument("--passes", type=int, default=2, help="timed passes over the queries for latency")
    parser.add_argument("--json", type=Path, default=None, help="default: <cache>/benchmarks/engine_splade.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from sparsebench.cache import default_cache_dir
    from sparsebench.methods.splade import Splade

    info = machine()
    if args.block_size is None:
        args.block_size = Splade.block_size
    threads = sorted({1, args.threads or int(info["usable_threads"] or 1)})
    settings = {"k": args.k, "threads": threads, "alphas": args.alpha or [0.9, 0.8], "doc_top_k": [None, 64],
                "repeats": args.repeats, "passes": args.passes, "model": "splade-tiny", "block_size": args.block_size}
    corpora = [bench_corpus(src, args.k, threads, settings["alphas"], settings["doc_top_k"], args.repeats, args.passes,
                            args.block_size)
               for src in (args.corpus or default_corpora())]
    info["loadavg_after"] = list(os.getloadavg())
    report = {"machine": info, "settings": settings, "corpora": corpora}
    path = args.json or default_cache_dir() / "benchmarks" / "engine_splade.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", path)
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
