"""What the lm task measures on: evaluation and calibration text, by name, with one checksum.

`embedded:austen,wiki` names texts shipped in sparsebench/data/lmtext (sparsebench.lmtext);
each text has an evaluation part and a disjoint calibration part. The snapshot handed to the
workers is plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import DatasetError

FORMAT = "sparsebench-lm-text-snapshot/1"


@dataclass(frozen=True)
class LMText:
    name: str
    eval_text: str
    calib_text: str


@dataclass(frozen=True)
class LMData:
    id: str
    texts: tuple[LMText, ...]
    checksum: str = ""
    source_info: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.checksum:
            h = hashlib.sha256()
            for t in self.texts:
                for part in (t.name, t.eval_text, t.calib_text):
                    h.update(part.encode("utf-8"))
                    h.update(b"\0")
            object.__setattr__(self, "checksum", h.hexdigest())

    @property
    def counts(self) -> dict[str, int]:
        return {"texts": len(self.texts), "eval_words": sum(len(t.eval_text.split()) for t in self.texts),
                "calibration_words": sum(len(t.calib_text.split()) for t in self.texts)}


def load_lm_data(source: str, data_id: str) -> LMData:
    """`embedded:NAME[,NAME...]`: texts shipped with sparsebench."""
    kind, _, rest = source.partition(":")
    if kind != "embedded" or not rest:
        raise DatasetError(f"lm data source {source!r}: write embedded:NAME[,NAME] (texts shipped with sparsebench)")
    from .. import lmtext

    names = [n.strip() for n in rest.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise DatasetError(f"lm data source {source!r}: a text is named twice")
    texts = tuple(LMText(n, lmtext.load_text(n, "eval").text, lmtext.load_text(n, "calib").text) for n in names)
    return LMData(data_id, texts)


def write_snapshot(cache_dir: Path, data: LMData) -> Path:
    path = cache_dir / "datasets" / "lm-v1" / f"{data.checksum}.json"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    payload = {"format": FORMAT, "id": data.id, "checksum": data.checksum, "source_info": dict(data.source_info),
               "texts": [{"name": t.name, "eval": t.eval_text, "calib": t.calib_text} for t in data.texts]}
    tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_snapshot(path: Path) -> LMData:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format") != FORMAT:
        raise DatasetError(f"{path}: not an lm text snapshot of this sparsebench ({raw.get('format')!r})")
    data = LMData(raw["id"], tuple(LMText(t["name"], t["eval"], t["calib"]) for t in raw["texts"]),
                  source_info=raw["source_info"])
    if data.checksum != raw["checksum"]:
        raise DatasetError(f"{path}: content does not match its checksum; delete the file and run again")
    return data
