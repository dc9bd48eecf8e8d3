"""Rendering the view model with jinja2 (autoescape on) into one self-contained HTML file.

The page's own JS and CSS are inlined from `static/` so the file opens offline from disk; they
are the only strings marked safe, and they are ours, never record data.
"""

from __future__ import annotations

import logging
import os
from importlib.resources import files
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..errors import BenchError
from . import fmt
from .model import Report, ReportOptions, build_report, check_options

log = logging.getLogger(__name__)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sparsebench.report", "templates"),
        autoescape=True,  # every template here is HTML; record text is untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=fmt.number, metric=fmt.metric, exact=fmt.exact)
    return env


def _static(name: str, closing: str) -> Markup:
    text = (files("sparsebench.report") / "static" / name).read_text(encoding="utf-8")
    # Inlined into <script>/<style>: a closing tag inside would end the element early.
    if closing in text.lower():
        raise RuntimeError(f"static/{name} contains {closing!r}; it cannot be inlined")
    return Markup(text)


def render_html(report: Report) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        script=_static("report.js", "</script"),
        style=_static("report.css", "</style"),
    )


def write_report(results_dir: Path, out_dir: Path, options: ReportOptions | None = None, strict_options: bool = False) -> Path:
    """Render the results directory into out_dir/index.html (atomically) and return its path.

    strict_options: a --baseline or --budget axis that matches nothing is an error (the CLI),
    rather than silently ignored."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if out_dir.resolve().is_relative_to(results_dir.resolve()):
        raise BenchError(f"--out {out_dir} is inside the results directory {results_dir}; the reporter never writes there, choose another --out")
    options = options or ReportOptions()
    report = build_report(results_dir, options)
    if strict_options:
        check_options(report, options)
    html = render_html(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    tmp = out_dir / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    log.info("wrote %s (%d groups)", path, html.count('class="group"'))
    return path
