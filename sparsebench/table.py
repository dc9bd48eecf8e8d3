"""The plain-text results table printed at the end of a run."""

from __future__ import annotations

from typing import Any, Sequence

COST_COLUMNS = (
    ("latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency_p95_ms", "p95 ms", "{:.2f}"),
    ("latency_p99_ms", "p99 ms", "{:.2f}"),
    ("batch_throughput", "batch q/s", "{:.0f}"),
    ("index_build_s", "build s", "{:.2f}"),
    ("index_bytes", "index MiB", "{:.2f}"),
    ("peak_rss_mb", "RSS MiB", "{:.0f}"),
)


def _fmt(value: Any, pattern: str, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return pattern.format(value / scale)


def results_table(records: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    header = ["method", "dataset", *metrics, *(c[1] for c in COST_COLUMNS), "status"]
    rows = []
    for rec in records:
        row = [rec["method"], rec["dataset"]["id"]]
        row += [_fmt(rec["metrics"].get(m, {}).get("value"), "{:.4f}") for m in metrics]
        for name, _, pattern in COST_COLUMNS:
            scale = 2**20 if name == "index_bytes" else 1.0
            row.append(_fmt(rec["costs"].get(name, {}).get("value"), pattern, scale))
        row.append(rec["status"])
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)
