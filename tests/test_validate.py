"""`bench validate`: every problem as FILE:LINE, non-zero exit on errors, nothing executed or written."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest


from sparsebench.cli import main

from .conftest import SAMPLE_RESULTS


def bench_validate(*paths: Path) -> int:
    """`bench validate ...` through the real entry point (BenchError -> exit 2)."""
    return main(["validate", *map(str, paths)])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, root)
    return root


def sample_lines(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "retrieval.jsonl").read_text().splitlines()]


def write_case(results: Path, recs: list[dict | str]) -> Path:
    """A results file as a pull request might bring it, next to the sample's sidecars."""
    path = results / "case.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in recs))
    return path


def test_the_sample_results_pass(results, capsys) -> None:
    before = snapshot(results)
    assert bench_validate(results) == 0
    assert ": error:" not in capsys.readouterr().out
    assert snapshot(results) == before


def test_each_problem_is_reported_at_its_line_and_files_are_left_alone(results, capsys) -> None:
    good = sample_lines(results)
    bm25, b04, k09, both, minilm = good
    bad_unit = json.loads(json.dumps(b04))
    bad_unit["costs"]["latency_p50_ms"]["unit"] = "s"
    bad_profile = json.loads(json.dumps(k09))
    bad_profile["profile"]["id"] = "cpu-1core"
    newer = json.loads(json.dumps(both))
    newer["suite"] = "retrieval@2"
    older = json.loads(json.dumps(minilm))
    older["suite"] = "retrieval@0"
    # The sidecar of the first record, edited after its digest was recorded.
    sidecar = results / bm25["per_query"]["path"]
    sidecar.write_bytes(sidecar.read_bytes().replace(b'"nDCG@10": 0.0', b'"nDCG@10": 1.0', 1))
    duplicate = json.loads(json.dumps(b04))  # same run_id as line 2
    case = write_case(results, [bm25, bad_unit, bad_profile, newer, older, "{not json", duplicate])
    before = snapshot(results)

    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    expect = {
        1: "does not match the sha256 in its record",
        2: "costs.latency_p50_ms: unit 's', the retrieval task declares 'ms'",
        3: "profile 'cpu-1core' is not a declared profile",
        4: "error: suite version retrieval@2 is newer",
        5: "warning: older suite version retrieval@0",
        6: "invalid JSON",
        7: "duplicate run_id",
    }
    for line, message in expect.items():
        assert any(o.startswith(f"{case}:{line}: ") and message in o for o in out.splitlines()), (line, out)
    assert f"{case}:5: error" not in out  # an older version is kept, not refused
    assert snapshot(results) == before


def test_key_and_pinned_dataset_are_checked(results, capsys) -> None:
    rec, other = sample_lines(results)[:2]
    rec["settings"]["top_k"] = 10  # a setting that changes the numbers without changing the key
    other["dataset"]["checksum"] = "0" * 64  # not the faq collection the suite pins
    case = write_case(results, [rec, other])
    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    assert f"{case}:1: error: key " in out and "does not match the one recomputed" in out
    assert f"{case}:2: error: dataset 'faq' checksum" in out


def test_nothing_in_a_record_is_executed(results, tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    # A pickle that creates the marker when unpickled, offered as a per-query file with its true
    # digest, and a YAML file with a constructor tag offered as the record's suite.
    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    evil_pickle = results / "per-query" / "evil.pkl"
    evil_pickle.write_bytes(pickle.dumps(Payload()))
    evil_yaml = results / "evil.yaml"
    evil_yaml.write_text(f'name: !!python/object/apply:builtins.open ["{marker}", "w"]\nversion: 1\n')
    recs = sample_lines(results)
    pickled = recs[0]
    pickled["per_query"] = {"path": "per-query/evil.pkl", "sha256": hashlib.sha256(evil_pickle.read_bytes()).hexdigest()}
    yaml_suite = recs[1]
    yaml_suite["suite"] = f"{evil_yaml}@1"
    named_suite = recs[2]
    named_suite["suite"] = "evil@1"  # a name, not a path: still not loaded from results/
    escaping = recs[3]
    escaping["per_query"] = {"path": "../../../../../../etc/passwd", "sha256": "0" * 64}
    case = write_case(results, [pickled, yaml_suite, named_suite, escaping])
    before = snapshot(results)

    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    assert f"{case}:1: error: per-query file per-query/evil.pkl: invalid JSON" in out
    assert f"{case}:2: error: suite '{evil_yaml}@1' is not NAME@VERSION" in out
    assert f"{case}:3: error: unknown suite 'evil'" in out
    assert f"{case}:4: error: per-query path '../../../../../../etc/passwd' leaves the results directory" in out
    assert not marker.exists()
    assert snapshot(results) == before


def test_an_incomplete_last_line_and_a_missing_path(results, capsys) -> None:
    case = results / "case.jsonl"
    case.write_text((results / "retrieval.jsonl").read_text().splitlines()[0] + "\n" + '{"schema": 1, "key"')
    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    assert f"{case}:2: error: last line is incomplete" in out
    assert bench_validate(results / "nope.jsonl") == 2
