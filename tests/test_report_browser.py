"""The leaderboard site in a real headless Chromium (Debian's package): every page loads without
a console error, and sorting and filtering change what the tables show.

Driven over the DevTools protocol by scripts/browser_check.py; skipped where chromium is not
installed (`apt-get install -y chromium`). Set SPARSEBENCH_SCREENSHOTS=DIR to keep full-page
screenshots of the index and a suite page.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from sparsebench import registry
from sparsebench.report import write_report

from .test_browser_check import bc  # the script, loaded once from scripts/
from .test_report import SPECS, make_record

if bc.find_chromium() is None:
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)", allow_module_level=True)

# Runs in the page: sort by method, then filter by family, parameter, text and cost axis, and
# report what the tables show after each step (row keys in order, visible rows, hidden columns).
PROBE = r"""
(function () {
  function keys(table) {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.getAttribute("data-key"); });
  }
  function visible(table) {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; })
      .map(function (r) { return r.getAttribute("data-key"); });
  }
  var board = document.querySelector("table.leaderboard");
  var form = document.querySelector("form.filters");
  var out = { before: keys(board) };
  var th = Array.prototype.find.call(board.tHead.rows[0].cells, function (c) { return c.textContent.trim() === "method"; });
  th.click();
  out.sorted = keys(board);
  out.methodsSorted = Array.prototype.map.call(board.tBodies[0].rows, function (r) { return r.getAttribute("data-method"); });
  th.click();
  out.reversed = keys(board);
  var dense = form.querySelector("input[name=family][value='dense-encoder']");
  dense.checked = false;
  dense.dispatchEvent(new Event("change", { bubbles: true }));
  out.noDense = visible(board);
  out.denseKeys = Array.prototype.filter.call(board.tBodies[0].rows, function (r) { return r.getAttribute("data-family") === "dense-encoder"; })
    .map(function (r) { return r.getAttribute("data-key"); });
  out.hiddenPoints = Array.prototype.filter.call(document.querySelectorAll("svg a[data-key]"), function (a) { return a.style.display === "none"; })
    .map(function (a) { return a.getAttribute("data-key"); });
  out.hiddenFrontierRows = Array.prototype.filter.call(document.querySelectorAll("table.frontier-table tr[data-key]"), function (r) { return r.hidden; })
    .map(function (r) { return r.getAttribute("data-key"); });
  out.count = form.querySelector(".shown-count").textContent;
  dense.checked = true;
  dense.dispatchEvent(new Event("change", { bubbles: true }));
  form.elements.param.value = "note=splade";
  form.elements.param.dispatchEvent(new Event("change", { bubbles: true }));
  out.paramSplade = visible(board);
  form.elements.param.value = "";
  form.elements.text.value = "BM25(";
  form.elements.text.dispatchEvent(new Event("input", { bubbles: true }));
  out.textBm25 = Array.prototype.filter.call(board.tBodies[0].rows, function (r) { return !r.hidden; })
    .map(function (r) { return r.getAttribute("data-method"); });
  form.elements.text.value = "";
  form.elements.axis.value = "index_bytes";
  form.elements.axis.dispatchEvent(new Event("change", { bubbles: true }));
  out.axisHeaders = Array.prototype.filter.call(board.tHead.rows[0].cells, function (c) { return c.hasAttribute("data-axis") && !c.hidden; })
    .map(function (c) { return c.getAttribute("data-axis"); });
  out.axisFigures = Array.prototype.filter.call(document.querySelectorAll("figure.frontier"), function (f) { return !f.hidden; })
    .map(function (f) { return f.getAttribute("data-axis"); });
  out.allRows = visible(board).length;
  return out;
})()
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    for spec in SPECS:
        make_record(spec, root / "results")
    write_report(root / "results", root / "site", catalogue=registry.catalogue())
    return root / "site"


@pytest.fixture(scope="module")
def browser():
    with bc.Browser(timeout_s=60.0) as b:
        yield b


def test_every_page_loads_without_a_console_error(site: Path, browser) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10  # index, methods, profiles, three suite pages and the method cards
    for page in pages:
        result = browser.check(page, "document.querySelectorAll('main').length")
        assert result.errors == [], (page, result.errors)
        assert result.value == 1, page


def test_sorting_and_filtering_change_the_table(site: Path, browser) -> None:
    index = (site / "index.html").read_text()
    group1 = next(p for p in sorted((site / "suites").glob("*.html"))
                  if "retrieval@1" in p.read_text() and "profile cpu-2core" in p.read_text() and "pq-minilm" in p.read_text())
    assert group1.name in index
    result = browser.check(group1, PROBE)
    assert result.errors == []
    v = result.value
    assert isinstance(v, dict)
    assert sorted(v["before"]) == sorted(v["sorted"]) and v["sorted"] != v["before"]  # same rows, new order
    assert v["methodsSorted"] == sorted(v["methodsSorted"], key=str.lower)
    assert v["reversed"] == v["sorted"][::-1]
    assert v["denseKeys"] and not set(v["denseKeys"]) & set(v["noDense"])
    assert len(v["noDense"]) == len(v["before"]) - len(v["denseKeys"])
    assert set(v["hiddenPoints"]) == set(v["denseKeys"])  # the plots follow the filter
    assert set(v["hiddenFrontierRows"]) == set(v["denseKeys"])
    assert v["count"] == f"{len(v['noDense'])} of {len(v['before'])} methods shown"
    assert len(v["paramSplade"]) == 1
    assert v["textBm25"] and all(m.lower().startswith("bm25(") for m in v["textBm25"])
    assert v["axisHeaders"] == ["index_bytes"] and v["axisFigures"] == ["index_bytes"]
    assert v["allRows"] == len(v["before"])


def test_screenshots_of_the_index_and_a_suite_page(site: Path, browser, tmp_path: Path) -> None:
    out = Path(os.environ.get("SPARSEBENCH_SCREENSHOTS") or tmp_path)
    suite = sorted((site / "suites").glob("*.html"))[0]
    for page, name in ((site / "index.html", "index.png"), (suite, "suite.png")):
        png = browser.screenshot(page, out / name)
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1400 and height >= 600
    assert {"index.png", "suite.png"} <= {p.name for p in out.glob("*.png")}  # both written where asked
