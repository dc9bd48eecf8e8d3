"""Resolve a suite into specs, skip what is done, run the rest, append records.

One spec is one unit of work and plain data, so the same specs could be handed to another
executor; this local runner runs each in a fresh worker process, which isolates crashes, makes
peak RSS the method's own, and lets a timeout kill a stuck method without losing the suite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .cache import ArtifactCache
from .datasets.resolve import load_dataset
from .datasets.types import RetrievalDataset
from .errors import BenchError
from .hardware import ProfileMatch, Threads, apply_threads, threads_in_use
from .methodid import Scalar
from .provenance import now, provenance
from .records import ResultStore, append, write_sidecar
from .suites.spec import Suite, load_suite
from .suites.tasks import get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    suite_file: str
    suite: str  # name@version
    task: str
    method: str  # canonical id
    dataset: str  # dataset reference as given (declared name or source string)
    dataset_id: str
    dataset_checksum: str
    metrics: tuple[str, ...]
    main_metric: str
    settings: dict[str, Any]
    profile_id: str

    @property
    def key(self) -> str:
        """The result key: everything that determines what is measured, and nothing else."""
        payload = {
            "suite": self.suite,
            "task": self.task,
            "method": self.method,
            "dataset": self.dataset_id,
            "checksum": self.dataset_checksum,
            "metrics": list(self.metrics),
            "settings": self.settings,
            "profile": self.profile_id,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class RunOptions:
    results_dir: Path
    cache_dir: Path
    force: bool = False
    isolate: bool = True
    progress: bool = True
    save_runs: Path | None = None
    device: str = "cpu"


@dataclass
class RunSummary:
    specs: list[RunSpec] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    busy: int = 0
    failed: int = 0


def split_overrides(overrides: list[tuple[str, Scalar]]) -> tuple[dict[str, Any], dict[str, dict[str, Scalar]]]:
    """`key=v` sets a task setting; `method.key=v` sets a parameter of every `method` run."""
    settings: dict[str, Any] = {}
    per_method: dict[str, dict[str, Scalar]] = {}
    for key, value in overrides:
        if "." in key:
            name, param = key.split(".", 1)
            registry.lookup(name)
            per_method.setdefault(name, {})[param] = value
        else:
            settings[key] = value
    return settings, per_method


def plan(
    suite: Suite,
    dataset: RetrievalDataset,
    dataset_ref: str,
    profile: ProfileMatch,
    methods: list[str] | None,
    overrides: list[tuple[str, Scalar]],
) -> list[RunSpec]:
    task = get_task(suite.task, suite.file)
    setting_overrides, per_method = split_overrides(overrides)
    settings = task.settings_from({**suite.settings, **setting_overrides}, f"{suite.file} (with --set)")
    chosen: list[tuple[str, dict[str, Scalar]]]
    if methods:
        chosen = [(m, {}) for m in methods]
    else:
        chosen = [point for grid in suite.methods for point in grid.method_ids()]
    for name in per_method:
        if not any(registry.build(base).info.name == name for base, _ in chosen):
            raise BenchError(f"--set {name}.*: method {name!r} is not part of this run")
    ids: list[str] = []
    for base, sweep in chosen:
        name = registry.build(base).info.name
        mid = str(registry.build(base, {**sweep, **per_method.get(name, {})}))
        if mid not in ids:
            ids.append(mid)
    return [
        RunSpec(
            suite_file=suite.file,
            suite=suite.ref,
            task=suite.task,
            method=mid,
            dataset=dataset_ref,
            dataset_id=dataset.id,
            dataset_checksum=dataset.checksum,
            metrics=suite.metrics,
            main_metric=suite.main_metric,
            settings=dataclasses.asdict(settings),
            profile_id=profile.profile.id,
        )
        for mid in ids
    ]


def run_suite(
    suite_name: str,
    dataset_ref: str | None,
    profile: ProfileMatch,
    opts: RunOptions,
    methods: list[str] | None = None,
    overrides: list[tuple[str, Scalar]] | None = None,
) -> tuple[RunSummary, Suite]:
    suite = load_suite(suite_name)
    for m in methods or []:  # a typo in a method id is reported before any data is loaded
        registry.build(m)
    split_overrides(overrides or [])
    dataset = load_dataset(suite, dataset_ref)
    log.info("dataset %s: %d documents, %d queries", dataset.id, len(dataset.corpus), len(dataset.judged_queries()))
    specs = plan(suite, dataset, dataset_ref or suite.default_dataset, profile, methods, overrides or [])
    store = ResultStore(opts.results_dir)
    summary = RunSummary(specs=specs)
    done = store.done_keys(suite.name)
    for i, spec in enumerate(specs, 1):
        if spec.key in done and not opts.force:
            log.info("[%d/%d] %s: done already (key %s), skipping; --force re-runs", i, len(specs), spec.method, spec.key[:12])
            summary.skipped += 1
            continue
        with store.claim(spec.key) as mine:
            if not mine:
                log.warning("[%d/%d] %s: another run is measuring this key right now; skipping", i, len(specs), spec.method)
                summary.busy += 1
                continue
            # Re-read under the claim: a concurrent run may have finished this key meanwhile.
            if spec.key in store.done_keys(suite.name) and not opts.force:
                summary.skipped += 1
                continue
            log.info("[%d/%d] %s on %s", i, len(specs), spec.method, dataset.id)
            rec = execute(spec, profile, opts, dataset)
            append(store.file_for(suite.name), rec)
            summary.ran += 1
            if rec["status"] != "ok":
                summary.failed += 1
                log.error("%s: %s: %s", spec.method, rec["status"], rec["error"])
    return summary, suite


def execute(spec: RunSpec, profile: ProfileMatch, opts: RunOptions, dataset: RetrievalDataset) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:12]
    started = now()
    t0 = time.perf_counter()
    payload = {
        "spec": dataclasses.asdict(spec),
        "threads": dataclasses.asdict(profile.profile.threads),
        "fingerprint": profile.machine.fingerprint,
        "cache_dir": str(opts.cache_dir),
        "progress": opts.progress,
        "device": opts.device,
        "run_file": str(opts.save_runs / f"{spec.key[:16]}.trec") if opts.save_runs else None,
    }
    if opts.isolate:
        outcome = _run_isolated(payload, spec.settings["timeout_s"])
    else:
        outcome = _work(payload, dataset)
    method = registry.build(spec.method)
    info = type(method).info
    rec: dict[str, Any] = {
        "schema": 1,
        "key": spec.key,
        "run_id": run_id,
        "suite": spec.suite,
        "task": spec.task,
        "method": spec.method,
        "method_name": info.name,
        "family": info.family,
        "method_version": info.version,
        "params": {f.name: getattr(method, f.name) for f in registry.param_fields(type(method))},
        "dataset": {"id": spec.dataset_id, "ref": spec.dataset, "checksum": spec.dataset_checksum, "counts": dataset.counts},
        "settings": spec.settings,
        "metrics": {},
        "main_metric": spec.main_metric,
        "costs": {},
        "profile": profile.stamp(),
        "provenance": provenance(),
        "started_at": started,
        "finished_at": now(),
        "duration_s": round(time.perf_counter() - t0, 3),
        "status": outcome["status"],
        "error": outcome.get("error"),
    }
    if outcome.get("traceback"):
        rec["traceback"] = outcome["traceback"]
    if outcome["status"] == "ok":
        result = outcome["result"]
        rec["metrics"] = result["metrics"]
        rec["costs"] = result["costs"]
        rec["extra"] = result["extra"]
        rec["per_query"] = write_sidecar(opts.results_dir, spec.suite.split("@")[0], spec.key, run_id, result["per_query"])
    return rec


def _run_isolated(payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker_main, args=(payload, send), daemon=True)
    proc.start()
    send.close()
    outcome: dict[str, Any] | None = None
    if recv.poll(timeout_s):
        try:
            outcome = recv.recv()
        except EOFError:
            outcome = None
    else:
        proc.kill()
        proc.join()
        return {"status": "timeout", "error": f"no result within timeout_s={timeout_s:g}; worker killed"}
    proc.join(30)
    if outcome is None:
        return {"status": "failed", "error": f"worker died without a result (exit code {proc.exitcode}; out of memory?)"}
    return outcome


def _worker_main(payload: dict[str, Any], conn: Any) -> None:
    _die_with_parent()
    from .cli import configure_logging

    configure_logging(verbose=False)
    try:
        outcome = _work(payload, None)
    except BaseException as e:  # report, don't lose, any failure of the worker itself
        outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    conn.send(outcome)
    conn.close()


def _die_with_parent() -> None:
    """A killed runner must not leave orphaned workers burning the CPU (Linux only)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _work(payload: dict[str, Any], dataset: RetrievalDataset | None) -> dict[str, Any]:
    spec = RunSpec(**{**payload["spec"], "metrics": tuple(payload["spec"]["metrics"])})
    try:
        apply_threads(Threads(**payload["threads"]))
        suite = load_suite(spec.suite_file)
        if dataset is None:
            dataset = load_dataset(suite, spec.dataset)
        if dataset.checksum != spec.dataset_checksum:
            raise BenchError(f"dataset {spec.dataset} changed while the suite was running")
        task = get_task(spec.task)
        settings = task.settings_from(spec.settings, "spec")
        method = registry.build(spec.method)
        from .methods.base import RunContext

        ctx = RunContext(
            cache=ArtifactCache(Path(payload["cache_dir"])),
            threads=payload["threads"]["torch"],
            device=payload["device"],
            batch_size=settings.batch_size,
            progress=payload["progress"],
            fingerprint=payload["fingerprint"],
        )
        run_file = Path(payload["run_file"]) if payload["run_file"] else None
        if not payload["progress"]:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
            os.environ["TQDM_DISABLE"] = "1"
        result = task.run(method, dataset, spec.metrics, settings, ctx, run_file)  # type: ignore[attr-defined]
        result.extra["threads"] = threads_in_use()
        return {"status": "ok", "result": dataclasses.asdict(result)}
    except Exception as e:
        log.debug("worker failure", exc_info=True)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
