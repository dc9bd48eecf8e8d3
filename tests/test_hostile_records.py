"""Hostile results files, through the real CLI: every reader refuses them at FILE:LINE, none crashes.

`bench validate` collects the problems (exit 1); `bench report`, `export` and `run` read with the
same parser and stop with a one-line error naming the file and line (exit 2). Nothing here may
raise out of `main()` (a traceback), hang, or read an unbounded file into memory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from sparsebench import records, sidecars, strictjson
from sparsebench.cli import main

from .conftest import SAMPLE_RESULTS

MARK = '"__hostile__"'


def sample_records(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "retrieval.jsonl").read_text().splitlines()]


def with_token(rec: dict, token: bytes) -> bytes:
    """The record as JSON with its duration replaced by raw bytes (which json.dumps cannot write)."""
    line = json.dumps({**rec, "duration_s": "__hostile__"}).encode()
    assert line.count(MARK.encode()) == 1
    return line.replace(MARK.encode(), token)


def suite_of_nines(rec: dict) -> bytes:
    return json.dumps({**rec, "suite": "retrieval@" + "9" * 5000}).encode()


def duplicate_status(rec: dict) -> bytes:
    return b'{"status": "failed", ' + json.dumps(rec).encode()[1:]


def over_long(rec: dict) -> bytes:
    return json.dumps({**rec, "padding": "x" * (records.MAX_LINE_BYTES + 16)}).encode()


# (id, hostile line from a good record, what every reader must say about it)
CASES: list[tuple[str, Callable[[dict], bytes], str]] = [
    ("nested-200k", lambda r: with_token(r, b"[" * 200_000 + b"]" * 200_000), f"nested deeper than {strictjson.MAX_DEPTH} levels"),
    ("suite-5000-nines", suite_of_nines, "is not NAME@VERSION"),
    ("number-5000-digits", lambda r: with_token(r, b"1" * 5000), "a number of 5000 digits"),
    ("invalid-utf8", lambda r: with_token(r, b'"\xff\xfe"'), "not UTF-8"),
    ("nan", lambda r: with_token(r, b"NaN"), "NaN is not a JSON number"),
    ("infinity", lambda r: with_token(r, b"-Infinity"), "-Infinity is not a JSON number"),
    ("overflowing-float", lambda r: with_token(r, b"1e999"), "too large to be finite"),
    ("lone-surrogate", lambda r: with_token(r, b'"\\ud800"'), "surrogate"),
    ("duplicate-key", duplicate_status, "'status' appears twice"),
    ("line-over-4mib", over_long, "longer than"),
]


def append_lines(path: Path, *lines: bytes) -> None:
    with path.open("ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))


def one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    return errors[0]


def validate_errors(capsys: pytest.CaptureFixture, path: Path, line: int) -> list[str]:
    prefix = f"{path}:{line}: error: "
    return [o[len(prefix):] for o in capsys.readouterr().out.splitlines() if o.startswith(prefix)]


@pytest.mark.parametrize("make, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_reader_refuses_a_hostile_line_at_its_line_as_validate_does(results, tmp_path, capsys, caplog, make, expect) -> None:
    path = results / "retrieval.jsonl"
    good = sample_records(results)
    # Line 6 is hostile; line 7 (a second copy of line 1) shows validate goes on, counting lines right.
    append_lines(path, make(good[1]), json.dumps(good[0]).encode())
    before = path.read_bytes()

    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    flagged = [o for o in out.splitlines() if o.startswith(f"{path}:6: error: ")]
    assert len(flagged) == 1 and expect in flagged[0], out[:2000]
    assert f"{path}:7: error: duplicate run_id" in out
    assert not any(o.startswith(f"{path}:{n}: error") for n in range(1, 6) for o in out.splitlines())
    validate_says = flagged[0].split(": error: ", 1)[1]

    for argv in (["report", "--results", str(results), "--out", str(tmp_path / "site")],
                 ["export", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--results", str(results)],
                 ["export", "--format", "parquet", "--out", str(tmp_path / "x.parquet"), "--results", str(results)]):
        caplog.clear()
        assert main(argv) == 2, argv
        message = one_error(caplog)
        # The same parser: the reader names the same line and says what validate says.
        assert message.startswith(f"{path}:6: {validate_says}"), (argv, message[:500])
    assert not (tmp_path / "site").exists() and not (tmp_path / "x.csv").exists()
    assert path.read_bytes() == before


def test_bench_run_refuses_a_hostile_results_file_before_measuring(results, tiny_beir, capsys, caplog) -> None:
    path = results / "retrieval.jsonl"
    append_lines(path, with_token(sample_records(results)[0], b"NaN"))
    before = path.read_bytes()
    argv = ["run", "--suite", "retrieval", "--no-progress", "--in-process", "--dataset", f"beir:{tiny_beir}",
            "--method", "bm25", "--results", str(results)]
    assert main(argv) == 2
    assert one_error(caplog).startswith(f"{path}:6: corrupt record, invalid JSON (NaN is not a JSON number)")
    assert path.read_bytes() == before  # nothing measured, nothing appended


def make_fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path)


def link_to_dev_zero(path: Path, tmp_path: Path) -> None:
    path.symlink_to("/dev/zero")


def link_to_a_good_file_outside(path: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    shutil.copy(SAMPLE_RESULTS / "retrieval.jsonl", outside)
    path.symlink_to(outside)


@pytest.mark.parametrize("plant, expect", [
    (link_to_dev_zero, "is a symbolic link; refused"),
    (link_to_a_good_file_outside, "is a symbolic link; refused"),
    (make_fifo, "is not a regular file; refused"),
], ids=["symlink-to-dev-zero", "symlink-outside-results", "fifo"])
def test_a_results_file_that_is_not_a_regular_file_is_refused_not_read(results, tmp_path, capsys, caplog, plant, expect) -> None:
    path = results / "retrieval.jsonl"
    path.unlink()
    plant(path, tmp_path)

    assert main(["validate", str(results)]) == 1
    assert any(expect in e for e in validate_errors(capsys, path, 0))
    for argv in (["report", "--results", str(results), "--out", str(tmp_path / "site")],
                 ["export", "--format", "csv", "--out", str(tmp_path / "x.csv"), "--results", str(results)]):
        caplog.clear()
        assert main(argv) == 2
        message = one_error(caplog)
        assert message.startswith(f"{path}:0: ") and expect in message


@pytest.mark.parametrize("inside", [False, True], ids=["target-outside-results", "target-inside-results"])
def test_a_sidecar_that_is_a_symlink_is_refused_even_with_the_right_digest(results, tmp_path, capsys, caplog, inside) -> None:
    path = results / "retrieval.jsonl"
    rec = sample_records(results)[2]  # line 3
    sidecar = results / rec["per_query"]["path"]
    target = (results / "moved.json") if inside else (tmp_path / "outside.json")
    shutil.move(sidecar, target)
    sidecar.symlink_to(target)  # same bytes, so the digest matches: only the link is wrong

    assert main(["validate", str(path)]) == 1
    assert any("is a symbolic link; refused" in e for e in validate_errors(capsys, path, 3))
    caplog.clear()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "site")]) == 2
    message = one_error(caplog)
    assert message.startswith(f"{path}:3: per-query file {rec['per_query']['path']} is a symbolic link")


def test_an_oversized_sidecar_is_refused_without_reading_it_whole(results, tmp_path, capsys, caplog, monkeypatch) -> None:
    path = results / "retrieval.jsonl"
    rec = sample_records(results)[0]
    size = (results / rec["per_query"]["path"]).stat().st_size
    monkeypatch.setattr(sidecars, "MAX_SIDECAR_BYTES", size - 1)

    assert main(["validate", str(path)]) == 1
    assert any(f"larger than the {size - 1} bytes allowed" in e for e in validate_errors(capsys, path, 1))
    caplog.clear()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "site")]) == 2
    assert one_error(caplog).startswith(f"{path}:1: per-query file {rec['per_query']['path']} is larger than")


def test_record_text_cannot_forge_an_output_line(results, tmp_path, capsys, caplog) -> None:
    path = results / "retrieval.jsonl"
    rec = sample_records(results)[0]
    forged = "x\n/etc/passwd:1: error: forged\u2028"
    rec["costs"][forged] = {"value": 1.0, "n": 1}  # no unit: malformed, and its name carries newlines
    append_lines(path, json.dumps(rec).encode())

    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert all(o.startswith(f"{path}:") for o in out), out
    assert any(o.startswith(f"{path}:6: error: ") and "x\\x0a/etc/passwd:1: error: forged\\u2028" in o for o in out)
    caplog.clear()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "site")]) == 2
    assert one_error(caplog).startswith(f"{path}:6: malformed record: costs.x\\x0a/etc/passwd")
