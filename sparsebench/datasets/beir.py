"""BEIR-format folders: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.

This is the format BEIR and MTEB publish and the embedded default collection uses, so a user
can point the suite at their own folder. Like BEIR's loader, only queries judged in the split
are kept; unlike it, malformed lines are errors that name the file and line.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Iterator

from ..errors import DatasetError
from .types import Document, Query, RetrievalDataset

log = logging.getLogger(__name__)


def load_beir(folder: str | Path, split: str = "test", dataset_id: str | None = None) -> RetrievalDataset:
    root = Path(folder).expanduser()
    did = dataset_id or beir_dataset_id(str(folder), None if split == "test" else split, None)
    if not root.is_dir():
        raise DatasetError(f"{did}: folder {root} does not exist (expected corpus.jsonl, queries.jsonl, qrels/{split}.tsv)")
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not required.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
            extra = f" (splits present: {', '.join(splits)}; choose one with beir:PATH#SPLIT)" if splits and required == qrels_path else ""
            raise DatasetError(f"{did}: missing {required}{extra}")

    corpus = tuple(
        Document(id=_id(obj, path, n), title=str(obj.get("title") or ""), text=_text(obj, path, n))
        for obj, path, n in _jsonl(root / "corpus.jsonl")
    )
    _unique([d.id for d in corpus], root / "corpus.jsonl")
    qrels = _read_qrels(qrels_path)
    all_queries = [Query(id=_id(obj, p, n), text=_text(obj, p, n)) for obj, p, n in _jsonl(root / "queries.jsonl")]
    _unique([q.id for q in all_queries], root / "queries.jsonl")
    queries = tuple(q for q in all_queries if q.id in qrels)
    missing_q = sorted(set(qrels) - {q.id for q in queries})
    if missing_q:
        raise DatasetError(f"{qrels_path}: {len(missing_q)} judged query ids are not in queries.jsonl (first: {missing_q[0]!r})")
    doc_ids = {d.id for d in corpus}
    unknown_docs = {d for judged in qrels.values() for d in judged if d not in doc_ids}
    if unknown_docs:
        # BEIR releases contain such judgments; they cannot be retrieved, so they only lower recall.
        log.warning("%s: %d judged document ids are not in the corpus (first: %s)", qrels_path, len(unknown_docs), sorted(unknown_docs)[0])
    return RetrievalDataset(id=did, corpus=corpus, queries=queries, qrels=qrels)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def beir_dataset_id(folder: str, split: str | None, name: str | None) -> str:
    """`beir:NAME[#SPLIT]`, NAME the folder's own name unless given: the same data copied to
    another path (another machine, a CI checkout) is the same dataset and one leaderboard group.
    Where it lies stays in the record's `dataset.ref`; the content is pinned by the checksum."""
    if name is None:
        name = Path(folder).expanduser().resolve().name
        if not _NAME.fullmatch(name):
            raise DatasetError(f"beir:{folder}: the folder name {name!r} is not usable as a dataset name; "
                               "give one with --dataset-name NAME (letters, digits, _ . -)")
    elif not _NAME.fullmatch(name):
        raise DatasetError(f"--dataset-name {name!r}: use 1-64 letters, digits, _ . - (starting with a letter or digit)")
    return f"beir:{name}" + (f"#{split}" if split else "")


def _jsonl(path: Path) -> Iterator[tuple[dict, Path, int]]:
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            line = _decode(raw, path, n)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: invalid JSON ({e.msg})") from e
            except (ValueError, RecursionError) as e:  # a 5000-digit number, brackets nested too deep
                raise DatasetError(f"{path}:{n}: unreadable JSON ({type(e).__name__}: {str(e)[:100]})") from e
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{n}: expected a JSON object")
            yield obj, path, n


def _id(obj: dict, path: Path, n: int) -> str:
    value = obj.get("_id")
    if value is None or str(value) == "":
        raise DatasetError(f"{path}:{n}: missing \"_id\"")
    return str(value)


def _text(obj: dict, path: Path, n: int) -> str:
    value = obj.get("text")
    if not isinstance(value, str):
        raise DatasetError(f"{path}:{n}: missing or non-string \"text\"")
    return value


def _unique(ids: list[str], path: Path) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DatasetError(f"{path}: duplicate id {i!r}")
        seen.add(i)


def _decode(raw: bytes, path: Path, n: int) -> str:
    """One line as UTF-8 (the format's encoding), or an error naming the file, line and byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); BEIR files are UTF-8, re-encode the file") from e


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open("rb") as f:
        lines = (_decode(raw, path, n) for n, raw in enumerate(f, 1))
        rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        for n, row in enumerate(rows, 1):
            if not row or (n == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise DatasetError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}")
            try:
                grade = int(row[2])
            except ValueError as e:
                raise DatasetError(f"{path}:{n}: score {row[2]!r} is not an integer") from e
            qrels.setdefault(row[0], {})[row[1]] = grade
    if not qrels:
        raise DatasetError(f"{path}: no judgments")
    return qrels
