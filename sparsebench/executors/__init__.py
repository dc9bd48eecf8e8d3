"""Executors: where a suite's specs are measured.

A spec is plain data and one unit of work, so the coordinator (`runner.run_suite`) can hand it
to any engine: `local` measures each spec here, in a fresh worker process; `dask` ships specs to
the workers of a Dask cluster (a local one of N worker processes, or an existing scheduler).
Whatever the engine, the coordinator plans, skips done keys, claims keys and appends every
record itself (one writer), and each worker measures through the same `runner.measure`.

Adding an engine (Ray, Slurm through submitit) is one module with an `Engine` and a line in
`open_engine`; the worker side it runs is `remote.run_job`, engine-independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from ..errors import BenchError

EXECUTORS = ("local", "dask")
DEFAULT_WORKERS = 2
DEFAULT_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ExecutorConfig:
    """What `--executor`, `--address`, `--workers` and `--connect-timeout` asked for."""

    name: str = "local"
    address: str | None = None  # an engine's cluster address; None starts a local cluster
    workers: int | None = None  # worker processes of a local cluster (None: DEFAULT_WORKERS)
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @property
    def distributed(self) -> bool:
        return self.name != "local"


@dataclass(frozen=True)
class Lost:
    """A spec whose worker died or failed outside the measurement: nothing to record."""

    reason: str  # completes "not recorded: ...", e.g. "its worker died (KilledWorker: ...)"


class Engine(Protocol):
    """A started engine: ships plain-data jobs to workers and hands back their results."""

    name: str

    def describe(self) -> str: ...

    def share(self, data: bytes) -> Any:
        """Make `data` (the dataset snapshot) available to every job; returns what submit takes."""

    def submit(self, job: dict[str, Any], shared: Any) -> Any:
        """Start one job (`remote.run_job(job, data)` on a worker); returns a handle."""

    def completed(self, handles: list[Any]) -> Iterator[tuple[Any, dict[str, Any] | Lost]]:
        """Each handle once, as its job ends: the job's result, or Lost."""

    def running(self) -> int:
        """How many submitted jobs a worker has started and not finished."""

    def close(self) -> None: ...


def check_config(config: ExecutorConfig) -> None:
    """Refuse a contradictory or unusable executor choice before anything is loaded or written."""
    if config.name not in EXECUTORS:
        raise BenchError(f"--executor {config.name}: unknown executor (known: {', '.join(EXECUTORS)})")
    if not config.distributed:
        if config.address is not None or config.workers is not None:
            raise BenchError("--address and --workers choose a cluster; they need --executor dask")
        return
    if config.address is not None and config.workers is not None:
        raise BenchError("--address connects to an existing cluster, --workers starts a local one; give one of them")
    if config.workers is not None and config.workers < 1:
        raise BenchError(f"--workers {config.workers}: a local cluster needs at least 1 worker")
    if not config.connect_timeout_s > 0:
        raise BenchError(f"--connect-timeout {config.connect_timeout_s:g}: must be a positive number of seconds")
    if config.name == "dask":
        from .dask_engine import check_installed

        check_installed()


def open_engine(config: ExecutorConfig) -> Engine:
    """Start (or connect to) the engine; a one-line BenchError when it cannot be had."""
    check_config(config)
    if config.name == "dask":
        from .dask_engine import DaskEngine

        return DaskEngine.open(config)
    raise BenchError(f"--executor {config.name}: not a distributed engine")
