"""Worker environments: a method whose library pins versions the project cannot share runs its
worker in a virtual environment of its own.

llm-compressor pins transformers 5.15-5.17, PyLate <=5.3.0 and kvpress <5.3, while the rest of the project
resolves the newest; pinning the whole project to the oldest would hold every family back (and
ann-benchmarks runs one container per algorithm for the same reason). A method names the
environment it needs (`worker_env()`); `scripts/setup.sh --env NAME` makes `.venvs/NAME` with
the project installed from the same checkout and that extra; the runner starts the method's
worker with that environment's Python and gets plain data back, so records, resume and the
report do not change.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError


@dataclass(frozen=True)
class WorkerEnv:
    name: str
    extra: str  # the pyproject extra installed there
    probe: str  # a module importable only where the extra is installed
    why: str


ENVS: dict[str, WorkerEnv] = {
    "prune": WorkerEnv("prune", "prune", "llmcompressor",
                       "llm-compressor pins transformers 5.15-5.17; the project resolves a newer one"),
    "late": WorkerEnv("late", "late", "pylate",
                      "PyLate pins sentence-transformers 5.3.0 and transformers <=5.3.0; the project resolves newer ones"),
    "kv": WorkerEnv("kv", "kv", "kvpress",
                    "kvpress 0.5.5 pins transformers <5.3 (its hooks read the attention layers' past_key_values keyword); "
                    "the project resolves a newer one"),
    "sae": WorkerEnv("sae", "sae", "dictionary_learning",
                     "dictionary_learning imports nnsight, and both require wandb, umap, plotly, torchvision and "
                     "diffusers, which its trainers never use: they go in without requirements there"),
}


def envs_root() -> Path:
    """`$SPARSEBENCH_ENVS`, else `.venvs` next to the checkout sparsebench runs from."""
    if os.environ.get("SPARSEBENCH_ENVS"):
        return Path(os.environ["SPARSEBENCH_ENVS"])
    return Path(__file__).resolve().parent.parent / ".venvs"


def env_of(method: object) -> str | None:
    """The environment a method's worker needs, nested methods included (one at most)."""
    from . import registry

    needed = set()
    stack = [method]
    while stack:
        m = stack.pop()
        want = getattr(m, "worker_env", None)
        if callable(want) and want():
            needed.add(want())
        stack.extend(getattr(m, f.name) for f in registry.method_fields(type(m)))
    if len(needed) > 1:
        raise BenchError(f"{method}: its parts need different worker environments ({', '.join(sorted(needed))}); "
                         "a composed method runs in one")
    return needed.pop() if needed else None


def here_has(env: str) -> bool:
    """Whether this interpreter already has the environment's packages (it may be that venv)."""
    return importlib.util.find_spec(ENVS[env].probe) is not None


def python_of(env: str) -> Path:
    return envs_root() / env / "bin" / "python"


@functools.lru_cache(maxsize=None)
def _check_env_python(python: str) -> str:
    """'' when `python` imports this very sparsebench source and the env's probe; else why not."""
    code = ("import json, importlib.util, sparsebench, sys; print(json.dumps({'file': sparsebench.__file__, "
            "'probe': {n: importlib.util.find_spec(n) is not None for n in sys.argv[1:]}}))")
    probes = [e.probe for e in ENVS.values()]
    try:
        out = subprocess.run([python, "-c", code, *probes], capture_output=True, text=True, timeout=120, check=True).stdout
        got = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return f"{python} does not run sparsebench ({type(e).__name__})"
    ours = str(Path(__file__).resolve().parent / "__init__.py")
    if str(Path(got["file"]).resolve()) != ours:
        return f"{python} imports sparsebench from {got['file']}, not this checkout ({ours}); re-create it"
    return ""


def worker_python(method: object) -> str | None:
    """The interpreter to start `method`'s worker with: None for this one; a clear error when
    the environment it needs is missing or broken (before anything is written)."""
    env = env_of(method)
    if env is None or here_has(env):
        return None
    spec = ENVS[env]
    python = python_of(env)
    fix = f"create it with `scripts/setup.sh --env {env}` (a virtual environment with the project's [{spec.extra}] extra)"
    if not python.exists():
        raise BenchError(f"{method} runs in the worker environment {env!r} ({spec.why}), which is missing at "
                         f"{python.parent.parent}; {fix}")
    problem = _check_env_python(str(python))
    if problem:
        raise BenchError(f"{method}: worker environment {env!r}: {problem}; {fix}")
    return str(python)


def describe_worker() -> dict[str, str]:
    """What the worker ran with, for the record: interpreter and the versions that matter."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "executable": sys.executable}
    for pkg in ("torch", "transformers", "llmcompressor", "sentence-transformers", "pylate", "kvpress", "optimum-quanto",
                "dictionary-learning"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
