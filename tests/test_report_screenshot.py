"""The rendered report in a real headless browser: scripts/screenshot_report.py end to end."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SAMPLE_RESULTS

SCRIPT = REPO / "scripts" / "screenshot_report.py"


def _chromium() -> str | None:
    return next((p for name in ("/usr/bin/chromium", "chromium", "chromium-browser") if (p := shutil.which(name))), None)


@pytest.mark.slow
def test_screenshot_of_the_sample_report(tmp_path: Path) -> None:
    if _chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, results, ignore=shutil.ignore_patterns(".locks"))
    png = tmp_path / "report.png"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(results), "--out", str(tmp_path / "reports"), "--png", str(png)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "reports" / "index.html").exists()
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1400, 2400)
    assert len(data) > 100_000  # a blank page compresses to a few KiB; the report is far busier
