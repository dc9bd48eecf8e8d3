"""`bench run --executor dask` on a real local Dask cluster of two worker processes.

The coordinator plans, claims and appends; the workers measure through the local executor's
code path. So the records must equal the local executor's apart from times, costs and where they
were measured; a worker killed mid-spec must lose no finished record, and the next run must
complete the grid with no key recorded twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsebench.cli import main

from .conftest import REPO, records_in

# The dask extra is part of the test set-up (scripts/setup.sh installs it): a missing one must
# fail here, not skip and hide it.
import distributed  # noqa: E402,F401

GRID = "bm25,bm25(k1=0.9),bm25(b=0.4),bm25(k1=0.9,b=0.4)"
KILL_GRID = GRID + ",bm25(k1=0.6),bm25(k1=1.5)"
# What differs between two measurements of the same spec, or between the machines (and
# processes) that measured it; everything else must be equal.
VOLATILE = {"run_id", "started_at", "finished_at", "duration_s", "costs", "contention", "profile", "provenance", "extra",
            "per_query", "executor"}


def bench(*args: str) -> int:
    return main(["run", "--suite", "retrieval", "--no-progress", *args])


def stable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in VOLATILE}


def per_query_metrics(results: Path, rec: dict) -> dict:
    """The sidecar's quality values (latencies are costs: they differ run to run)."""
    values = json.loads((results / rec["per_query"]["path"]).read_text())
    return {q: {k: v for k, v in m.items() if "latency" not in k} for q, m in values.items()}


def validates(results: Path) -> bool:
    return main(["validate", str(results)]) == 0


def test_a_two_worker_cluster_records_what_the_local_executor_records(tiny_beir, tmp_path) -> None:
    from sparsebench.hardware import detect

    common = ("--dataset", f"beir:{tiny_beir}", "--method", GRID)
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert bench(*common, "--results", str(local)) == 0
    assert bench(*common, "--results", str(dask), "--executor", "dask", "--workers", "2") == 0
    by_key_local = {r["key"]: r for r in records_in(local / "retrieval.jsonl")}
    by_key_dask = {r["key"]: r for r in records_in(dask / "retrieval.jsonl")}
    assert len(by_key_dask) == 4 and by_key_dask.keys() == by_key_local.keys()
    for key, rec in by_key_dask.items():
        assert rec["status"] == "ok"
        assert stable(rec) == stable(by_key_local[key])
        assert per_query_metrics(dask, rec) == per_query_metrics(local, by_key_local[key])
        assert rec["costs"].keys() == by_key_local[key]["costs"].keys()
        # Measured by a worker process, which detected the machine and matched the profile itself.
        assert rec["executor"]["name"] == "dask" and rec["executor"]["worker"].startswith("tcp://")
        assert rec["executor"]["pid"] != os.getpid() and rec["executor"]["cache"]["shared"] is True
        assert rec["profile"]["matched"] is True and rec["profile"]["fingerprint"] == detect().fingerprint
    assert len({r["executor"]["pid"] for r in by_key_dask.values()}) == 2, "both workers should have measured"
    assert validates(dask)
    # Resume works unchanged: everything is done, so nothing is shipped and nothing appended.
    assert bench(*common, "--results", str(dask), "--executor", "dask", "--workers", "2") == 0
    assert len(records_in(dask / "retrieval.jsonl")) == 4


def _measuring_worker_pid(measuring: Path, coordinator: int) -> int | None:
    """The pid of a worker process measuring right now: it holds a lock in the measuring dir."""
    for lock in measuring.glob("*.lock") if measuring.is_dir() else ():
        pid = int(lock.name.split("-", 1)[0])
        if pid == coordinator:
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return pid  # held: that worker is mid-spec
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return None


def test_killing_a_worker_mid_spec_loses_no_record_and_a_rerun_completes(tiny_beir, tmp_path) -> None:
    results = tmp_path / "results"
    path = results / "retrieval.jsonl"
    cmd = [sys.executable, "-m", "sparsebench.cli", "run", "--suite", "retrieval", "--dataset", f"beir:{tiny_beir}",
           "--method", KILL_GRID, "--results", str(results), "--no-progress", "--executor", "dask", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    measuring = Path(os.environ["SPARSEBENCH_MEASURING_DIR"])
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= 1:
            victim = _measuring_worker_pid(measuring, proc.pid)
        time.sleep(0.02)
    assert victim is not None, "no worker was measuring after the first record"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    written = records_in(path)
    keys = [r["key"] for r in written]
    assert len(keys) == len(set(keys)) and all(r["status"] == "ok" for r in written)
    if proc.returncode == 1:  # the killed worker's spec (and any queued on it) were left unrecorded, and said so
        assert len(written) < 6 and b"not recorded: its worker died (KilledWorker" in err
    else:  # the kill landed after that spec's result had left the worker
        assert proc.returncode == 0, err.decode()[-2000:]

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    final = records_in(path)
    assert final[: len(written)] == written  # nothing rewritten, nothing lost
    keys = [r["key"] for r in final]
    assert len(keys) == len(set(keys)) == 6 and all(r["status"] == "ok" for r in final)
    assert validates(results)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and r.name.startswith("sparsebench")]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


def test_an_existing_cluster_is_used_through_its_address_and_left_running(tiny_beir, results_dir) -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert bench("--dataset", f"beir:{tiny_beir}", "--method", "bm25,bm25(k1=0.9)", "--results", str(results_dir),
                     "--executor", "dask", "--address", cluster.scheduler_address) == 0
        recs = records_in(results_dir / "retrieval.jsonl")
        with Client(cluster.scheduler_address, timeout="5s") as client:  # the coordinator closed only its own client
            workers = set(client.scheduler_info()["workers"])
        assert len(workers) == 1 and [r["status"] for r in recs] == ["ok", "ok"]
        assert {r["executor"]["worker"] for r in recs} == workers
        # A profile the workers do not match: this machine only plans, each worker refuses and says so.
        assert bench("--dataset", f"beir:{tiny_beir}", "--method", "bm25", "--results", str(results_dir),
                     "--executor", "dask", "--address", cluster.scheduler_address, "--profile", "h100-x1") == 1
        refused = records_in(results_dir / "retrieval.jsonl")[-1]
        assert refused["status"] == "failed" and refused["profile"]["id"] == "h100-x1"
        assert refused["profile"]["matched"] is False and refused["error"].startswith(f"refused by worker {refused['executor']['worker']}")
    assert validates(results_dir)


@pytest.mark.parametrize("address", [f"tcp://127.0.0.1:{_closed_port()}", "ray://127.0.0.1:10001"])
def test_an_unreachable_cluster_is_one_line_exit_2_and_nothing_written(address, tiny_beir, results_dir, caplog) -> None:
    rc = bench("--dataset", f"beir:{tiny_beir}", "--method", "bm25", "--results", str(results_dir),
               "--executor", "dask", "--address", address, "--connect-timeout", "1")
    assert rc == 2
    message = _one_error(caplog)
    assert f"--address {address}: cannot reach a Dask scheduler" in message and "dask scheduler" in message
    assert not results_dir.exists() or not any(results_dir.rglob("*.json*"))


def test_a_missing_engine_extra_is_one_line_exit_2_and_nothing_written(tiny_beir, results_dir, caplog, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` meets where it is not installed
    rc = bench("--dataset", f"beir:{tiny_beir}", "--method", "bm25", "--results", str(results_dir), "--executor", "dask")
    assert rc == 2
    assert "pip install 'sparsebench[dask]'" in _one_error(caplog)
    assert not results_dir.exists()


@pytest.mark.parametrize("args, message", [
    (("--workers", "2"), "need --executor dask"),
    (("--executor", "dask", "--workers", "2", "--address", "tcp://127.0.0.1:8786"), "give one of them"),
    (("--executor", "dask", "--workers", "0"), "at least 1 worker"),
    (("--executor", "dask", "--in-process"), "--in-process"),
])
def test_contradictory_executor_options_are_refused(args, message, tiny_beir, results_dir, caplog) -> None:
    assert bench("--dataset", f"beir:{tiny_beir}", "--method", "bm25", "--results", str(results_dir), *args) == 2
    assert message in _one_error(caplog)
    assert not results_dir.exists()


def _job(tiny_beir: Path, tmp_path: Path, profile_id: str, cache_dir: Path, cache_id: str) -> tuple[dict, bytes]:
    """A job as the coordinator ships it, for the real tiny data."""
    import hashlib

    from sparsebench.runner import plan, plan_methods
    from sparsebench.hardware import choose_profile
    from sparsebench.suites.spec import load_suite
    from sparsebench.suites.tasks import get_task

    suite = load_suite("retrieval")
    task = get_task(suite.task)
    dataset = task.load_data(suite, f"beir:{tiny_beir}")
    coordinator_cache = tmp_path / "coordinator-cache"
    snap = task.write_snapshot(coordinator_cache, dataset)
    match = choose_profile(None, False)
    [spec] = plan(suite, dataset, f"beir:{tiny_beir}", match, plan_methods(suite, ["bm25"], []))
    spec = dataclasses.replace(spec, profile_id=profile_id)
    data = snap.read_bytes()
    job = {"job_id": "test", "spec": dataclasses.asdict(spec), "suite_digest": suite.digest, "allow_mismatch": False,
           "cache_dir": str(cache_dir), "cache_id": cache_id,
           "snapshot": {"relpath": snap.relative_to(coordinator_cache).as_posix(), "sha256": hashlib.sha256(data).hexdigest()}}
    return job, data


def test_a_worker_refuses_a_profile_it_does_not_match_and_the_record_says_so(tiny_beir, tmp_path) -> None:
    from sparsebench.executors.remote import cache_identity, run_job
    from sparsebench.hardware import detect
    from sparsebench.records import append
    from sparsebench.runner import attach_per_query

    cache = tmp_path / "coordinator-cache"
    job, data = _job(tiny_beir, tmp_path, "h100-x1", cache, cache_identity(cache))
    out = run_job(job, data, engine="test", worker_id="w1")
    rec = out["record"]
    assert rec["status"] == "failed" and out["per_query"] is None
    assert "refused by worker w1" in rec["error"] and "h100-x1" in rec["error"] and "--profile-mismatch=allow" in rec["error"]
    assert rec["profile"]["id"] == "h100-x1" and rec["profile"]["matched"] is False
    assert rec["profile"]["fingerprint"] == detect().fingerprint and rec["profile"]["mismatches"]
    results = tmp_path / "results"
    append(results / "retrieval.jsonl", attach_per_query(rec, None, results))
    assert validates(results)


def test_a_worker_that_cannot_see_the_cache_computes_into_its_own_and_says_so(tiny_beir, tmp_path) -> None:
    from sparsebench.cache import default_cache_dir
    from sparsebench.executors.remote import run_job
    from sparsebench.hardware import choose_profile
    from sparsebench.records import append
    from sparsebench.runner import attach_per_query

    unseen = tmp_path / "on-another-machine"  # never created here: this worker cannot see it
    job, data = _job(tiny_beir, tmp_path, choose_profile(None, False).profile.id, unseen, "coordinator-cache-id")
    out = run_job(job, data, engine="test", worker_id="w1")
    rec = out["record"]
    assert rec["status"] == "ok", rec.get("error")
    own = default_cache_dir()
    assert rec["executor"]["cache"]["shared"] is False and rec["executor"]["cache"]["dir"] == str(own)
    assert str(unseen) in rec["executor"]["cache"]["note"]
    assert (own / job["snapshot"]["relpath"]).read_bytes() == data  # the shipped snapshot, written locally
    assert not unseen.exists()
    results = tmp_path / "results"
    append(results / "retrieval.jsonl", attach_per_query(rec, out["per_query"], results))
    assert validates(results)
