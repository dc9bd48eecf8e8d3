"""Render a report (or take an existing one) and screenshot it with headless Chromium.

    python scripts/screenshot_report.py --results results --png /tmp/report.png
    python scripts/screenshot_report.py --html reports/index.html --png /tmp/report.png

Uses Debian's chromium (`apt-get install chromium`); nothing is fetched from the network: the
page is a single self-contained file opened from disk.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("screenshot_report")

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium(explicit: str | None = None) -> str | None:
    for name in ([explicit] if explicit else CHROMIUM_CANDIDATES):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, chromium: str, width: int = 1400, height: int = 2400, timeout_s: int = 120) -> Path:
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory(prefix="sparsebench-chromium-") as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
            f"--window-size={width},{height}", html.resolve().as_uri(),
        ]
        log.info("running %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium exited {proc.returncode} without a screenshot: {proc.stderr.strip()[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--results", type=Path, default=Path("results"), help="results directory to render (default: results)")
    src.add_argument("--html", type=Path, help="an already rendered report to screenshot instead")
    p.add_argument("--out", type=Path, help="where to write the rendered report (default: a temporary directory)")
    p.add_argument("--png", type=Path, default=Path("report.png"), help="screenshot file (default: report.png)")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=2400)
    p.add_argument("--chromium", help="browser binary (default: /usr/bin/chromium or chromium on PATH)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    chromium = find_chromium(args.chromium)
    if chromium is None:
        log.error("chromium not found; install it with `apt-get install -y chromium` (Debian) or pass --chromium PATH")
        return 3
    with tempfile.TemporaryDirectory(prefix="sparsebench-report-") as tmp:
        html = args.html
        if html is None:
            from sparsebench.errors import BenchError
            from sparsebench.report import write_report

            try:
                html = write_report(args.results, args.out or Path(tmp))
            except BenchError as e:
                log.error("%s", e)
                return 2
        png = screenshot(html, args.png, chromium, args.width, args.height)
    log.info("wrote %s (%d bytes)", png, png.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
