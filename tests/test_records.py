import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsebench import records, sidecars
from sparsebench.errors import ResultsError


def make_record(key: str = "k1", status: str = "ok") -> dict:
    return {
        "schema": 1, "key": key, "run_id": "r", "suite": "retrieval@1", "task": "retrieval",
        "method": "bm25", "method_name": "bm25", "family": "sparse-encoder", "params": {},
        "dataset": {"id": "faq"}, "settings": {}, "main_metric": "nDCG@10",
        "metrics": {"nDCG@10": {"value": 0.5, "unit": "", "n": 10}} if status == "ok" else {},
        "costs": {"latency_p50_ms": {"value": 1.0, "unit": "ms", "n": 20}} if status == "ok" else {},
        "profile": {"id": "cpu-2core", "fingerprint": "f"}, "provenance": {},
        "started_at": "t0", "finished_at": "t1", "status": status, "error": None if status == "ok" else "boom",
    }


def test_append_and_read(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    records.append(path, make_record("a"))
    records.append(path, make_record("b", "failed"))
    got = records.read(path)
    assert [r["key"] for r in got] == ["a", "b"]
    assert records.ResultStore(tmp_path).done_keys("r") == {"a"}


def test_malformed_records_are_refused_on_write(tmp_path: Path) -> None:
    rec = make_record()
    del rec["costs"]["latency_p50_ms"]["unit"]
    with pytest.raises(ValueError, match="needs value, unit and n"):
        records.append(tmp_path / "r.jsonl", rec)
    assert not (tmp_path / "r.jsonl").exists()


def test_corrupt_line_is_reported_with_file_and_line_and_nothing_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    records.append(path, make_record("a"))
    with path.open("a") as f:
        f.write('{"schema": 1, "key": \n')
    records_before = path.read_bytes()
    with pytest.raises(ResultsError, match=rf"{path}:2: corrupt record"):
        records.read(path)
    assert path.read_bytes() == records_before


def test_incomplete_last_line_blocks_appends(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    records.append(path, make_record("a"))
    with path.open("a") as f:
        f.write('{"schema": 1')
    before = path.read_bytes()
    with pytest.raises(ResultsError, match="incomplete"):
        records.read(path)
    with pytest.raises(ResultsError, match="incomplete"):
        records.append(path, make_record("b"))
    assert path.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**make_record(), "schema": 99}) + "\n")
    with pytest.raises(ResultsError, match="newer than this sparsebench"):
        records.read(path)


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        rec = make_record(f"w{worker}-{i}")
        rec["padding"] = "x" * 20000  # big lines make interleaving likely if locking were wrong
        records.append(Path(path), rec)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    got = records.read(path)
    assert sorted(r["key"] for r in got) == sorted(f"w{w}-{i}" for w in range(4) for i in range(40))


def test_claims_exclude_a_second_holder(tmp_path: Path) -> None:
    store = records.ResultStore(tmp_path)
    with store.claim("abc") as first:
        # flock is per open file description, so a second claim here acts like another process.
        with store.claim("abc") as second, store.claim("other") as third:
            assert first and not second and third
    with store.claim("abc") as again:
        assert again


def test_sidecar_digest(tmp_path: Path) -> None:
    ref = sidecars.write_sidecar(tmp_path, "retrieval", "k" * 64, "run1", {"q1": {"nDCG@10": 1.0}})
    assert sidecars.read_sidecar(tmp_path, ref) == {"q1": {"nDCG@10": 1.0}}
    (tmp_path / ref["path"]).write_text('{"q1": {"nDCG@10": 0.0}}\n')
    with pytest.raises(ResultsError, match="does not match"):
        sidecars.read_sidecar(tmp_path, ref)


def test_sidecar_temp_file_is_per_process_and_removed_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def failing_replace(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        assert Path(src).is_file()  # the data went to the temp file first
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sidecars.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        sidecars.write_sidecar(tmp_path, "retrieval", "k" * 64, "run1", {"q1": {"nDCG@10": 1.0}})
    assert seen == [f"{'k' * 16}-run1.json.{os.getpid()}.tmp"]
    assert list((tmp_path / "per-query" / "retrieval").iterdir()) == []  # neither the temp nor a partial sidecar


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_temp_removes_only_what_dead_or_old_writers_left(tmp_path: Path) -> None:
    folder = tmp_path / "per-query" / "retrieval"
    folder.mkdir(parents=True)
    dead = folder / f"aaaa-r1.json.{_dead_pid()}.tmp"
    alive = folder / f"bbbb-r2.json.{os.getpid()}.tmp"  # a writer still at work
    old = folder / "cccc-r3.tmp"  # old style, no pid: only its age tells
    fresh = folder / "dddd-r4.tmp"
    sidecar = folder / "eeee-r5.json"
    for p in (dead, alive, old, fresh, sidecar):
        p.write_text("{")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(old, (two_hours_ago, two_hours_ago))

    removed = sidecars.clean_stale_temp(tmp_path)
    assert sorted(removed) == sorted([dead, old])
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (alive, fresh, sidecar))
    assert sidecars.clean_stale_temp(tmp_path) == []
    assert sidecars.clean_stale_temp(tmp_path / "no-such-dir") == []


def test_strict_reading_refuses_nan_and_invalid_utf8_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    records.append(path, make_record("a"))
    good = path.read_bytes()
    path.write_bytes(good + good.replace(b'"value": 0.5', b'"value": NaN'))
    with pytest.raises(ResultsError, match=rf"^{path}:2: corrupt record, invalid JSON \(NaN is not a JSON number\)"):
        records.read(path)
    path.write_bytes(good + good.replace(b'"run_id": "r"', b'"run_id": "\xff"'))
    with pytest.raises(ResultsError, match=rf"^{path}:2: corrupt record, invalid JSON \(not UTF-8"):
        records.read(path)


def test_a_line_separator_inside_a_string_does_not_split_the_record(tmp_path: Path) -> None:
    # append() writes ensure_ascii=False, so U+2028 goes out raw; only b"\n" ends a record.
    path = tmp_path / "r.jsonl"
    rec = make_record("a", "failed")
    rec["error"] = "line one\u2028line two\x85three"
    records.append(path, rec)
    assert [r["error"] for r in records.read(path)] == [rec["error"]]


def test_schema_2_needs_a_suite_digest_and_schema_1_upconverts(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match="needs 'suite_digest'"):
        records.append(path, {**make_record("a"), "schema": 2})
    records.append(path, {**make_record("b"), "schema": 2, "suite_digest": "d" * 64})
    records.append(path, make_record("c"))
    b, c = records.read(path)
    assert (b["schema"], b["suite_digest"]) == (2, "d" * 64)
    assert (c["schema"], c["suite_digest"]) == (1, None)  # read as is, marked unverifiable


def test_records_are_never_appended_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    path = tmp_path / "r.jsonl"
    path.symlink_to(target)
    with pytest.raises(ResultsError, match="symbolic link"):
        records.append(path, make_record("a"))
    assert target.read_text() == ""


def test_schema_1_records_of_an_existing_leaderboard_are_read_by_every_command(tmp_path: Path, capsys) -> None:
    import shutil

    from sparsebench.cli import main

    from .conftest import SAMPLE_RESULTS_SCHEMA1

    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS_SCHEMA1, results)
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert {json.loads(line)["schema"] for line in (results / "retrieval.jsonl").read_text().splitlines()} == {1}
    assert main(["validate", str(results)]) == 0  # warnings only: their suite definition cannot be verified
    assert capsys.readouterr().out.count("warning: schema 1 record predates suite digests") == 5
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "report")]) == 0
    assert main(["export", "--format", "csv", "--results", str(results), "--out", str(tmp_path / "r.csv")]) == 0
    # A run of the current suite version appends next to them and rewrites nothing.
    old_lines = (results / "retrieval.jsonl").read_bytes()
    assert main(["run", "--suite", "retrieval", "--results", str(results), "--method", "bm25", "--no-progress"]) == 0
    assert (results / "retrieval.jsonl").read_bytes().startswith(old_lines)
    assert all(p.read_bytes() == data for p, data in before.items() if p.name != "retrieval.jsonl")
