"""Reading a results directory: every *.jsonl file through `records.read`, sidecars on demand."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .. import records
from ..errors import BenchError, ResultsError

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """Records in a stable order: by file name, then line order within the file."""

    root: Path
    files: list[str]
    records: list[dict]
    order: dict[int, int] = field(default_factory=dict)  # id(record) -> position, for tie-breaks


def load_results(results_dir: Path) -> Loaded:
    if not results_dir.is_dir():
        raise BenchError(f"results directory {results_dir} does not exist; run `bench run` first or pass --results DIR")
    paths = sorted(results_dir.glob("*.jsonl"))
    if not paths:
        raise BenchError(f"no *.jsonl result files in {results_dir}; run `bench run` first or pass --results DIR")
    out = Loaded(root=results_dir, files=[p.name for p in paths], records=[])
    for path in paths:
        recs = records.read(path)  # a corrupt file raises ResultsError naming file and line
        log.debug("%s: %d records", path, len(recs))
        out.records.extend(recs)
    out.order = {id(r): i for i, r in enumerate(out.records)}
    return out


def sidecar_values(results_dir: Path, rec: dict, metric: str) -> tuple[list[float] | None, str]:
    """Per-query values of `metric`, ordered by query id, or None and the reason.

    A sidecar whose digest does not match is corrupt and raises; a missing one (a pull
    request that brought records without their per-query files) only costs the interval.
    """
    ref = rec.get("per_query")
    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str) or not isinstance(ref.get("sha256"), str):
        return None, "record has no per-query file"
    root = results_dir.resolve()
    path = (results_dir / ref["path"]).resolve()
    if not path.is_relative_to(root):
        raise ResultsError(f"{results_dir}: record {str(rec.get('key'))[:16]} points its per-query file outside the results directory; fix the record")
    if not path.is_file():
        return None, f"per-query file {ref['path']} is missing"
    per_query = records.read_sidecar(results_dir, ref)
    if not isinstance(per_query, dict) or not per_query:
        return None, "per-query file holds no queries"
    values = []
    for qid in sorted(per_query):
        row = per_query[qid]
        v = row.get(metric) if isinstance(row, dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"per-query file lacks {metric} for query {qid!r}"
        values.append(float(v))
    return values, ""
