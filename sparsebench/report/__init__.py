"""The reporter: results/*.jsonl (and per-query sidecars) in, a static HTML site out.

Pure functions build a view model from the records (`model`, `site`, `dominance`), SVG geometry
is computed in `plot`, and `render` fills jinja2 templates with autoescaping on. Nothing here
imports method adapters or kernels (method cards come from the registry's plain-data
catalogue, which `bench report` passes in), and nothing here writes to the results directory.
"""

from __future__ import annotations

from .model import ReportOptions, build_report
from .render import render_site, write_report
from .site import build_site

__all__ = ["ReportOptions", "build_report", "build_site", "render_site", "write_report"]
