"""How long `bench report` takes to build the site from many records.

Writes N synthetic records (default 1,000) through the runner's own record and per-query code
(`records.append`, `sidecars.write_sidecar`): four suites (retrieval, lm, long-context, sae),
two profiles, several datasets, sweeps of 3-5 points per method, repeats of some keys and a few
failures; then times `bench report` end to end (loading, bootstrap intervals, paired tests,
plots, every page written), best of --repeats, in this process.

    .venv/bin/python benchmarks/report_site.py                 # 1,000 records
    .venv/bin/python benchmarks/report_site.py --records 3000 --keep /tmp/site

The records are synthetic, so the timings say nothing about any method; they measure the reporter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("report_site")

# suite -> (task, main metric, direction, queries per record, cost axes (name, unit))
SUITES = {
    "retrieval@3": ("retrieval", "nDCG@10", "higher", 474,
                    [("latency_p50_ms", "ms"), ("index_bytes", "B"), ("batch_throughput", "queries/s"), ("peak_rss_mb", "MiB")]),
    "lm@2": ("lm", "perplexity", "lower", 128, [("prefill_ms", "ms"), ("weight_bytes", "B"), ("peak_rss_mb", "MiB")]),
    "long-context@2": ("long-context", "accuracy", "higher", 18, [("kv_bytes", "B"), ("prefill_ms", "ms"), ("decode_ms_per_token", "ms")]),
    "sae@1": ("sae", "ce_loss_recovered", "higher", 32, [("sae_bytes", "B"), ("encode_us_per_token", "us"), ("train_s", "s")]),
}
FAMILIES = ["sparse-encoder", "dense-encoder", "compressor", "pruning", "kv-cache", "sae", "sparse-attention"]
PROFILES = ["cpu-2core", "h200-x1"]
DATASETS = ["faq", "beir:scifact"]


def write_records(results: Path, n: int, seed: int = 0) -> int:
    from sparsebench import records, sidecars

    rng = np.random.default_rng(seed)
    written = 0
    i = 0
    while written < n:
        suite = list(SUITES)[i % len(SUITES)]
        task, metric, direction, n_q, axes = SUITES[suite]
        profile = PROFILES[(i // len(SUITES)) % len(PROFILES)]
        dataset = DATASETS[(i // (len(SUITES) * len(PROFILES))) % len(DATASETS)]
        name = f"m{i % 37}"
        family = FAMILIES[i % len(FAMILIES)]
        for point in range(3 + i % 3):  # a sweep of 3-5 operating points
            method = f"{name}(k={2 ** point})"
            key = hashlib.sha256(f"{suite}|{method}|{dataset}|{profile}".encode()).hexdigest()
            centre = rng.uniform(0.3, 0.8)
            for repeat in range(1 + (point == 0)):  # the first point of each sweep has a repeat
                run_id = f"run{i}-{repeat}"
                values = np.clip(rng.normal(centre, 0.2, n_q), 0, 1)
                per_query = {f"q{q:04d}": {metric if metric != "perplexity" else "nll": float(v)} for q, v in enumerate(values)}
                failed = rng.random() < 0.03
                rec = {
                    "schema": 1, "key": key, "run_id": run_id, "suite": suite, "task": task,
                    "method": method, "method_name": name, "family": family,
                    "params": {"k": 2 ** point}, "settings": {},
                    "dataset": {"id": dataset, "checksum": hashlib.sha256(dataset.encode()).hexdigest(), "counts": {}},
                    "main_metric": metric, "metrics": {}, "costs": {},
                    "profile": {"id": profile, "fingerprint": "fp-" + profile, "matched": True},
                    "provenance": {"git_commit": "0" * 40, "git_dirty": False, "packages": {"numpy": np.__version__}},
                    "started_at": f"2026-01-01T00:{repeat:02d}:00+00:00", "finished_at": f"2026-01-01T00:{repeat:02d}:30+00:00",
                    "status": "failed" if failed else "ok", "error": "synthetic failure" if failed else None, "duration_s": 30.0,
                }
                if not failed:
                    mean = float(values.mean())
                    rec["metrics"][metric] = {"value": float(np.exp(mean)) if metric == "perplexity" else mean, "unit": "",
                                              "n": n_q, "direction": direction,
                                              "aggregation": "exp(mean NLL)" if metric == "perplexity" else "mean over queries"}
                    for axis, unit in axes:
                        rec["costs"][axis] = {"value": float(rng.lognormal(2, 1)), "unit": unit, "n": n_q}
                    rec["per_query"] = sidecars.write_sidecar(results, suite.split("@")[0], key, run_id, per_query)
                records.append(results / f"{suite.split('@')[0]}.jsonl", rec)
                written += 1
                if written >= n:
                    return written
        i += 1
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="timed builds; the best is reported (default 3)")
    p.add_argument("--keep", type=Path, help="keep the results and the site here instead of a temporary directory")
    p.add_argument("--json", type=Path, help="also write the timings to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    from sparsebench import registry
    from sparsebench.report import write_report

    root = args.keep or Path(tempfile.mkdtemp(prefix="sparsebench-report-bench-"))
    results, site = root / "results", root / "site"
    if results.exists():
        shutil.rmtree(results)
    n = write_records(results, args.records)
    catalogue = registry.catalogue()  # what `bench report` does first
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        write_report(results, site, catalogue=registry.catalogue())
        times.append(time.perf_counter() - t0)
    pages = len(list(site.rglob("*.html")))
    size = sum(p.stat().st_size for p in site.rglob("*.html"))
    summary = {"records": n, "pages": pages, "site_bytes": size, "seconds": times, "best_s": min(times), "catalogue_methods": len(catalogue)}
    sys.stdout.write(f"{n} records -> {pages} pages ({size / 2**20:.1f} MiB): best {min(times):.2f} s of {len(times)} "
                     f"(all: {', '.join(f'{t:.2f}' for t in times)})\n")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
