#!/usr/bin/env python3
"""Our inverted-index engine against bm25s, side by side, in one process.

Same corpus, same tokens (bm25s's Tokenizer with PyStemmer's english stemmer and its "en"
stopwords, as the `bm25` method uses), same BM25 impacts (k1=1.2, b=0.75, lucene: bm25s
computes them, our index takes them as they are), same k. For each corpus it times:

- index build: bm25s (numpy and numba backends) and our `from_postings` on top of bm25s's
  impacts (our extra time, and the total), in corpus order and in a BP order (recursive graph
  bisection, `reorder="bp"`, its time included);
- single-query latency: batch 1, every judged query, p50 and p95 over all timed calls;
- batch throughput: the whole query set in one call, 1 thread and the machine's threads;

for bm25s's numpy and numba backends, and for our engine exhaustive, block-max safe
(alpha=1) and block-max approximate (alpha < 1), on both indexes (rows marked "(bp)": the
reordered one; it returns the same hits in the same order). Warm-up calls (numba compiles, first-touch
allocation) are run first and discarded. Top-k lists are compared against bm25s (numpy) with
ties allowed at equal scores (within 1e-5); the approximate modes report their overlap with
the exact top k. Writes a markdown table to stdout and a JSON file with every number.

Usage::

    .venv/bin/python scripts/make_corpora.py          # once: builds faq-10k and faq-25k
    .venv/bin/python benchmarks/engine_vs_bm25s.py    # faq, faq-10k, faq-25k
    .venv/bin/python benchmarks/engine_vs_bm25s.py --corpus embedded:faq --repeats 3 --json out.json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

log = logging.getLogger("engine_vs_bm25s")

K1, B, VARIANT = 1.2, 0.75, "lucene"  # the `bm25` method's defaults
TIE_TOL = 1e-5

Hits = list[tuple[int, float]]


# --- the engines, behind one shape: build once, then single(tokens, k) and batch(tokens, k, threads)


@dataclass
class Engine:
    name: str
    family: str  # "bm25s" or "ours"
    single: Callable[[list[int], int], Hits]  # one query, batch 1, to hits
    batch: Callable[[list[list[int]], int, int], Any]  # every query in one call, the engine's own output
    hits: Callable[[Any], list[Hits]]  # that output as hits (outside the timing)
    alpha: float | None = None  # block-max approximate modes
    results: dict[str, Any] = field(default_factory=dict)


def bm25s_engine(name: str, retriever: Any) -> Engine:
    # n_threads=0 is bm25s's serial path (1 would start a one-thread pool for the numpy backend).
    def batch(tokens: list[list[int]], k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        return retriever.retrieve(tokens, k=k, show_progress=False, n_threads=0 if threads == 1 else threads)

    def single(tokens: list[int], k: int) -> Hits:
        return _rows(batch([tokens], k, 1))[0]

    return Engine(name, "bm25s", single, batch, _rows)


def _rows(out: tuple[np.ndarray, np.ndarray]) -> list[Hits]:
    # bm25s pads with zero-score documents; a document that matches no query term is no hit.
    docs, scores = out
    return [[(int(d), float(s)) for d, s in zip(rd, rs) if s > 0] for rd, rs in zip(docs.tolist(), scores.tolist())]


def our_engine(name: str, index: Any, pruning: str, alpha: float = 1.0, approximate: bool = False) -> Engine:
    """Token-id lists in, as bm25s takes them: each distinct term weighted by its count in the
    query (bm25s sums a term's impact once per occurrence), via query_batch_from_tokens."""
    from sparsebench.kernels.inverted import query_batch_from_tokens, search_batch_arrays

    def batch(tokens: list[list[int]], k: int, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return search_batch_arrays(index, query_batch_from_tokens(index, tokens), k, pruning, alpha, threads)

    def hits(out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[Hits]:
        ids, scores, counts = out
        return [list(zip(d[:n], s[:n])) for d, s, n in zip(ids.tolist(), scores.tolist(), counts.tolist())]

    def single(tokens: list[int], k: int) -> Hits:
        return hits(batch([tokens], k, 1))[0]

    return Engine(name, "ours", single, batch, hits, alpha if approximate else None)


# --- timing ----------------------------------------------------------------------------------
#
# The engines take turns (query by query for latency, call by call for throughput), so a load
# change on a shared machine hits all of them alike instead of whichever ran at that moment.


def time_latency(engines: Sequence[Engine], queries: list[list[int]], k: int, passes: int) -> dict[str, list[float]]:
    for engine in engines:
        for q in queries:  # warm-up, discarded
            engine.single(q, k)
    ms: dict[str, list[float]] = {e.name: [] for e in engines}
    for _ in range(passes):
        for q in queries:
            for engine in engines:
                t0 = time.perf_counter_ns()
                engine.single(q, k)
                ms[engine.name].append((time.perf_counter_ns() - t0) / 1e6)
    return ms


def time_throughput(engines: Sequence[Engine], queries: list[list[int]], k: int, threads: Sequence[int],
                    repeats: int) -> tuple[dict[tuple[str, int], float], dict[str, list[Hits]]]:
    """Queries per second of one call answering the whole batch (median of `repeats`), and each
    engine's hits (from its single-thread call)."""
    hits = {e.name: e.hits(e.batch(queries, k, 1)) for e in engines}  # warm-up, discarded
    for e in engines:
        for t in threads:
            e.batch(queries, k, t)
    walls: dict[tuple[str, int], list[float]] = {(e.name, t): [] for e in engines for t in threads}
    for _ in range(repeats):
        for e in engines:
            for t in threads:
                t0 = time.perf_counter_ns()
                e.batch(queries, k, t)
                walls[(e.name, t)].append((time.perf_counter_ns() - t0) / 1e9)
    return {key: len(queries) / statistics.median(w) for key, w in walls.items()}, hits


def time_call(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of `repeats` calls after one discarded warm-up call, and the last result."""
    out = fn()
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        out = fn()
        walls.append((time.perf_counter_ns() - t0) / 1e9)
    return statistics.median(walls), out


def percentile(values: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


# --- agreement -------------------------------------------------------------------------------


def same_up_to_ties(a: Hits, b: Hits, tol: float = TIE_TOL) -> bool:
    """Score-sorted lists that agree position by position within tol, and whose ids agree as
    sets within every group of tied scores except the last (a tie at the k-th place may keep
    either document; the engines order ties their own way)."""
    if len(a) != len(b) or any(abs(x - y) > tol for (_, x), (_, y) in zip(a, b)):
        return False
    groups_a, groups_b = _tie_groups(a, tol), _tie_groups(b, tol)
    return len(groups_a) == len(groups_b) and all(x == y for x, y in zip(groups_a[:-1], groups_b[:-1]))


def _tie_groups(hits: Hits, tol: float) -> list[set[int]]:
    groups: list[set[int]] = []
    last = None
    for d, s in hits:
        if last is None or last - s > tol:
            groups.append(set())
        groups[-1].add(d)
        last = s
    return groups


def agreement(ours: list[Hits], reference: list[Hits]) -> dict[str, Any]:
    differ = sum(not same_up_to_ties(x, y) for x, y in zip(ours, reference))
    identical_ids = sum([d for d, _ in x] == [d for d, _ in y] for x, y in zip(ours, reference))
    overlaps = [len({d for d, _ in x} & {d for d, _ in y}) / len(y) for x, y in zip(ours, reference) if y]
    return {"queries": len(reference), "differ_up_to_ties": differ, "identical_id_lists": identical_ids,
            "mean_overlap": float(np.mean(overlaps)) if overlaps else 1.0}


# --- one corpus ------------------------------------------------------------------------------


def bench_corpus(source: str, ks: Sequence[int], threads: Sequence[int], alphas: Sequence[float], block_size: int,
                 repeats: int, passes: int) -> dict[str, Any]:
    import bm25s
    import Stemmer
    from bm25s.tokenization import Tokenizer

    from sparsebench.datasets.resolve import load_source
    from sparsebench.kernels.inverted import from_postings

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
    ds = load_source(source)
    texts = [d.full_text for d in ds.corpus]
    query_texts = [q.text for q in ds.judged_queries()]
    log.info("%s: %d documents, %d queries", ds.id, len(texts), len(query_texts))

    def tokenize_corpus() -> tuple[Tokenizer, list[list[int]]]:
        t = Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english").stemWord)
        return t, t.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)

    tokenize_s, (tok, corpus_ids) = time_call(tokenize_corpus, 1)
    queries = tok.tokenize(query_texts, update_vocab=False, return_as="ids", show_progress=False)

    def build_bm25s(backend: str) -> Any:
        r = bm25s.BM25(k1=K1, b=B, method=VARIANT, backend=backend)
        r.index(corpus_ids, show_progress=False)
        return r

    build: dict[str, float] = {"tokenize_s": tokenize_s}
    build["bm25s_numpy_s"], numpy_r = time_call(lambda: build_bm25s("numpy"), repeats)
    build["bm25s_numba_s"], numba_r = time_call(lambda: build_bm25s("numba"), repeats)
    s = numpy_r.scores
    for key in ("data", "indices", "indptr"):
        if not np.array_equal(s[key], numba_r.scores[key]):
            raise RuntimeError(f"{ds.id}: bm25s's numpy and numba backends built different impacts ({key})")
    build["ours_extra_s"], index = time_call(
        lambda: from_postings(int(s["num_docs"]), s["indptr"], s["indices"], s["data"], block_size), repeats)
    build["ours_total_s"] = build["bm25s_numpy_s"] + build["ours_extra_s"]
    # The same impacts with the documents in a BP order (recursive graph bisection), timed with
    # the reordering included.
    build["ours_bp_extra_s"], bp_index = time_call(
        lambda: from_postings(int(s["num_docs"]), s["indptr"], s["indices"], s["data"], block_size, "bp"), repeats)
    build["ours_bp_total_s"] = build["bm25s_numpy_s"] + build["ours_bp_extra_s"]

    engines = [bm25s_engine("bm25s numpy", numpy_r), bm25s_engine("bm25s numba", numba_r),
               our_engine("ours exhaustive", index, "exhaustive"),
               our_engine("ours block-max safe", index, "blockmax", 1.0),
               *(our_engine(f"ours block-max a={a:g}", index, "blockmax", a, approximate=True) for a in alphas),
               our_engine("ours exhaustive (bp)", bp_index, "exhaustive"),
               our_engine("ours block-max safe (bp)", bp_index, "blockmax", 1.0),
               *(our_engine(f"ours block-max a={a:g} (bp)", bp_index, "blockmax", a, approximate=True)
                 for a in alphas)]
    for k in ks:
        lat = time_latency(engines, queries, k, passes)
        qps, hits = time_throughput(engines, queries, k, threads, repeats)
        reference, exact = hits["bm25s numpy"], hits["ours exhaustive"]
        for engine in engines:
            ms = lat[engine.name]
            r: dict[str, Any] = {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "latency_samples": len(ms)}
            for t in threads:
                r[f"qps_{t}t"] = qps[(engine.name, t)]
            r["vs_bm25s_numpy"] = agreement(hits[engine.name], reference)
            if engine.alpha is not None:
                r["vs_ours_exact"] = agreement(hits[engine.name], exact)
            engine.results[f"k{k}"] = r
            log.info("%s %s k=%d: p50 %.3f ms, %s", ds.id, engine.name, k, r["p50_ms"],
                     ", ".join(f"{t} thread(s) {r[f'qps_{t}t']:.0f} q/s" for t in threads))
    out = {"dataset": ds.id, "documents": len(texts), "queries": len(queries),
           "postings": int(len(s["data"])), "vocab": int(len(s["indptr"]) - 1), "block_size": block_size,
           "index_blocks": int(len(index.bblock)), "index_blocks_bp": int(len(bp_index.bblock)), "build": build,
           "engines": {e.name: e.results for e in engines}}
    _add_ratios(out, ks, threads)
    return out


def _add_ratios(out: dict[str, Any], ks: Sequence[int], threads: Sequence[int]) -> None:
    """ours / bm25s throughput (higher is better for us) and bm25s / ours p50 latency."""
    engines = out["engines"]
    for name, res in engines.items():
        for k in ks:
            r = res[f"k{k}"]
            ratios: dict[str, float] = {}
            for base in ("bm25s numpy", "bm25s numba"):
                b = engines[base][f"k{k}"]
                tag = base.split()[1]
                for t in threads:
                    ratios[f"qps_{t}t_vs_{tag}"] = r[f"qps_{t}t"] / b[f"qps_{t}t"]
                ratios[f"latency_speedup_vs_{tag}"] = b["p50_ms"] / r["p50_ms"]
            best = max(engines[b][f"k{k}"]["qps_1t"] for b in ("bm25s numpy", "bm25s numba"))
            ratios["qps_1t_vs_best_bm25s"] = r["qps_1t"] / best
            r["ratios"] = ratios


# --- machine and report ----------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import bm25s
    import numba

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "cpu_count": os.cpu_count(), "usable_threads": usable,
            "loadavg_before": list(os.getloadavg()),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "bm25s": bm25s.__version__, "platform": platform.platform()}


def targets(report: dict[str, Any], k: int = 10) -> list[dict[str, Any]]:
    """The issue's targets per corpus, at top 10, single-thread batch throughput, against
    bm25s's faster backend: each exact mode >= 1.0x; block-max >= 2x with identical top-10
    lists (every mode whose lists all agree with bm25s up to ties); block-max safe faster
    than exhaustive."""
    rows = []
    for c in report["corpora"]:
        e = {name: res[f"k{k}"] for name, res in c["engines"].items()}
        best = max(e["bm25s numpy"]["qps_1t"], e["bm25s numba"]["qps_1t"])
        exact_modes = ("ours exhaustive", "ours block-max safe")
        agreeing = [n for n in e if n.startswith("ours block-max") and e[n]["vs_bm25s_numpy"]["differ_up_to_ties"] == 0]
        bm_best = max(agreeing, key=lambda n: e[n]["qps_1t"]) if agreeing else None
        rows.append({
            "dataset": c["dataset"], "documents": c["documents"],
            "exact_vs_best_bm25s": {n: e[n]["qps_1t"] / best for n in exact_modes},
            "exact_at_least_1x": all(e[n]["qps_1t"] >= best for n in exact_modes),
            "blockmax_identical_best": bm_best,
            "blockmax_identical_vs_best_bm25s": e[bm_best]["qps_1t"] / best if bm_best else None,
            "blockmax_at_least_2x": bool(bm_best and e[bm_best]["qps_1t"] >= 2 * best),
            "blockmax_safe_vs_exhaustive": e["ours block-max safe"]["qps_1t"] / e["ours exhaustive"]["qps_1t"],
            "blockmax_safe_bp_vs_exhaustive": e["ours block-max safe (bp)"]["qps_1t"] / e["ours exhaustive"]["qps_1t"],
        })
    return rows


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    ks, threads = report["settings"]["k"], report["settings"]["threads"]
    lines = [f"Machine: {m['cpu_model']}, {m['usable_threads']} threads; bm25s {m['bm25s']}, numba {m['numba']}, "
             f"numpy {m['numpy']}, Python {m['python']}; load average {m['loadavg_before'][0]:.2f} before, "
             f"{m['loadavg_after'][0]:.2f} after.", ""]
    lines += ["| corpus | docs | tokenize s | bm25s numpy build s | bm25s numba build s | ours extra s | ours total s | "
              "ours bp extra s (reorder incl.) | ours bp total s | block entries | block entries (bp) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in report["corpora"]:
        b = c["build"]
        lines.append(f"| {c['dataset']} | {c['documents']} | {b['tokenize_s']:.2f} | {b['bm25s_numpy_s']:.3f} | "
                     f"{b['bm25s_numba_s']:.3f} | {b['ours_extra_s']:.3f} | {b['ours_total_s']:.3f} | "
                     f"{b['ours_bp_extra_s']:.3f} | {b['ours_bp_total_s']:.3f} | {c['index_blocks']} | "
                     f"{c['index_blocks_bp']} |")
    lines.append("")
    for k in ks:
        head = ["corpus", "engine", "p50 ms", "p95 ms"] + [f"q/s {t}t" for t in threads] + \
               [f"{t}t / numpy" for t in threads] + [f"{t}t / numba" for t in threads] + \
               ["p50 speedup / numpy", "p50 speedup / numba", f"top-{k} differ (ties ok)", "overlap vs exact"]
        lines += [f"k = {k}", "", "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
        for c in report["corpora"]:
            for name, res in c["engines"].items():
                r = res[f"k{k}"]
                ra = r["ratios"]
                overlap = f"{r['vs_ours_exact']['mean_overlap']:.4f}" if "vs_ours_exact" in r else "-"
                cells = [c["dataset"], name, f"{r['p50_ms']:.3f}", f"{r['p95_ms']:.3f}"]
                cells += [f"{r[f'qps_{t}t']:.0f}" for t in threads]
                cells += [f"{ra[f'qps_{t}t_vs_numpy']:.2f}x" for t in threads]
                cells += [f"{ra[f'qps_{t}t_vs_numba']:.2f}x" for t in threads]
                cells += [f"{ra['latency_speedup_vs_numpy']:.2f}x", f"{ra['latency_speedup_vs_numba']:.2f}x",
                          f"{r['vs_bm25s_numpy']['differ_up_to_ties']}/{r['vs_bm25s_numpy']['queries']}", overlap]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Targets (k = 10, single-thread batch throughput, against bm25s's faster backend):", "",
              "| corpus | exhaustive / best bm25s | block-max safe / best bm25s | both exact modes >= 1.0x | fastest block-max with "
              "identical top-10 | its ratio | >= 2x | block-max safe / exhaustive | block-max safe (bp) / exhaustive |",
              "|---|---:|---:|---|---|---:|---|---:|---:|"]
    for t in report["targets"]:
        ex = t["exact_vs_best_bm25s"]
        ratio = f"{t['blockmax_identical_vs_best_bm25s']:.2f}x" if t["blockmax_identical_best"] else "-"
        lines.append(f"| {t['dataset']} | {ex['ours exhaustive']:.2f}x | {ex['ours block-max safe']:.2f}x | "
                     f"{'yes' if t['exact_at_least_1x'] else 'no'} | {t['blockmax_identical_best'] or '-'} | {ratio} | "
                     f"{'yes' if t['blockmax_at_least_2x'] else 'no'} | {t['blockmax_safe_vs_exhaustive']:.2f}x | "
                     f"{t['blockmax_safe_bp_vs_exhaustive']:.2f}x |")
    lines.append("")
    lines += ["Throughput: the whole query set as one batch, median of the repeats; ratios are ours (or the row's "
              "engine) / bm25s. Latency: batch 1, p50/p95 over every timed call (p99 is not reported: fewer than "
              "660 queries per pass). Query tokenization is outside every timing (identical for all engines).", ""]
    return "\n".join(lines)


def default_corpora() -> list[str]:
    from sparsebench.corpora import CORPORA, default_out_dir

    found = ["embedded:faq"]
    for spec in CORPORA:
        folder = default_out_dir() / spec.name
        if (folder / "corpus.jsonl").is_file():
            found.append(f"beir:{folder}")
        else:
            log.warning("%s is missing: build it with `scripts/make_corpora.py` (skipped)", folder)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="our inverted-index engine vs bm25s, side by side")
    parser.add_argument("--corpus", action="append", help="dataset source (embedded:faq, beir:PATH); repeatable; "
                        "default: the FAQ data and the corpora scripts/make_corpora.py builds")
    parser.add_argument("--k", type=int, action="append", help="top k (repeatable; default 10 and 100)")
    parser.add_argument("--threads", type=int, default=None, help="the multi-thread batch's threads (default: all usable)")
    parser.add_argument("--alpha", type=float, action="append", help="approximate block-max alphas (default 0.9, 0.8)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="documents per block of our index (default: the bm25_engine method's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed batch calls and index builds (median)")
    parser.add_argument("--passes", type=int, default=3, help="timed passes over the queries for latency")
    parser.add_argument("--json", type=Path, default=None, help="where the JSON goes (default: <cache>/benchmarks/engine_vs_bm25s.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from sparsebench.cache import default_cache_dir

    info = machine()
    many = args.threads or int(info["usable_threads"] or 1)
    threads = sorted({1, many})
    ks = args.k or [10, 100]
    if args.block_size is None:
        from sparsebench.methods.bm25_engine import BM25Engine

        args.block_size = BM25Engine.block_size
    settings = {"k": ks, "threads": threads, "alphas": args.alpha or [0.9, 0.8], "block_size": args.block_size,
                "repeats": args.repeats, "passes": args.passes, "bm25": {"k1": K1, "b": B, "method": VARIANT}}
    corpora = [bench_corpus(src, ks, threads, settings["alphas"], args.block_size, args.repeats, args.passes)
               for src in (args.corpus or default_corpora())]
    info["loadavg_after"] = list(os.getloadavg())
    report: dict[str, Any] = {"machine": info, "settings": settings, "corpora": corpora}
    report["targets"] = targets(report)
    path = args.json or default_cache_dir() / "benchmarks" / "engine_vs_bm25s.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", path)
    sys.stdout.write(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
