"""Rendering the view model with jinja2 (autoescape on) into a static site of self-contained pages.

index.html (one card per suite and profile), suites/<group>.html (a leaderboard per suite x
dataset x profile, with its records), methods.html and methods/<name>.html (one card per
method), profiles.html (the cross-profile ratios). Each page inlines the site's own JS and CSS
from `static/` so it opens offline from disk; they are the only strings marked safe, and they
are ours, never record data.
"""

from __future__ import annotations

import json
import logging
import os
from importlib.resources import files
from pathlib import Path

import jinja2
from markupsafe import Markup

from ..errors import BenchError
from . import fmt
from .model import ReportOptions, build_report, check_options
from .site import Site, build_site

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
    # jsontext returns a plain str, so autoescape escapes its quotes inside an attribute (jinja's
    # own tojson returns markup meant for <script>, whose quotes would end the attribute)
    env.filters.update(num=fmt.number, metric=fmt.metric, exact=fmt.exact,
                       jsontext=lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True))
    return env


def _static(name: str, closing: str) -> Markup:
    text = (files("sparsebench.report") / "static" / name).read_text(encoding="utf-8")
    # Inlined into <script>/<style>: a closing tag inside would end the element early.
    if closing in text.lower():
        raise RuntimeError(f"static/{name} contains {closing!r}; it cannot be inlined")
    return Markup(text)


def render_site(site: Site) -> dict[str, str]:
    """Every page of the site: relative path -> HTML."""
    env = _environment()
    common = dict(report=site.report, site=site, has_cross=bool(site.cross),
                  script=_static("report.js", "</script"), style=_static("report.css", "</style"))
    pages = {
        "index.html": env.get_template("index.html.j2").render(root="", **common),
        "methods.html": env.get_template("methods.html.j2").render(root="", **common),
    }
    if site.cross:
        pages["profiles.html"] = env.get_template("profiles.html.j2").render(root="", **common)
    suite = env.get_template("suite.html.j2")
    for g in site.report.groups:
        pages[g.page] = suite.render(root="../", g=g, **common)
    method = env.get_template("method.html.j2")
    for card in site.cards:
        pages[card.page] = method.render(root="../", card=card, **common)
    return pages


def write_report(results_dir: Path, out_dir: Path, options: ReportOptions | None = None, strict_options: bool = False,
                 catalogue: dict | None = None) -> Path:
    """Render the results directory into the site under out_dir and return out_dir/index.html.

    Each page is written atomically; pages of groups or methods no longer in the results are
    removed (only the site's own *.html under suites/ and methods/). strict_options: a
    --baseline or --budget axis that matches nothing is an error (the CLI), rather than
    silently ignored. catalogue: the registry's cards (`registry.catalogue()`)."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if out_dir.resolve().is_relative_to(results_dir.resolve()):
        raise BenchError(f"--out {out_dir} is inside the results directory {results_dir}; the reporter never writes there, choose another --out")
    options = options or ReportOptions()
    report = build_report(results_dir, options)
    if strict_options:
        check_options(report, options)
    pages = render_site(build_site(report, catalogue))
    for sub in ("suites", "methods"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for rel, html in sorted(pages.items()):
        path = out_dir / rel
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    for sub in ("suites", "methods"):
        for old in (out_dir / sub).glob("*.html"):
            if f"{sub}/{old.name}" not in pages:
                old.unlink()
    stale = out_dir / "profiles.html"
    if "profiles.html" not in pages and stale.exists():
        stale.unlink()
    log.info("wrote %d pages under %s (%d groups, %d method cards)", len(pages), out_dir, len(report.groups), len(pages) - len(report.groups) - 2)
    return out_dir / "index.html"
