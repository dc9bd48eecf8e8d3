"""`bench validate`: every problem as FILE:LINE, non-zero exit on errors, nothing executed or written."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

from sparsebench.cli import main
from sparsebench.suites.spec import load_suite

# The sample records are re-measured whenever the retrieval suite's version moves.
CURRENT = load_suite("retrieval").version


def bench_validate(*paths: Path) -> int:
    """`bench validate ...` through the real entry point (BenchError -> exit 2)."""
    return main(["validate", *map(str, paths)])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


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
    newer["suite"] = f"retrieval@{CURRENT + 1}"
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
        4: f"error: suite version retrieval@{CURRENT + 1} is newer",
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


def test_method_name_family_and_params_must_agree_with_the_method_id(results, capsys) -> None:
    recs = sample_lines(results)
    bm25 = recs[0]
    assert bm25["method"] == "bm25" and bm25["params"]["k1"] == 1.2
    family = {**bm25, "run_id": "fam", "family": "dense-encoder"}  # a bm25 number in the dense row
    name = {**bm25, "run_id": "name", "method_name": "minilm"}
    params = {**bm25, "run_id": "params", "params": {**bm25["params"], "k1": 0.9}}  # k1=0.9 measured as plain bm25?
    typed = {**bm25, "run_id": "typed", "params": {**bm25["params"], "stemmer": True}}
    unknown = {**bm25, "run_id": "unknown", "method": "nosuch(x=1)"}
    huge = {**bm25, "run_id": "huge", "method": "bm25(k1=" + "9" * 5000 + ")"}  # int() over its digit limit
    case = write_case(results, [bm25, family, name, params, typed, unknown, huge])

    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    expect = {
        2: "family 'dense-encoder' but method 'bm25' is registered as 'sparse-encoder'",
        3: "method_name 'minilm' but method id 'bm25' is method 'bm25'",
        4: "params disagree with method id 'bm25' on k1",
        5: "params disagree with method id 'bm25' on stemmer",
        6: "method id 'nosuch(x=1)' does not build: unknown method 'nosuch'",
        7: "method id 'bm25(k1=999",
    }
    for line, message in expect.items():
        assert any(o.startswith(f"{case}:{line}: error: ") and message in o for o in out.splitlines()), (line, out)
    assert f"{case}:1: error" not in out
    assert all(len(o) < 1500 for o in out.splitlines())  # the 5000-digit id is quoted cut short


def schema2(rec: dict, **changes: object) -> dict:
    from sparsebench.suites.spec import load_suite

    return {**rec, "schema": 2, "suite_digest": load_suite("retrieval").digest, **changes}


def test_suite_digest_is_required_and_checked_for_schema_2(results, capsys) -> None:
    recs = sample_lines(results)
    current = schema2(recs[0])
    other = schema2(recs[1], suite_digest="0" * 64)  # a copied suite file that reuses the version
    missing = schema2(recs[2])
    del missing["suite_digest"]
    old = {k: v for k, v in recs[3].items() if k not in ("suite_digest", "contention")} | {"schema": 1}  # as first written
    case = write_case(results, [current, other, missing, old])

    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    assert not any(o.startswith(f"{case}:1: ") for o in out.splitlines()), out
    assert f"{case}:2: error: suite_digest 0000000000000000" in out
    assert f"measured with a different suite definition that reuses retrieval@{CURRENT}" in out
    assert f"{case}:3: error: malformed record: schema 2 record needs 'suite_digest' (str)" in out
    assert f"{case}:4: warning: schema 1 record predates suite digests; its suite definition cannot be verified" in out
    assert f"{case}:4: error" not in out


def test_contention_is_warned_about_and_must_be_well_formed(results, capsys) -> None:
    recs = sample_lines(results)
    quiet = schema2(recs[0], contention={"detected": False, "max_other_runs": 0, "samples": 12})
    busy = schema2(recs[1], contention={"detected": True, "max_other_runs": 3, "samples": 12})
    bad = schema2(recs[2], contention={"detected": "yes", "max_other_runs": -1, "samples": 12})
    case = write_case(results, [quiet, busy, bad])

    assert bench_validate(case) == 1
    out = capsys.readouterr().out
    assert not any(o.startswith(f"{case}:1: ") for o in out.splitlines()), out
    assert f"{case}:2: warning: costs measured while 3 other sparsebench runs were measuring on this machine" in out
    assert f"{case}:2: error" not in out
    assert f"{case}:3: error: malformed record: contention.detected should be bool" in out
    assert f"{case}:3: error: malformed record: contention.max_other_runs should be a non-negative int" in out


def test_unreferenced_sidecars_and_temp_files_are_warned_at_line_0(results, capsys) -> None:
    folder = results / "per-query" / "retrieval"
    referenced = sorted(p.name for p in folder.iterdir())
    (folder / "0123456789abcdef-orphan.json").write_text("{}\n")  # a killed run's sidecar, record never written
    (folder / "0123456789abcdef-x.json.4242.tmp").write_text("{")  # a killed run's half-written temp
    (folder / "old-style.tmp").write_text("{")
    path = results / "retrieval.jsonl"

    assert bench_validate(path) == 0  # warnings only
    out = capsys.readouterr().out.splitlines()
    at0 = [o for o in out if o.startswith(f"{path}:0: warning: ")]
    assert len(at0) == 3, out
    assert any("per-query file per-query/retrieval/0123456789abcdef-orphan.json is referenced by no record in retrieval.jsonl" in o for o in at0)
    assert any("temporary file per-query/retrieval/0123456789abcdef-x.json.4242.tmp" in o for o in at0)
    assert any("temporary file per-query/retrieval/old-style.tmp" in o for o in at0)
    assert not any(name in o for name in referenced for o in at0)
    # a file of another suite name does not claim retrieval's sidecars as its own strays
    case = write_case(results, sample_lines(results)[:1])
    assert bench_validate(case) == 0
    assert f"{case}:0:" not in capsys.readouterr().out
