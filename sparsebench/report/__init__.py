"""The reporter: results/*.jsonl (and per-query sidecars) in, one static HTML page out.

Pure functions build a view model from the records (`model`), SVG geometry is computed in
`plot`, and `render` fills jinja2 templates with autoescaping on. Nothing here imports method
adapters or kernels, and nothing here writes to the results directory.
"""

from __future__ import annotations

from .model import ReportOptions, build_report
from .render import render_html, write_report

__all__ = ["ReportOptions", "build_report", "render_html", "write_report"]
