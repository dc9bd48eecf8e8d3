"""The coordinator's side of a distributed run: claim keys, ship specs, append what comes back.

Resume, per-key claims, validation and the report keep working unchanged because nothing about
them moves: the coordinator reads the done keys, holds each key's claim (`ResultStore.claim`)
from before its job is shipped until its record is appended or the job is lost, and is the only
process that writes under results/. A job whose worker dies leaves its key unrecorded and its
claim released, so the next run measures it; a key is appended once, by this one writer.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..records import ResultStore, append
from . import Engine, Lost
from .remote import cache_identity

if TYPE_CHECKING:
    from ..hardware import ProfileMatch
    from ..runner import RunOptions, RunSpec, RunSummary
    from ..suites.spec import Suite

log = logging.getLogger(__name__)


class _Claims:
    """Per-key claims held across many jobs at once (each released as its job ends)."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self.held: dict[str, ExitStack] = {}

    def take(self, key: str, wait: bool) -> bool:
        stack = ExitStack()
        if stack.enter_context(self.store.claim(key, wait=wait)):
            self.held[key] = stack
            return True
        stack.close()
        return False

    def release(self, key: str) -> None:
        stack = self.held.pop(key, None)
        if stack is not None:
            stack.close()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


def run_on_engine(engine: Engine, store: ResultStore, suite: Suite, todo: list[tuple[int, RunSpec]], total: int,
                  profile: ProfileMatch, opts: RunOptions, summary: RunSummary, done_at_start: Counter[str]) -> None:
    """Measure `todo` (specs without an ok record, or all with --force) on the engine's workers."""
    from ..runner import _ok_counts

    assert opts.dataset_snapshot is not None
    data = opts.dataset_snapshot.read_bytes()
    snapshot = {"relpath": opts.dataset_snapshot.relative_to(opts.cache_dir).as_posix(), "sha256": hashlib.sha256(data).hexdigest()}
    base = {"suite_digest": suite.digest, "allow_mismatch": opts.allow_profile_mismatch, "cache_dir": str(opts.cache_dir),
            "cache_id": cache_identity(opts.cache_dir), "snapshot": snapshot}
    log.info("%s", engine.describe())
    shared = engine.share(data)
    claims = _Claims(store)
    try:
        mine, busy = [], []
        for i, spec in todo:
            (mine if claims.take(spec.key, wait=False) else busy).append((i, spec))
        # Re-read under the claims: a concurrent run may have recorded a key meanwhile (with
        # --force a key counts as done only when we waited for its holder, as in the local runner).
        now_ok = _ok_counts(store, suite)
        ship = []
        for i, spec in mine:
            if now_ok[spec.key] > done_at_start[spec.key] and not opts.force:
                log.info("[%d/%d] %s: recorded by another run; skipping", i, total, spec.method)
                summary.skipped += 1
                claims.release(spec.key)
            else:
                ship.append((i, spec))
        for i, spec in busy:
            log.info("[%d/%d] %s: another run is measuring this key; coming back to it at the end", i, total, spec.method)
        _ship_and_collect(engine, shared, base, ship, total, claims, store, suite, opts, summary)
        # Keys another run held: wait for its claim, then take its record or measure the key here.
        for i, spec in busy:
            log.info("[%d/%d] %s: waiting for the other run measuring key %s", i, total, spec.method, spec.key[:12])
            claims.take(spec.key, wait=True)
            summary.waited += 1
            if _ok_counts(store, suite)[spec.key] > done_at_start[spec.key]:
                log.info("[%d/%d] %s: recorded by the other run; skipping", i, total, spec.method)
                summary.skipped += 1
                claims.release(spec.key)
                continue
            _ship_and_collect(engine, shared, base, [(i, spec)], total, claims, store, suite, opts, summary)
    finally:
        claims.release_all()


def _ship_and_collect(engine: Engine, shared: Any, base: dict[str, Any], ship: list[tuple[int, RunSpec]], total: int,
                      claims: _Claims, store: ResultStore, suite: Suite, opts: RunOptions, summary: RunSummary) -> None:
    from ..runner import attach_per_query

    if not ship:
        return
    handles: dict[Any, tuple[int, RunSpec]] = {}
    for i, spec in ship:
        job = {**base, "job_id": uuid.uuid4().hex[:16], "spec": asdict(spec)}
        handles[engine.submit(job, shared)] = (i, spec)
    log.info("%d spec(s) shipped to %s workers", len(ship), engine.name)
    finished = 0
    for handle, result in engine.completed(list(handles)):
        i, spec = handles[handle]
        finished += 1
        try:
            if isinstance(result, Lost):
                summary.lost += 1
                log.error("[%d/%d] %s: not recorded: %s; run again to measure it", i, total, spec.method, result.reason)
            else:
                rec = attach_per_query(result["record"], result["per_query"], opts.results_dir)
                append(store.file_for(suite.name), rec)
                summary.ran += 1
                if rec["status"] != "ok":
                    summary.failed += 1
                _log_record(rec, f"[{i}/{total}]")
        finally:
            claims.release(spec.key)
        running = min(engine.running(), len(ship) - finished)
        log.info("progress: %d done, %d running, %d queued", finished, running, len(ship) - finished - running)


def _log_record(rec: dict[str, Any], tag: str) -> None:
    where = rec.get("executor", {})
    log.info("%s %s: %s on %s", tag, rec["method"], rec["status"], where.get("worker", "?"))
    cache = where.get("cache", {})
    if not cache.get("shared", True):
        log.warning("%s %s: %s", tag, rec["method"], cache.get("note"))
    if rec["status"] != "ok":
        log.error("%s: %s: %s", rec["method"], rec["status"], rec["error"])
