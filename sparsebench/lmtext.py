"""Embedded language-model texts: evaluation and calibration prose for perplexity suites.

The texts live in ``sparsebench/data/lmtext/`` (built by ``scripts/make_lm_text.py``, which
documents the sources, the markup rules and the split rules; ``NOTICE.md`` there gives the
licences). Each text has two disjoint parts: ``eval`` (perplexity is measured on it) and
``calib`` (calibration text for pruning methods). Every load verifies the file's sha256 against
``MANIFEST.json``, so a result is never computed on silently different text.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from .errors import ConfigError

PARTS = ("eval", "calib")


@dataclass(frozen=True)
class LMText:
    """One part of one embedded text."""

    name: str  # "austen" | "wiki"
    part: str  # "eval" | "calib"
    text: str
    sha256: str  # of the file's bytes
    source: dict[str, Any] = field(hash=False, compare=False)  # package/version/licence, from the manifest


def _data_dir() -> Traversable:
    return files("sparsebench") / "data" / "lmtext"


@lru_cache(maxsize=1)
def _manifest() -> dict[str, Any]:
    path = _data_dir() / "MANIFEST.json"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"embedded LM texts are not in this installation ({path} is missing)") from e
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); reinstall sparsebench") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("texts"), dict):
        raise ConfigError(f"{path} has no 'texts' table; reinstall sparsebench")
    return manifest


def available() -> tuple[str, ...]:
    """The embedded text names, sorted: ``("austen", "wiki")``."""
    return tuple(sorted(_manifest()["texts"]))


def _entry(name: str) -> dict[str, Any]:
    texts = _manifest()["texts"]
    if not isinstance(name, str) or name not in texts:
        names = sorted(texts)
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown LM text {name!r}{hint} (available: {', '.join(names)})")
    return texts[name]


def _part_entry(name: str, part: str) -> dict[str, Any]:
    entry = _entry(name)
    if part not in PARTS:
        close = difflib.get_close_matches(str(part), PARTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"LM text {name!r}: unknown part {part!r}{hint} (parts: {', '.join(PARTS)})")
    return entry["parts"][part]


def load_text(name: str, part: str = "eval") -> LMText:
    """Read one part of an embedded text, verifying its sha256 against the manifest."""
    info = _part_entry(name, part)
    path = _data_dir() / info["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(f"LM text {name!r} ({part}): {path} is missing from this installation") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["sha256"]:
        raise ConfigError(
            f"LM text {name!r} ({part}): {path} has sha256 {digest}, but MANIFEST.json pins {info['sha256']} "
            "(the file was modified or corrupted; reinstall sparsebench or rebuild it with "
            "scripts/make_lm_text.py)"
        )
    return LMText(name=name, part=part, text=data.decode("utf-8"), sha256=digest,
                  source=dict(_entry(name)["source"]))


def text_checksum(names: Iterable[str] | str) -> str:
    """One sha256 over the manifest's file checksums of ``names`` (both parts each), for result keys.

    Order and repetition of ``names`` do not matter; a single name may be passed as a str.
    """
    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        raise ConfigError("text_checksum needs at least one LM text name")
    lines = [f"lmtext v{_manifest().get('version')}"]
    for name in sorted(set(wanted)):
        for part in PARTS:
            lines.append(f"{name}/{part} {_part_entry(name, part)['sha256']}")
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
