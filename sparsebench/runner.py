"""Resolve a suite into specs, skip what is done, run the rest, append records.

One spec is one unit of work and plain data, so the same specs could be handed to another
executor; this local runner runs each in a fresh worker process, which isolates crashes, makes
peak RSS the method's own, and lets a timeout kill a stuck method without losing the suite.
`--executor dask` hands the same specs to a cluster's workers (sparsebench.executors): they
measure through `measure` below and this process stays the one that claims keys and appends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry
from .cache import ArtifactCache
from .contention import SAMPLE_INTERVAL_S, MeasuringClaim
from .envs import describe_worker, env_of, here_has, worker_python
from .errors import BenchError
from .executors import DEFAULT_WORKERS, ExecutorConfig, check_config
from .hardware import ProfileMatch, Threads, apply_threads, threads_in_use
from .methodid import Scalar
from .provenance import now, provenance
from .records import SCHEMA_VERSION, ResultStore, append, read
from .sidecars import clean_stale_temp, write_sidecar
from .suites.spec import Suite, load_suite
from .suites.tasks import TaskData, get_task

log = logging.getLogger(__name__)

ORPHANED_EXIT = 75  # a worker whose runner died before it started measuring: exits, measures nothing


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
    dataset_name: str | None = None  # names a beir: folder in records (default: the folder's name)
    dataset_snapshot: Path | None = None  # set by run_suite: the loaded dataset, for the workers
    # Start the measuring worker as `python -m sparsebench.worker` rather than through
    # multiprocessing: a cluster's worker processes are daemons, which multiprocessing refuses
    # to let have children. Both run the same `_work`.
    plain_subprocess: bool = False
    allow_profile_mismatch: bool = False  # --profile-mismatch=allow: a cluster's workers match for themselves


@dataclass
class RunSummary:
    specs: list[RunSpec] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    waited: int = 0  # keys another run was measuring when first reached
    failed: int = 0
    lost: int = 0  # specs whose cluster worker died: left unrecorded for the next run


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


@dataclass(frozen=True)
class Plan:
    """What will be measured, resolved and checked before any data is loaded."""

    settings: dict[str, Any]
    method_ids: list[str]


def plan_methods(suite: Suite, methods: list[str] | None, overrides: list[tuple[str, Scalar]], grid: str | None = None) -> Plan:
    """Task settings and canonical method ids; every typo or out-of-range value is refused here.

    `methods` replaces the suite's grid; otherwise `grid` names a larger grid (`Suite.grid`).

    This needs no dataset, so a bad `--set` or method id costs nothing and leaves no record.
    """
    task = get_task(suite.task, suite.file)
    setting_overrides, per_method = split_overrides(overrides)
    settings = task.settings_from({**suite.settings, **setting_overrides}, f"{suite.file} (with --set)")
    chosen: list[tuple[str, dict[str, Scalar]]]
    if methods is not None and grid is not None:
        raise BenchError(f"--grid {grid} and --method both choose the methods; give one of them")
    if methods is not None:
        if not methods:
            raise BenchError("--method: no method id given (an empty or comma-only list); name at least one, e.g. --method bm25")
        chosen = [(m, {}) for m in methods]
    else:
        chosen = [point for entry in suite.grid(grid) for point in entry.method_ids()]
    for base, _ in chosen:
        task.check_method(registry.build(base), f"{suite.ref}" + (" --method" if methods is not None else f" ({suite.file})"))
    in_run = {n for base, _ in chosen for n in registry.method_names(registry.build(base))}
    for name in per_method:
        if name not in in_run:
            raise BenchError(f"--set {name}.*: method {name!r} is not part of this run")
    ids: list[str] = []
    for base, sweep in chosen:
        # `--set name.key` reaches every `name` in the run, nested ones included.
        mid = str(registry.build(base, sweep, per_method))
        if mid not in ids:
            ids.append(mid)
    return Plan(settings=dataclasses.asdict(settings), method_ids=ids)


def plan(suite: Suite, dataset: TaskData, dataset_ref: str, profile: ProfileMatch, chosen: Plan) -> list[RunSpec]:
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
            settings=chosen.settings,
            profile_id=profile.profile.id,
        )
        for mid in chosen.method_ids
    ]


def run_suite(
    suite_name: str,
    dataset_ref: str | None,
    profile: ProfileMatch,
    opts: RunOptions,
    methods: list[str] | None = None,
    overrides: list[tuple[str, Scalar]] | None = None,
    executor: ExecutorConfig | None = None,
    grid: str | None = None,
) -> tuple[RunSummary, Suite]:
    if opts.results_dir.exists() and not opts.results_dir.is_dir():
        raise BenchError(f"--results {opts.results_dir}: is a file, not a directory; give the results directory (default ./results)")
    executor = executor or ExecutorConfig()
    check_config(executor)  # a missing engine extra is refused before anything is loaded
    suite = load_suite(suite_name)
    chosen = plan_methods(suite, methods, overrides or [], grid)
    if executor.distributed:
        if not opts.isolate:
            raise BenchError(f"--in-process measures in this process; it cannot be combined with --executor {executor.name}")
        if opts.save_runs:
            raise BenchError(f"--save-runs writes run files on the machine that measures; it is not supported with "
                             f"--executor {executor.name} (use --executor local)")
    task = get_task(suite.task, suite.file)
    dataset = task.load_data(suite, dataset_ref, opts.dataset_name)
    log.info("%s", task.describe(dataset))
    specs = plan(suite, dataset, dataset_ref or suite.default_dataset, profile, chosen)
    _check_worker_envs(specs, opts)
    task.preflight(task.settings_from(chosen.settings, suite.file), [registry.build(s.method) for s in specs], opts.cache_dir,
                   opts.device)
    if opts.isolate:  # workers read this one file instead of running the source's loader again
        opts = dataclasses.replace(opts, dataset_snapshot=task.write_snapshot(opts.cache_dir, dataset))
    store = ResultStore(opts.results_dir)
    done = _ok_counts(store, suite)  # reads (and so checks) the results file before anything runs
    clean_stale_temp(opts.results_dir)
    summary = RunSummary(specs=specs)
    if executor.distributed:
        _run_distributed(executor, store, suite, specs, profile, opts, summary, done)
        return summary, suite
    busy: list[tuple[int, RunSpec]] = []
    for i, spec in enumerate(specs, 1):
        if spec.key in done and not opts.force:
            log.info("[%d/%d] %s: done already (key %s), skipping; --force re-runs", i, len(specs), spec.method, spec.key[:12])
            if opts.save_runs:
                log.warning("[%d/%d] %s: no run file written: its ranked lists were not kept when it was measured (records keep "
                            "per-query metrics only); --force measures it again and writes %s", i, len(specs), spec.method,
                            run_file_path(opts.save_runs, spec))
            summary.skipped += 1
            continue
        if not _measure_claimed(store, spec, suite, profile, opts, dataset, summary, done, f"[{i}/{len(specs)}]", wait=False):
            log.info("[%d/%d] %s: another run is measuring this key; coming back to it at the end", i, len(specs), spec.method)
            busy.append((i, spec))
    # Keys another run held: wait for its claim, then take its record or, if it died or
    # failed, measure the key here. Skipping them would report success for unrecorded keys.
    for i, spec in busy:
        log.info("[%d/%d] %s: waiting for the other run measuring key %s", i, len(specs), spec.method, spec.key[:12])
        _measure_claimed(store, spec, suite, profile, opts, dataset, summary, done, f"[{i}/{len(specs)}]", wait=True)
        summary.waited += 1
    return summary, suite


def _run_distributed(executor: ExecutorConfig, store: ResultStore, suite: Suite, specs: list[RunSpec], profile: ProfileMatch,
                     opts: RunOptions, summary: RunSummary, done: Counter[str]) -> None:
    """The same skip rule as the local loop, then the engine's workers measure what is left."""
    from .executors import open_engine
    from .executors.coordinator import run_on_engine

    todo: list[tuple[int, RunSpec]] = []
    for i, spec in enumerate(specs, 1):
        if spec.key in done and not opts.force:
            log.info("[%d/%d] %s: done already (key %s), skipping; --force re-runs", i, len(specs), spec.method, spec.key[:12])
            summary.skipped += 1
        else:
            todo.append((i, spec))
    if not todo:
        return
    if executor.address is None:
        _warn_if_oversubscribed(executor.workers or DEFAULT_WORKERS, profile)
    engine = open_engine(executor)  # an unreachable cluster is refused here, before any claim or record
    try:
        run_on_engine(engine, store, suite, todo, len(specs), profile, opts, summary, done)
    finally:
        engine.close()


def _warn_if_oversubscribed(workers: int, profile: ProfileMatch) -> None:
    """A local cluster shares this machine: past its cores, specs slow each other down.

    The profile fixes each measuring worker's threads (they are part of what is measured), so
    the cluster cannot shrink them; on the 2-core profile two workers ran the default grid in
    371 s against 164 s for the local executor, while a BM25-only grid ran faster."""
    threads = profile.profile.threads.torch
    cores = profile.machine.logical_cores
    if workers * threads > cores:
        log.warning("%d local workers x %d threads each (profile %s) exceed this machine's %d cores: specs measured side "
                    "by side are marked as contended, and threaded methods (torch encoders) may take longer than with "
                    "--executor local", workers, threads, profile.profile.id, cores)


def _check_worker_envs(specs: list[RunSpec], opts: RunOptions) -> None:
    """A method whose worker environment is missing is refused before anything is measured."""
    for spec in specs:
        method = registry.build(spec.method)
        if opts.isolate:
            worker_python(method)
        else:
            env = env_of(method)
            if env is not None and not here_has(env):
                raise BenchError(f"{spec.method} needs the worker environment {env!r}; --in-process runs in this "
                                 "interpreter, which lacks it: drop --in-process")


def _measure_claimed(
    store: ResultStore, spec: RunSpec, suite: Suite, profile: ProfileMatch, opts: RunOptions,
    dataset: TaskData, summary: RunSummary, done_at_start: Counter[str], tag: str, wait: bool,
) -> bool:
    """Measure `spec` under its per-key claim; False when the claim is busy and `wait` is off."""
    with store.claim(spec.key, wait=wait) as mine:
        if not mine:
            return False
        # Re-read under the claim: a concurrent run may have recorded this key meanwhile. With
        # --force that counts only for a key we waited for (its holder measured it afresh).
        recorded_meanwhile = _ok_counts(store, suite)[spec.key] > done_at_start[spec.key]
        if recorded_meanwhile and (not opts.force or wait):
            log.info("%s %s: recorded by the other run; skipping", tag, spec.method)
            summary.skipped += 1
            return True
        log.info("%s %s on %s", tag, spec.method, dataset.id)
        rec = execute(spec, profile, opts, dataset, suite.digest)
        append(store.file_for(suite.name), rec)
        summary.ran += 1
        if rec["status"] != "ok":
            summary.failed += 1
            log.error("%s: %s: %s", spec.method, rec["status"], rec["error"])
        return True


def run_file_path(directory: Path, spec: RunSpec) -> Path:
    """`<method id>.<key8>.trec`: named by the method (characters a file name cannot hold become
    `_`), and the key prefix keeps one method on several datasets or settings apart."""
    safe = re.sub(r"[^A-Za-z0-9._=,()+-]", "_", spec.method)[:150]
    return directory / f"{safe}.{spec.key[:8]}.trec"


def _ok_counts(store: ResultStore, suite: Suite) -> Counter[str]:
    return Counter(r["key"] for r in read(store.file_for(suite.name)) if r["status"] == "ok")


def execute(spec: RunSpec, profile: ProfileMatch, opts: RunOptions, dataset: TaskData, suite_digest: str) -> dict[str, Any]:
    rec, per_query = measure(spec, profile, opts, dataset, suite_digest)
    return attach_per_query(rec, per_query, opts.results_dir)


def measure(spec: RunSpec, profile: ProfileMatch, opts: RunOptions, dataset: TaskData,
            suite_digest: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Measure one spec on this machine: the record and its per-query values, nothing written.

    Every executor measures through here (the local one in this process, a cluster's workers on
    theirs), so a record means the same whoever ran it; only the one writer writes it."""
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
        "run_file": str(run_file_path(opts.save_runs, spec)) if opts.save_runs else None,
        "parent_pid": os.getpid(),
        "dataset_snapshot": str(opts.dataset_snapshot) if opts.dataset_snapshot else None,
    }
    with MeasuringClaim() as claim:
        if opts.isolate:
            python = worker_python(registry.build(spec.method))
            if python is None and opts.plain_subprocess:
                python = sys.executable
            outcome = _run_isolated(payload, spec.settings["timeout_s"], claim, python)
        else:
            outcome = _work_sampled(payload, dataset, claim)
    contention = claim.result()
    if contention.detected:
        log.warning("%s: %d other sparsebench run(s) were measuring on this machine at the same time; "
                    "its costs are marked as contended", spec.method, contention.max_other_runs)
    rec = record_for(spec, profile.stamp(), dataset, suite_digest, outcome, run_id=run_id, started=started,
                     duration_s=time.perf_counter() - t0, contention=contention.as_record())
    if rec["status"] == "ok" and payload["run_file"]:
        rec["run_file"] = payload["run_file"]
    per_query = outcome["result"]["per_query"] if rec["status"] == "ok" else None
    return rec, per_query


def record_for(spec: RunSpec, profile_stamp: dict[str, Any], dataset: TaskData, suite_digest: str, outcome: dict[str, Any],
               run_id: str, started: str, duration_s: float, contention: dict[str, Any]) -> dict[str, Any]:
    """The record of one outcome (per-query values not attached yet); a refusal is an outcome too."""
    method = registry.build(spec.method)
    info = type(method).info
    rec: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "key": spec.key,
        "run_id": run_id,
        "suite": spec.suite,
        "suite_digest": suite_digest,
        "task": spec.task,
        "method": spec.method,
        "method_name": info.name,
        "family": info.family,
        "method_version": info.version,
        "params": registry.params_of(method),
        "dataset": {"id": spec.dataset_id, "ref": spec.dataset, "checksum": spec.dataset_checksum, "counts": dataset.counts,
                    **({"source": dict(dataset.source_info)} if dataset.source_info else {})},
        "settings": spec.settings,
        "metrics": {},
        "main_metric": spec.main_metric,
        "costs": {},
        "profile": profile_stamp,
        "provenance": provenance(),
        "started_at": started,
        "finished_at": now(),
        "duration_s": round(duration_s, 3),
        "contention": contention,
        "status": outcome["status"],
        "error": _text(outcome.get("error")),
    }
    subject = get_task(spec.task).subject(get_task(spec.task).settings_from(spec.settings, "spec"))
    if subject:  # the task's model: part of the key (a setting) and of the report's grouping
        rec["model"] = subject
    if outcome.get("traceback"):
        rec["traceback"] = _text(outcome["traceback"])
    if outcome["status"] == "ok":
        result = outcome["result"]
        problem = _non_finite(result)
        if problem:
            # Strict JSON cannot hold NaN/inf; a record that says why beats a crash that loses the suite.
            rec.update(status="failed", error=f"the method produced a non-finite value ({problem}); nothing of it was kept")
            return rec
        rec["metrics"] = result["metrics"]
        rec["costs"] = result["costs"]
        rec["extra"] = result["extra"]
    return rec


def attach_per_query(rec: dict[str, Any], per_query: dict[str, Any] | None, results_dir: Path) -> dict[str, Any]:
    """Write an ok record's per-query sidecar (the writer's job: it owns results/) and reference it."""
    if rec["status"] == "ok" and per_query is not None:
        rec["per_query"] = write_sidecar(results_dir, rec["suite"].split("@")[0], rec["key"], rec["run_id"], per_query)
    return rec


def _text(message: str | None) -> str | None:
    """An exception's text as a record can hold it: undecodable bytes (surrogate escapes from
    file names, say) would make the line unencodable and the append crash the suite."""
    return None if message is None else message.encode("utf-8", "backslashreplace").decode("utf-8")


def _non_finite(value: Any, path: str = "") -> str:
    """The path of the first NaN or infinity in a nested result, or ''."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'value'} = {value!r}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return ""


def _run_isolated(payload: dict[str, Any], timeout_s: float, claim: MeasuringClaim, python: str | None = None) -> dict[str, Any]:
    if python is not None:
        return _run_in_env(payload, timeout_s, claim, python)
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker_main, args=(payload, send), daemon=True)
    proc.start()
    send.close()
    outcome: dict[str, Any] | None = None
    # The runner only waits, so it samples the other measuring runs while it does.
    deadline = time.monotonic() + timeout_s
    while not recv.poll(max(0.0, min(SAMPLE_INTERVAL_S, deadline - time.monotonic()))):
        claim.sample()
        if time.monotonic() >= deadline:
            proc.kill()
            proc.join()
            return {"status": "timeout", "error": f"no result within timeout_s={timeout_s:g}; worker killed"}
    try:
        outcome = recv.recv()
    except EOFError:
        outcome = None
    proc.join(30)
    if outcome is None:
        return {"status": "failed", "error": f"worker died without a result (exit code {proc.exitcode}; out of memory?)"}
    return outcome


def _run_in_env(payload: dict[str, Any], timeout_s: float, claim: MeasuringClaim, python: str) -> dict[str, Any]:
    """A worker in another environment's interpreter: `python -m sparsebench.worker IN OUT`.

    multiprocessing's spawn hands the child this interpreter's sys.path, which would import this
    environment's packages there; a plain subprocess with JSON files in and out does not."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sparsebench-worker-") as tmp:
        inp, out = Path(tmp) / "payload.json", Path(tmp) / "outcome.json"
        inp.write_text(json.dumps(payload), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        proc = subprocess.Popen([python, "-m", "sparsebench.worker", str(inp), str(out)], stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                proc.wait(timeout=max(0.0, min(SAMPLE_INTERVAL_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                claim.sample()
                if time.monotonic() >= deadline:
                    proc.kill()
                    proc.wait()
                    return {"status": "timeout", "error": f"no result within timeout_s={timeout_s:g}; worker killed"}
        if not out.is_file():
            return {"status": "failed", "error": f"worker ({python}) died without a result (exit code {proc.returncode}; out of memory?)"}
        return json.loads(out.read_text(encoding="utf-8"))


def _work_sampled(payload: dict[str, Any], dataset: TaskData, claim: MeasuringClaim) -> dict[str, Any]:
    """In-process (debug) runs: a thread samples, since this process is also the one measured."""
    import threading

    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(SAMPLE_INTERVAL_S):
            claim.sample()

    thread = threading.Thread(target=sampler, name="sparsebench-contention", daemon=True)
    thread.start()
    try:
        return _work(payload, dataset)
    finally:
        stop.set()
        thread.join()


def _worker_main(payload: dict[str, Any], conn: Any) -> None:
    _die_with_parent(payload["parent_pid"])
    from .logs import configure_logging

    configure_logging(verbose=False)
    try:
        outcome = _work(payload, None)
    except BaseException as e:  # report, don't lose, any failure of the worker itself
        outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    conn.send(outcome)
    conn.close()


def _die_with_parent(parent_pid: int) -> None:
    """A killed runner must not leave orphaned workers burning the CPU (Linux only).

    PR_SET_PDEATHSIG only covers a parent that dies after it is set; a parent killed during
    this worker's start-up (it takes a second to get here) has already reparented us, so check.
    """
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(ORPHANED_EXIT)


def _work(payload: dict[str, Any], dataset: TaskData | None) -> dict[str, Any]:
    spec = RunSpec(**{**payload["spec"], "metrics": tuple(payload["spec"]["metrics"])})
    try:
        apply_threads(Threads(**payload["threads"]))
        task = get_task(spec.task)
        if dataset is None:
            dataset = task.read_snapshot(Path(payload["dataset_snapshot"]))
        if dataset.checksum != spec.dataset_checksum:
            raise BenchError(f"dataset {spec.dataset} changed while the suite was running")
        settings = task.settings_from(spec.settings, "spec")
        method = registry.build(spec.method)
        from .methods.base import RunContext

        ctx = RunContext(
            cache=ArtifactCache(Path(payload["cache_dir"])),
            threads=payload["threads"]["torch"],
            device=payload["device"],
            batch_size=getattr(settings, "batch_size", 1),  # a task without batches (long-context) runs one at a time
            progress=payload["progress"],
            fingerprint=payload["fingerprint"],
        )
        run_file = Path(payload["run_file"]) if payload["run_file"] else None
        if not payload["progress"]:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
            os.environ["TQDM_DISABLE"] = "1"
        result = task.run(method, dataset, spec.metrics, settings, ctx, run_file)  # type: ignore[attr-defined]
        result.extra["threads"] = threads_in_use()
        result.extra["worker"] = describe_worker()
        return {"status": "ok", "result": dataclasses.asdict(result)}
    except Exception as e:
        log.debug("worker failure", exc_info=True)
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
