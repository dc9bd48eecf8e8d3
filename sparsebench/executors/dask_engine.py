"""Dask (`distributed`): specs measured on the workers of a Dask cluster.

Why Dask: a LocalCluster of N worker processes starts in seconds on a small machine, `Client`
connects to an existing scheduler (a lab's cluster, or dask-jobqueue's on Slurm), futures report
each job's end, and a worker that dies surfaces as a failed future (KilledWorker) the
coordinator can tell apart from a measured failure.

Each job is `remote.run_job(job, snapshot)`: plain data in, a record and per-query values out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterator

from ..errors import BenchError
from . import DEFAULT_WORKERS, ExecutorConfig, Lost

log = logging.getLogger(__name__)

TOPIC = "sparsebench-started"
# Dask's ways of saying the worker (or the connection to it) went away mid-job.
_WORKER_DIED = {"KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError"}
INSTALL_HINT = "install the dask extra: pip install 'sparsebench[dask]' (scripts/setup.sh installs it)"


def check_installed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise BenchError(f"--executor dask needs the distributed package, which is not installed here ({e}); {INSTALL_HINT}") from e


def _task(job: dict[str, Any], snapshot: bytes) -> dict[str, Any]:
    """What a Dask worker runs: says it started (for progress), then the engine-neutral job."""
    from distributed import get_worker

    from .remote import run_job

    worker = get_worker()
    try:
        worker.log_event(TOPIC, {"job": job["job_id"]})
    except Exception:  # progress only; never lose a measurement over it
        log.debug("could not report the start of %s", job["job_id"], exc_info=True)
    return run_job(job, snapshot, engine="dask", worker_id=str(worker.address))


class DaskEngine:
    name = "dask"

    def __init__(self, client: Any, cluster: Any | None) -> None:
        self.client = client
        self.cluster = cluster  # ours to close; None for an existing cluster
        self._started: set[str] = set()
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        client.subscribe_topic(TOPIC, self._on_started)

    @classmethod
    def open(cls, config: ExecutorConfig) -> DaskEngine:
        check_installed()
        import dask
        from distributed import Client, LocalCluster

        timeout = f"{config.connect_timeout_s}s"
        # The scheduler and nanny narrate every connection at INFO; keep their warnings only,
        # unless -v asked for everything.
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            logging.getLogger("distributed").setLevel(logging.WARNING)
        if config.address is not None:
            try:
                client = Client(config.address, timeout=timeout)
            except Exception as e:  # OSError, TimeoutError, ValueError (bad scheme): all mean "cannot use it"
                raise BenchError(
                    f"--address {config.address}: cannot reach a Dask scheduler there ({type(e).__name__}: {_first_line(e)}); "
                    "start one (`dask scheduler`, then `dask worker ADDRESS` on each machine) and pass its tcp://HOST:PORT, "
                    "or drop --address to start a local cluster of --workers N"
                ) from e
            return cls(client, None)
        n = config.workers or DEFAULT_WORKERS
        # A lost worker on one machine is the machine's doing (a kill, the OOM killer): leave its
        # spec to the next run rather than re-measure it at once under the same pressure.
        # Worker processes, one thread each: a spec's measuring worker is a process of its own.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
                client = Client(cluster, timeout=timeout)
            except Exception as e:
                raise BenchError(f"--executor dask: could not start a local cluster of {n} workers ({type(e).__name__}: "
                                 f"{_first_line(e)}); try fewer --workers, or --executor local") from e
        return cls(client, cluster)

    def describe(self) -> str:
        workers = self.client.scheduler_info().get("workers", {})
        where = "a local cluster" if self.cluster is not None else f"the cluster at {self.client.scheduler.address}"
        return f"dask: {where} of {len(workers)} worker(s)"

    def share(self, data: bytes) -> Any:
        # On every worker: a worker that dies (and its replacement) leaves the others a copy.
        return self.client.scatter(data, broadcast=True, hash=False)

    def submit(self, job: dict[str, Any], shared: Any) -> Any:
        return self.client.submit(_task, job, shared, pure=False, key=f"sparsebench-{job['job_id']}")

    def completed(self, handles: list[Any]) -> Iterator[tuple[Any, dict[str, Any] | Lost]]:
        from distributed import as_completed

        for future in as_completed(handles):
            job_id = str(future.key).removeprefix("sparsebench-")
            with self._lock:
                self._finished.add(job_id)
            if future.status == "finished":
                yield future, future.result()
                continue
            try:
                exc: BaseException | None = future.exception()
            except Exception as e:  # a cancelled future (its data or client gone) raises here instead
                exc = e
            what = f"{type(exc).__name__}: {_first_line(exc)}"
            if type(exc).__name__ in _WORKER_DIED:
                yield future, Lost(f"its worker died ({what})")
            else:
                yield future, Lost(f"the worker failed before measuring it ({what})")
            future.release()

    def running(self) -> int:
        with self._lock:
            return len(self._started - self._finished)

    def _on_started(self, event: Any) -> None:
        _, msg = event
        with self._lock:
            self._started.add(str(msg.get("job")))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _first_line(e: BaseException | None) -> str:
    """The gist of an engine's error: its first sentence (KilledWorker's runs to a paragraph)."""
    text = str(e).strip() if e is not None else ""
    first = text.splitlines()[0] if text else "no message"
    return first.split(". ", 1)[0]
