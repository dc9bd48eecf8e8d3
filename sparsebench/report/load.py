"""Reading a results directory: every *.jsonl file through `records.read_numbered` (the parser
`bench validate` uses, so a file validate refuses is refused here too), sidecars on demand.

Each record remembers the FILE:LINE it came from, so a refused per-query file is reported at
the record that references it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import records, sidecars
from ..errors import BenchError

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """Records in a stable order: by file name, then line order within the file."""

    root: Path
    files: list[str]
    records: list[dict]
    order: dict[int, int] = field(default_factory=dict)  # id(record) -> position, for tie-breaks
    where: dict[int, str] = field(default_factory=dict)  # id(record) -> "FILE:LINE", for errors


def load_results(results_dir: Path) -> Loaded:
    if not results_dir.is_dir():
        raise BenchError(f"results directory {results_dir} does not exist; run `bench run` first or pass --results DIR")
    paths = sorted(results_dir.glob("*.jsonl"))
    if not paths:
        raise BenchError(f"no *.jsonl result files in {results_dir}; run `bench run` first or pass --results DIR")
    out = Loaded(root=results_dir, files=[p.name for p in paths], records=[])
    for path in paths:
        numbered = records.read_numbered(path)  # a corrupt or refused file raises ResultsError naming file and line
        log.debug("%s: %d records", path, len(numbered))
        for line, rec in numbered:
            out.records.append(rec)
            out.where[id(rec)] = f"{path}:{line}"
    out.order = {id(r): i for i, r in enumerate(out.records)}
    return out


def sidecar_values(results_dir: Path, rec: dict, metric: str, where: str = "") -> tuple[dict[str, float] | None, str]:
    """Per-query values of `metric` by query id, or None and the reason.

    A sidecar whose digest does not match, that leaves the results directory, is a symlink or
    is too big raises ResultsError prefixed with `where` (the record's FILE:LINE); a missing one
    (a pull request that brought records without their per-query files) only costs the interval
    and the paired tests.
    """
    ref = rec.get("per_query")
    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str) or not isinstance(ref.get("sha256"), str):
        return None, "record has no per-query file"
    where = where or f"{results_dir}: record {str(rec.get('key'))[:16]}"
    path = sidecars.sidecar_path(results_dir, ref["path"], where)
    if not os.path.lexists(path):
        return None, f"per-query file {ref['path']} is missing"
    per_query = sidecars.read_sidecar(results_dir, ref, where)
    if not isinstance(per_query, dict) or not per_query:
        return None, "per-query file holds no queries"
    values = {}
    for qid in sorted(per_query):
        row = per_query[qid]
        v = row.get(metric) if isinstance(row, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"per-query file lacks {metric} for query {qid!r}"
        values[str(qid)] = float(v)
    return values, ""
