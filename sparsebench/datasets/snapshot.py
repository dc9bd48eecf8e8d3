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

FORMAT = "sparsebench-dataset-snapshot/1"


def snapshot_path(cache_dir: Path, ds: RetrievalDataset) -> Path:
    return cache_dir / "datasets" / f"{ds.checksum}.jsonl"


def write_snapshot(cache_dir: Path, ds: RetrievalDataset) -> Path:
    """Write `ds` unless its snapshot exists (the name is its checksum); returns the path."""
    path = snapshot_path(cache_dir, ds)
    if path.is_file():
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
    except (OSError, StopIteration, ValueError, TypeError, KeyError) as e:
        raise DatasetError(f"{path}: unreadable dataset snapshot ({type(e).__name__}: {e}); delete it and run again") from e
    ds = RetrievalDataset(id=head["id"], corpus=corpus, queries=queries, qrels=qrels,
                          ignore_identical_ids=bool(head["ignore_identical_ids"]), source_info=head["source_info"],
                          score_queries_without_positives=bool(head["score_queries_without_positives"]))
    if ds.checksum != head["checksum"]:  # computed from the content just read
        raise DatasetError(f"{path}: dataset snapshot does not match its checksum; delete it and run again")
    return ds
