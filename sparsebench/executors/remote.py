"""What a worker of any engine runs for one job: plain data in, a record and per-query values out.

The worker detects its own machine and matches it against the spec's profile itself (a cluster
may mix machines), so the record carries the worker's fingerprint, and a worker that does not
match refuses the spec with a `failed` record that says why. It measures through
`runner.measure`, the local executor's code path, and writes nothing under results/: the
coordinator is the one writer.

The coordinator's cache directory is used when this worker sees it (shared storage: the
directory holds the coordinator's `.sparsebench-id`); otherwise the worker computes into a cache
of its own and the record says so. The dataset snapshot comes with the job as bytes, so a
worker without shared storage still measures the exact data the coordinator loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from ..cache import default_cache_dir

log = logging.getLogger(__name__)

ID_FILE = ".sparsebench-id"  # in a cache dir: tells a worker it sees the coordinator's very directory


def cache_identity(cache_dir: Path) -> str:
    """The cache directory's id, created on first use; a worker that reads the same id sees it."""
    path = cache_dir / ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{ID_FILE}.{os.getpid()}.tmp")
    tmp.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)  # atomic and never replaces: two coordinators racing agree on one id
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()


def run_job(job: dict[str, Any], snapshot: bytes, engine: str, worker_id: str) -> dict[str, Any]:
    """Measure (or refuse) one spec here; returns {"record": ..., "per_query": ... or None}."""
    from ..hardware import detect, load_profiles, mismatches, ProfileMatch
    from ..provenance import now
    from ..runner import RunOptions, RunSpec, measure, record_for
    from ..suites.tasks import get_task

    spec = RunSpec(**{**job["spec"], "metrics": tuple(job["spec"]["metrics"])})
    cache, cache_info = _cache_dir(job)
    snap = _snapshot(cache, job["snapshot"], snapshot)
    dataset = get_task(spec.task).read_snapshot(snap)
    machine = detect()
    profile = load_profiles().get(spec.profile_id)
    executor = {"name": engine, "worker": worker_id, "host": socket.gethostname(), "pid": os.getpid(), "cache": cache_info}
    if profile is None:
        problems = [f"profile {spec.profile_id!r} is not declared on this worker (its sparsebench or "
                    "SPARSEBENCH_PROFILE_DIR differs from the coordinator's)"]
        stamp = {"id": spec.profile_id, "matched": False, "mismatches": problems, "fingerprint": machine.fingerprint,
                 "machine": dataclasses.asdict(machine)}
    else:
        problems = mismatches(profile, machine)
        stamp = ProfileMatch(profile, machine, tuple(problems)).stamp()
    if profile is None or problems and not job["allow_mismatch"]:
        error = (f"refused by worker {worker_id} ({executor['host']}): it does not match profile {spec.profile_id!r}: "
                 f"{'; '.join(problems)}; run this spec on workers of that profile, or pass --profile-mismatch=allow "
                 "to measure it anyway with the record marked as mismatched")
        log.warning("%s", error)
        rec = record_for(spec, stamp, dataset, job["suite_digest"], {"status": "failed", "error": error},
                         run_id=uuid.uuid4().hex[:12], started=now(), duration_s=0.0,
                         contention={"detected": False, "max_other_runs": 0, "samples": 0})
        return {"record": {**rec, "executor": executor}, "per_query": None}
    match = ProfileMatch(profile, machine, tuple(problems))
    # results_dir is never touched here (measure writes nothing; the coordinator writes the sidecar).
    opts = RunOptions(results_dir=Path(os.devnull), cache_dir=cache, progress=False,
                      device="cuda" if profile.device == "cuda" else "cpu", dataset_snapshot=snap, plain_subprocess=True)
    rec, per_query = measure(spec, match, opts, dataset, job["suite_digest"])
    return {"record": {**rec, "executor": executor}, "per_query": per_query}


def _cache_dir(job: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The coordinator's cache when this worker sees it, else this worker's own (and why)."""
    shared = Path(job["cache_dir"])
    try:
        seen = (shared / ID_FILE).read_text(encoding="utf-8").strip() == job["cache_id"] and os.access(shared, os.W_OK)
    except OSError:
        seen = False
    if seen:
        return shared, {"dir": str(shared), "shared": True}
    own = default_cache_dir()
    note = (f"this worker cannot see the coordinator's cache {shared} (not shared storage, or not writable here); "
            f"it computed into its own cache {own}")
    log.warning("%s", note)
    return own, {"dir": str(own), "shared": False, "note": note}


def _snapshot(cache: Path, meta: dict[str, str], data: bytes) -> Path:
    """The dataset snapshot under `cache`: the one there if it is these bytes, else written from them."""
    path = cache / meta["relpath"]
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]:
            return path
    except OSError:
        pass
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError("the dataset snapshot shipped with the job does not match its digest")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: two workers writing the same snapshot leave one whole file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
