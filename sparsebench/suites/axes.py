"""Cost axes each task declares: unit, which way is better, what is timed.

Data only, with no method or model imports, so the reporter and the validator can read it
without importing anything that runs code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    unit: str
    direction: str  # "lower" or "higher" is better
    description: str


TASK_COST_AXES: dict[str, dict[str, Axis]] = {
    "retrieval": {
        "model_load_s": Axis("s", "lower", "loading models and tokenizers"),
        "index_build_s": Axis("s", "lower", "encoding and indexing the whole corpus"),
        "encode_throughput": Axis("docs/s", "higher", "documents indexed per second"),
        "index_bytes": Axis("B", "lower", "size of the serialized index on disk"),
        "latency_p50_ms": Axis("ms", "lower", "single-query latency (encode + search), median"),
        "latency_p95_ms": Axis("ms", "lower", "single-query latency, 95th percentile"),
        "latency_p99_ms": Axis("ms", "lower", "single-query latency, 99th percentile"),
        "batch_throughput": Axis("queries/s", "higher", "all queries in batches of batch_size"),
        "peak_rss_mb": Axis("MiB", "lower", "the method's own peak resident memory: above the worker's RSS once the data was loaded"),
        "process_peak_rss_mb": Axis("MiB", "lower", "peak resident memory of the whole worker process (interpreter, data and method)"),
    },
}
