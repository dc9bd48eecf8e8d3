#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with CPU torch and the project installed.
# Safe to run on every invocation; it only installs what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
EXTRAS="test,mteb,lm,dask"
# `--env NAME`: a worker environment (sparsebench/envs.py) in .venvs/NAME with the project and
# its [NAME] extra, for methods whose library pins versions the main environment cannot share.
if [ "${1:-}" = "--env" ]; then
  [ -n "${2:-}" ] || { echo "setup: --env needs a name (prune)" >&2; exit 2; }
  case "$2" in
    prune) ;;
    *) echo "setup: unknown worker environment '$2' (known: prune)" >&2; exit 2 ;;
  esac
  VENV=".venvs/$2"
  EXTRAS="test,lm,$2"
  mkdir -p .venvs
fi
PIP=(env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet)
stamp="$VENV/.sparsebench-installed"

# Already set up and pyproject.toml unchanged since: nothing to do (keeps warm runs instant).
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi

# Install the CPU build of torch before anything that depends on torch: with no torch present,
# an unpinned requirement would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU)" >&2
  "${PIP[@]}" "torch==2.13.0"
fi

# The development set-up takes every extra the main environment can hold: the tests cover the
# mteb: loader and the lm suite too.
echo "setup: installing sparsebench and its dependencies into $VENV (extras: $EXTRAS)" >&2
"${PIP[@]}" -e ".[$EXTRAS]"
touch "$stamp"
