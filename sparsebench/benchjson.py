"""`bench export --format pytest-benchmark --out FILE.json`: latencies as pytest-benchmark saves them.

One benchmark per latest ok record of a key: its per-query single-query latencies (the fastest of
each query's `latency_repeats` timings, as the per-query file keeps them), in seconds, with the
statistics computed by pytest-benchmark's own `Stats` so every figure means what it means there.
`pytest-benchmark compare FILE.json` then shows, sorts, groups and histograms them like any other
saved run. Benchmarks are grouped by suite, dataset and profile, since latencies compare only
within a profile.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from .errors import BenchError

log = logging.getLogger(__name__)

WHAT = "single-query latency (encode + search), fastest of latency_repeats timings per query, seconds"


def export_pytest_benchmark(results_dir: Path, out: Path) -> int:
    from .export import read_records

    try:
        import pytest_benchmark
        from pytest_benchmark.stats import Stats
    except ImportError as e:
        raise BenchError("--format pytest-benchmark computes its statistics with pytest-benchmark: pip install pytest-benchmark") from e
    latest: dict[str, dict[str, Any]] = {}
    for rec in read_records(results_dir, "ok"):
        latest[rec["key"]] = rec  # records are in time order: a later rerun of a key replaces it
    benchmarks = [b for b in (_benchmark(results_dir, rec, Stats) for rec in latest.values()) if b is not None]
    if not benchmarks:
        raise BenchError(f"{results_dir}: no ok record with per-query latencies to export")
    first = next(iter(latest.values()))
    doc = {
        "machine_info": {**first["profile"].get("machine", {}), "profile": first["profile"].get("id"),
                         "fingerprint": first["profile"].get("fingerprint")},
        "commit_info": _commit_info(list(latest.values())),
        "benchmarks": benchmarks,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "version": pytest_benchmark.__version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %d benchmark(s) to %s (pytest-benchmark compare %s)", len(benchmarks), out, out)
    return 0


def _benchmark(results_dir: Path, rec: dict[str, Any], stats_cls: Any) -> dict[str, Any] | None:
    from .sidecars import read_sidecar

    ref = rec.get("per_query")
    if not isinstance(ref, dict):
        return None
    per_query = read_sidecar(results_dir, ref)
    seconds = [q["latency_ms"] / 1000 for q in per_query.values() if isinstance(q.get("latency_ms"), (int, float))]
    if not seconds:
        log.warning("%s (run %s): no per-query latencies; not exported", rec["method"], rec["run_id"])
        return None
    stats = stats_cls()
    for s in seconds:
        stats.update(s)
    group = f"{rec['suite']} {rec['dataset'].get('id')} {rec['profile'].get('id')}"
    return {
        "group": group,
        "name": rec["method"],
        "fullname": f"{group}::{rec['method']}",
        "params": rec["params"],
        "param": None,
        "extra_info": {"what": WHAT, "key": rec["key"], "run_id": rec["run_id"], "main_metric": rec["main_metric"],
                       rec["main_metric"]: rec["metrics"][rec["main_metric"]]["value"]},
        "options": {"timer": "perf_counter_ns", "warmup": rec["settings"].get("warmup_queries"),
                    "min_rounds": len(seconds), "disable_gc": False, "max_time": None, "min_time": None},
        "stats": {**stats.as_dict(), "iterations": 1},
    }


def _commit_info(recs: list[dict[str, Any]]) -> dict[str, Any]:
    commits = {r["provenance"].get("git_commit") for r in recs}
    dirty = any(r["provenance"].get("git_dirty") for r in recs)
    return {"id": commits.pop() if len(commits) == 1 else "several", "dirty": dirty, "project": "sparsebench"}
