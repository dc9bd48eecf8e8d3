"""The plain-text results table printed at the end of a run."""

from __future__ import annotations

from typing import Any, Sequence

from .suites.axes import Column

# Costs that are bytes are shown in MiB.
MIB_AXES = ("index_bytes", "model_bytes", "sae_bytes")


def _fmt(value: Any, pattern: str, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return pattern.format(value / scale)


def results_table(records: Sequence[dict[str, Any]], metrics: Sequence[str], columns: Sequence[Column]) -> str:
    """`columns`: the task's summary columns (Task.summary_columns)."""
    header = ["method", "dataset", *metrics, *(c[1] for c in columns), "status"]
    rows = []
    for rec in records:
        row = [rec["method"], rec["dataset"]["id"]]
        row += [_fmt(rec["metrics"].get(m, {}).get("value"), "{:.4f}") for m in metrics]
        for name, _, pattern in columns:
            scale = 2**20 if name in MIB_AXES else 1.0
            row.append(_fmt(rec["costs"].get(name, {}).get("value"), pattern, scale))
        row.append(rec["status"])
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)
