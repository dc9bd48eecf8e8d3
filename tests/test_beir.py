import json

import pytest

from sparsebench.datasets.beir import load_beir
from sparsebench.errors import DatasetError

from .conftest import DOCS, EXTRA_QRELS, QUERIES


def test_loads_corpus_queries_qrels(tiny_beir) -> None:
    ds = load_beir(tiny_beir)
    assert ds.id == f"beir:{tiny_beir.name}"
    assert ds.counts == {"documents": len(DOCS), "queries": len(QUERIES), "qrels": len(QUERIES) + len(EXTRA_QRELS)}
    assert ds.qrels["q3"] == {"d03": 1, "d09": 2}
    assert ds.corpus[0].title == "Unix scripts" and ds.corpus[0].full_text.startswith("Unix scripts\n")


def test_only_judged_queries_are_kept_and_checksum_tracks_content(tiny_beir) -> None:
    before = load_beir(tiny_beir).checksum
    with (tiny_beir / "queries.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "unjudged", "text": "not in qrels"}) + "\n")
    ds = load_beir(tiny_beir)
    assert "unjudged" not in {q.id for q in ds.queries}
    with (tiny_beir / "corpus.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "d99", "text": "one more passage"}) + "\n")
    assert load_beir(tiny_beir).checksum != before


def test_malformed_line_names_file_and_line(tiny_beir) -> None:
    with (tiny_beir / "corpus.jsonl").open("a") as f:
        f.write('{"_id": "d13", "text": \n')
    with pytest.raises(DatasetError, match=r"corpus.jsonl:13: invalid JSON"):
        load_beir(tiny_beir)


def test_missing_split_lists_present_ones(tiny_beir) -> None:
    with pytest.raises(DatasetError, match=r"splits present: test"):
        load_beir(tiny_beir, split="dev")


def test_bad_qrels(tiny_beir) -> None:
    (tiny_beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td01\tyes\n")
    with pytest.raises(DatasetError, match=r"test.tsv:2: score 'yes'"):
        load_beir(tiny_beir)
    (tiny_beir / "qrels" / "test.tsv").write_text("q404\td01\t1\n")
    with pytest.raises(DatasetError, match="not in queries.jsonl"):
        load_beir(tiny_beir)


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir(tmp_path / "nope")


def test_the_same_folder_at_two_paths_is_one_dataset_and_one_leaderboard_group(tmp_path, caplog) -> None:
    import shutil

    from sparsebench.cli import main
    from sparsebench.report.model import ReportOptions, build_report

    from .conftest import records_in, write_beir

    here = write_beir(tmp_path / "machine-a" / "faq-mini")
    there = tmp_path / "machine-b" / "elsewhere" / "faq-mini"
    shutil.copytree(here, there)
    results = tmp_path / "results"
    common = ("run", "--suite", "retrieval", "--results", str(results), "--in-process", "--no-progress")
    assert main([*common, "--dataset", f"beir:{here}", "--method", "bm25"]) == 0
    assert main([*common, "--dataset", f"beir:{there}", "--method", "bm25(k1=0.9)"]) == 0
    # The same key from the other path is already done: nothing is measured twice.
    assert main([*common, "--dataset", f"beir:{there}", "--method", "bm25"]) == 0
    a, b = records_in(results / "retrieval.jsonl")
    assert a["dataset"]["id"] == b["dataset"]["id"] == "beir:faq-mini"
    assert a["dataset"]["checksum"] == b["dataset"]["checksum"]
    assert a["dataset"]["ref"] == f"beir:{here}" and b["dataset"]["ref"] == f"beir:{there}"  # where it lay, for the record
    report = build_report(results, ReportOptions())
    [group] = report.groups
    assert sorted(r.method for r in group.rows) == ["bm25", "bm25(k1=0.9)"]

    # A split is part of the id; --dataset-name names it; a declared dataset cannot be renamed.
    (there / "qrels" / "dev.tsv").write_text((there / "qrels" / "test.tsv").read_text())
    assert main([*common, "--dataset", f"beir:{there}#dev", "--dataset-name", "mini", "--method", "bm25"]) == 0
    assert records_in(results / "retrieval.jsonl")[-1]["dataset"]["id"] == "beir:mini#dev"
    assert main([*common, "--dataset", "faq", "--dataset-name", "mine", "--method", "bm25"]) == 2
    assert main([*common, "--dataset", f"beir:{there}", "--dataset-name", "a b", "--method", "bm25"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "is declared by retrieval@3" in errors[0] and "--dataset-name 'a b'" in errors[1]
