#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/test_report_browser.py) and
# scripts/browser_check.py. Best effort: without root (or password-free sudo, as on CI runners),
# apt-get or the archive it warns and exits 0, and the browser tests skip themselves, saying
# why. Idempotent: nothing to do once installed.
set -uo pipefail

for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    as_root=(false)
  fi
fi
if [ "${as_root[*]}" = false ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: chromium is missing and cannot be installed here (needs root or sudo, and apt-get); the browser tests will skip" >&2
  exit 0
fi
log=/tmp/sparsebench-setup-browser.log
# A fresh machine may have empty package lists: update once if the first try fails.
if ! timeout 900 "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >"$log" 2>&1; then
  timeout 300 "${as_root[@]}" apt-get update -q >>"$log" 2>&1
  if ! timeout 900 "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>"$log" 2>&1; then
    echo "setup_browser: apt-get install chromium failed (log: $log); the browser tests will skip" >&2
    exit 0
  fi
fi
echo "setup_browser: installed $(command -v chromium)" >&2
