"""`bench export --format trec-qrels|mteb`: what other evaluation tools read.

trec-qrels: a dataset's judgments as TREC qrels (`qid 0 docid grade`, one per line), loaded the way
`bench run` loads it (same suite declarations and checksum checks), so that the run files `bench run
--save-runs DIR` writes and these qrels go straight into trec_eval, ir-measures or ranx.

mteb: one JSON file per (dataset, profile, method) ok retrieval record, in the shape of mteb's
`TaskResult` (`TaskResult.from_disk` reads it), laid out like mteb's results folders:
DIR/<method>/<profile>/<task>.json (mteb's model/revision/task; the profile takes the revision's
place because that is what else varies for one method). Only quality goes there: mteb results have
no place for a unit, so costs stay in the csv/parquet export.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import re
from pathlib import Path
from typing import Any

from .errors import BenchError

log = logging.getLogger(__name__)

DEFAULT_SUITE = "retrieval"
# ir-measures names -> mteb's retrieval score names (mteb computes these with pytrec_eval, as ir-measures does).
MTEB_MEASURES = {"nDCG": "ndcg_at_{k}", "RR": "mrr_at_{k}", "R": "recall_at_{k}", "P": "precision_at_{k}",
                 "AP": "map_at_{k}"}
UNDETERMINED = "und-Zyyy"
_MEASURE = re.compile(r"^(?P<name>[A-Za-z]+)@(?P<k>[0-9]+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,()+@-]")


def run(args: argparse.Namespace) -> int:
    if args.format == "trec-qrels":
        return export_qrels(args.suite or DEFAULT_SUITE, args.dataset, args.out)
    if args.format == "pytest-benchmark":
        from .benchjson import export_pytest_benchmark

        return export_pytest_benchmark(args.results, args.out)
    return export_mteb(args.results, args.out)


# --- trec-qrels -------------------------------------------------------------------------------


def export_qrels(suite_name: str, ref: str | None, out: Path) -> int:
    from .datasets.resolve import load_dataset
    from .suites.spec import load_suite

    suite = load_suite(suite_name)
    ds = load_dataset(suite, ref)
    lines = [qrels_line(ds.id, qid, did, grade) for qid, docs in ds.qrels.items() for did, grade in docs.items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines), encoding="utf-8")
    log.info("wrote %d judgment(s) of %d queries of %s to %s", len(lines), len(ds.qrels), ds.id, out)
    return 0


def qrels_line(dataset_id: str, qid: str, did: str, grade: int) -> str:
    """One TREC qrels line; an id with whitespace would shift every column after it, so it is refused."""
    for what, ident in (("query", qid), ("document", did)):
        if not ident or any(c.isspace() for c in ident):
            raise BenchError(f"dataset {dataset_id}: {what} id {ident!r} is empty or has whitespace; "
                             "TREC qrels are whitespace-separated and cannot hold it")
    return f"{qid} 0 {did} {grade}\n"


# --- mteb -------------------------------------------------------------------------------------


def export_mteb(results_dir: Path, out: Path) -> int:
    from .export import read_records

    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in read_records(results_dir, "ok"):
        # Newer records name their task; older ones are retrieval records when their metrics have mteb names.
        if rec.get("task", "retrieval") != "retrieval" or mteb_scores(rec) is None:
            log.debug("record %s: no metric mteb has a name for; skipped", rec["run_id"])
            continue
        triple = (str(rec["dataset"].get("ref") or rec["dataset"].get("id")), str(rec["profile"].get("id")), rec["method"])
        # Records are appended in time order: a later ok record (a --force rerun) replaces an earlier one.
        latest[triple] = rec
    if not latest:
        raise BenchError(f"{results_dir}: no ok retrieval record with a metric mteb names (nDCG@k, RR@k, R@k, P@k, AP@k)")
    written: dict[Path, tuple[str, str, str]] = {}
    for triple, rec in latest.items():
        path = out / mteb_path(rec)
        if path in written:
            raise BenchError(f"{path}: both {written[path]} and {triple} map to this file; rename one")
        written[path] = triple
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(task_result(rec), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %d mteb result file(s) under %s", len(written), out)
    return 0


def mteb_scores(rec: dict[str, Any]) -> dict[str, float] | None:
    """mteb score name -> value for the record's metrics; None when its main metric has no mteb name."""
    scores = {}
    for name, q in rec["metrics"].items():
        mteb_name = mteb_measure(name)
        value = q.get("value") if isinstance(q, dict) else None
        if mteb_name and isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[mteb_name] = float(value)
    main = mteb_measure(str(rec.get("main_metric") or ""))
    return scores if main in scores else None


def mteb_measure(name: str) -> str | None:
    m = _MEASURE.match(name)
    if not m or m["name"] not in MTEB_MEASURES:
        return None
    return MTEB_MEASURES[m["name"]].format(k=m["k"])


def task_result(rec: dict[str, Any]) -> dict[str, Any]:
    """A TaskResult dict: scores[split] = [{main_score, hf_subset, languages, <measures>...}]."""
    scores = mteb_scores(rec) or {}
    task_name, split, subset = mteb_task(rec["dataset"])
    # Data that is not an mteb task has no declared language: "und-Zyyy" (ISO 639 undetermined, ISO 15924
    # undetermined script) rather than [], with which mteb's get_score() averages nothing and returns nan.
    revision, languages = _mteb_metadata(task_name, subset) if _is_mteb(rec["dataset"]) else (None, [UNDETERMINED])
    duration_s = rec.get("duration_s")
    return {
        # For data that is not an mteb task, our content checksum is the revision of what was measured.
        "dataset_revision": revision or str(rec["dataset"].get("checksum")),
        "task_name": task_name,
        "mteb_version": importlib.metadata.version("mteb"),  # the TaskResult format written, not who scored it
        "evaluation_time": float(duration_s) if isinstance(duration_s, (int, float)) else None,  # seconds
        "date": rec.get("finished_at"),
        "scores": {split: [{
            **scores,
            "main_score": scores[mteb_measure(rec["main_metric"]) or ""],
            "hf_subset": subset,
            "languages": languages,
        }]},
    }


def _is_mteb(dataset: dict[str, Any]) -> bool:
    return str(dataset.get("id", "")).startswith("mteb:")


def mteb_task(dataset: dict[str, Any]) -> tuple[str, str, str]:
    """(task name, split, hf_subset) from a record's dataset: `mteb:TASK#SPLIT:SUBSET`, `beir:PATH#SPLIT`, a name."""
    ref = str(dataset.get("ref") or dataset.get("id"))
    _, _, split_part = ref.partition("#")
    split, _, subset = split_part.partition(":")
    name = str(dataset.get("id")).removeprefix("mteb:") if _is_mteb(dataset) else str(dataset.get("id"))
    return name.partition("#")[0], split or "test", subset or "default"


def _mteb_metadata(task_name: str, subset: str) -> tuple[str | None, list[str]]:
    """The task's dataset revision and the subset's languages from mteb's own metadata (no download)."""
    try:
        import mteb

        meta = mteb.get_task(task_name).metadata
    except Exception as exc:  # an unknown or renamed task: the file is still valid without them
        log.warning("mteb task %s: no metadata (%s); dataset_revision is our checksum", task_name, exc)
        return None, [UNDETERMINED]
    langs = meta.hf_subsets_to_langscripts
    languages = langs.get(subset) or [lang for ls in langs.values() for lang in ls]
    return meta.revision, list(dict.fromkeys(languages)) or [UNDETERMINED]


def mteb_path(rec: dict[str, Any]) -> Path:
    task_name, split, subset = mteb_task(rec["dataset"])
    # One file per dataset ref: a second split or subset of one task must not overwrite the first.
    stem = task_name if (split, subset) == ("test", "default") else f"{task_name}#{split}:{subset}"
    return Path(_safe(rec["method"])) / _safe(str(rec["profile"].get("id"))) / f"{_safe(stem)}.json"


def _safe(part: str) -> str:
    """A path component from record text: no separators, no `..`; mteb writes '/' in model names as '__'."""
    safe = _UNSAFE.sub("_", part.replace("/", "__"))
    return safe if safe.strip(".") else "_" + safe
