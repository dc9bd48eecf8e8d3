"""scripts/browser_check.py against a real headless Chromium, on pages written here.

Skipped when no chromium is installed. One browser serves the whole module: starting one is the
slow part, and the script is meant to reuse it for many pages anyway.
"""

from __future__ import annotations

import importlib.util
import logging
import struct
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "browser_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("browser_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import would be (dataclasses look modules up there).
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bc = _load_script()

if bc.find_chromium() is None:
    pytest.skip("chromium is not installed", allow_module_level=True)

# Each page is a complete file on disk, opened over file:// -- nothing touches the network.
PAGES = {
    "console_error.html": "<!doctype html><title>a</title><p>a</p><script>console.error('x');</script>",
    "uncaught.html": "<!doctype html><title>b</title><p>b</p><script>throw new Error('boom');</script>",
    "clean/table.html": (
        "<!doctype html><title>c</title><table>"
        "<tr><th>k</th><th>v</th></tr><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr>"
        "<tr><td>5</td><td>6</td></tr></table>"
    ),
    "missing_image.html": "<!doctype html><title>d</title><img src='missing.png' alt='gone'>",
    "network_image.html": "<!doctype html><title>e</title><img src='https://example.invalid/x.png' alt='remote'>",
}
TIMEOUT_S = 60.0  # the test machine's cores are shared with long jobs; a slow start is not a failure


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for rel, html in PAGES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def browser():
    with bc.Browser(timeout_s=TIMEOUT_S) as b:
        yield b


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_console_error_is_reported(browser, site: Path) -> None:
    result = browser.check(site / "console_error.html")
    assert len(result.errors) == 1, result.errors
    assert "console.error" in result.errors[0] and "x" in result.errors[0]
    assert result.url == (site / "console_error.html").resolve().as_uri()


def test_uncaught_exception_is_reported(browser, site: Path) -> None:
    result = browser.check(site / "uncaught.html")
    assert len(result.errors) == 1, result.errors
    assert "boom" in result.errors[0]


def test_missing_image_is_reported(browser, site: Path) -> None:
    result = browser.check(site / "missing_image.html")
    # Reported once, though Chromium emits both Network.loadingFailed and a log entry for it.
    assert len(result.errors) == 1, result.errors
    assert "missing.png" in result.errors[0]
    assert "ERR_FILE_NOT_FOUND" in result.errors[0]


def test_a_load_from_the_network_fails_and_is_reported(browser, site: Path) -> None:
    # No host name resolves in the checked browser: a page must open from disk alone.
    result = browser.check(site / "network_image.html")
    assert len(result.errors) == 1, result.errors
    assert "example.invalid" in result.errors[0] and "ERR_NAME_NOT_RESOLVED" in result.errors[0]


def test_clean_page_has_no_errors_and_expression_value(browser, site: Path) -> None:
    result = browser.check(site / "clean" / "table.html", "document.querySelectorAll('td').length")
    assert result.errors == []
    assert result.value == 6


def test_expression_promise_and_json_value(browser, site: Path) -> None:
    result = browser.check(site / "clean" / "table.html", "Promise.resolve({n: 1, xs: ['a', null]})")
    assert result.errors == []
    assert result.value == {"n": 1, "xs": ["a", None]}


def test_no_expression_gives_none(browser, site: Path) -> None:
    assert browser.check(site / "clean" / "table.html").value is None


def test_throwing_expression_is_an_error(browser, site: Path) -> None:
    result = browser.check(site / "clean" / "table.html", "undefinedFunction()")
    assert result.value is None
    assert len(result.errors) == 1 and "undefinedFunction" in result.errors[0]


def test_missing_page_is_an_error(browser, site: Path) -> None:
    result = browser.check(site / "no_such_page.html")
    assert result.errors == [f"failed to load {(site / 'no_such_page.html').resolve().as_uri()}: net::ERR_FILE_NOT_FOUND"]


def test_screenshot_writes_png(browser, site: Path, tmp_path: Path) -> None:
    png = browser.screenshot(site / "clean" / "table.html", tmp_path / "out" / "table.png")
    assert png == tmp_path / "out" / "table.png"
    width, height = _png_size(png)
    assert (width, height) == (browser.width, browser.height)  # a short page fills the viewport


def test_full_page_screenshot_covers_tall_page(browser, tmp_path: Path) -> None:
    page = tmp_path / "tall.html"
    page.write_text("<!doctype html><body style='margin:0'><div style='height:2500px'>tall</div>", encoding="utf-8")
    assert _png_size(browser.screenshot(page, tmp_path / "full.png")) == (browser.width, 2500)
    assert _png_size(browser.screenshot(page, tmp_path / "view.png", full_page=False)) == (browser.width, browser.height)


def test_main_reports_errors_and_writes_pngs(site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    png_dir = tmp_path / "png"
    with caplog.at_level(logging.INFO, logger="browser_check"):
        rc = bc.main([str(site), "--png-dir", str(png_dir)])
    assert rc == 1
    assert sorted(p.name for p in png_dir.iterdir()) == [
        "clean__table.html.png", "console_error.html.png", "missing_image.html.png", "network_image.html.png",
        "uncaught.html.png",
    ]
    assert "clean/table.html: ok" in caplog.text


def test_main_clean_site_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(PAGES["clean/table.html"], encoding="utf-8")
    assert bc.main([str(tmp_path)]) == 0


def test_main_without_chromium_exits_3(tmp_path: Path) -> None:
    assert bc.main([str(tmp_path), "--chromium", str(tmp_path / "no-such-browser")]) == 3


def test_dead_browser_raises_with_stderr(site: Path) -> None:
    import os
    import signal

    with bc.Browser(timeout_s=TIMEOUT_S) as b:
        os.kill(b._pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="chromium exited"):
            b.check(site / "clean" / "table.html")
