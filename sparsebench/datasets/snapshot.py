"""A loaded dataset written once for the worker processes: plain JSON lines keyed by checksum.

Each measured method runs in a fresh worker. Loading the data there again through its own loader
costs the loader's imports and memory in every worker (BM25 on the same five documents peaked at
59 MiB via beir:, 69 via irds:, 349 via mteb:), so the memory a method is charged depended on
where its data came from; a dataset registered in the parent at run time (an ir_datasets id
from a plugin) could not be loaded there at all. The runner writes the loaded dataset here and
every worker reads the same file with the same few lines of code, whatever the source.

JSON only (never pickle): the file lives in the cache, but nothing read from disk may run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from ..errors import DatasetError
from .types import Document, Query, RetrievalDataset

# Bump the version whenever the layout changes: it names the directory, so a snapshot written by
# another version of sparsebench is never read as this one (the checksum alone would match).
FORMAT_VERSION = 2
FORMAT = f"sparsebench-dataset-snapshot/{FORMAT_VERSION}"


def snapshot_path(cache_dir: Path, ds: RetrievalDataset) -> Path:
    return cache_dir / "datasets" / f"v{FORMAT_VERSION}" / f"{ds.checksum}.jsonl"


def write_snapshot(cache_dir: Path, ds: RetrievalDataset) -> Path:
    """Write `ds` unless a snapshot of it in this format exists (named by its checksum); returns the path."""
    path = snapshot_path(cache_dir, ds)
    if path.is_file() and _has_current_header(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for obj in _lines(ds):
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        os.replace(tmp, path)  # atomic: a killed run leaves no half snapshot under the real name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _lines(ds: RetrievalDataset) -> Iterator[Any]:
    yield {"format": FORMAT, "id": ds.id, "checksum": ds.checksum, "ignore_identical_ids": ds.ignore_identical_ids,
           "score_queries_without_positives": ds.score_queries_without_positives,
           "source_info": dict(ds.source_info), "documents": len(ds.corpus), "queries": len(ds.queries)}
    for d in ds.corpus:
        yield [d.id, d.title, d.text]
    for q in ds.queries:
        yield [q.id, q.text]
    yield {qid: dict(judged) for qid, judged in ds.qrels.items()}


def _has_current_header(path: Path) -> bool:
    """A complete file of this format (a damaged or foreign one is written again)."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.loads(f.readline()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_snapshot(path: Path) -> RetrievalDataset:
    """The dataset as written; its checksum is recomputed, so a damaged file cannot pass."""
    try:
        with path.open(encoding="utf-8") as f:
            head = json.loads(next(f))
            if head.get("format") != FORMAT:
                raise DatasetError(f"{path}: not a {FORMAT} file; delete it and run again")
            corpus = tuple(Document(id=i, title=t, text=x) for i, t, x in (json.loads(next(f)) for _ in range(head["documents"])))
            queries = tuple(Query(id=i, text=x) for i, x in (json.loads(next(f)) for _ in range(head["queries"])))
            qrels = json.loads(next(f))
        ds = RetrievalDataset(id=head["id"], corpus=corpus, queries=queries, qrels=qrels,
                              ignore_identical_ids=bool(head["ignore_identical_ids"]), source_info=head["source_info"],
                              score_queries_without_positives=bool(head["score_queries_without_positives"]))
    except (OSError, StopIteration, ValueError, TypeError, KeyError, AttributeError) as e:
        raise DatasetError(f"{path}: unreadable dataset snapshot ({type(e).__name__}: {e}); delete it and run again") from e
    if ds.checksum != head["checksum"]:  # computed from the content just read
        raise DatasetError(f"{path}: dataset snapshot does not match its checksum; delete it and run again")
    return ds
