"""load_irds against datasets that ir_datasets itself reads: TSV docs/queries and TREC qrels, registered
in ir_datasets' own registry. Nothing of ours is mocked; only the files are local."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from sparsebench.datasets.irds import load_irds
from sparsebench.errors import DatasetError

import ir_datasets  # noqa: E402  (a hard dependency: a missing install must fail, not skip)
from ir_datasets.datasets.base import Dataset  # noqa: E402
from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries  # noqa: E402
from ir_datasets.util import Download, LocalDownload, RequestsDownload  # noqa: E402

QRELS_DEFS = {0: "not relevant", 1: "relevant", 2: "highly relevant"}
UNREACHABLE_URL = "http://127.0.0.1:9/docs.tsv"  # discard port: connection refused at once


class TitledDoc(NamedTuple):
    """A doc class with a title, like ir_datasets' BeirTitleDoc; TsvDocs fills fields in column order."""

    doc_id: str
    title: str
    text: str

    def default_text(self) -> str:
        return f"{self.title} {self.text}"


def _register(components: list[Any]) -> str:
    """Register under a fresh id: ir_datasets' registry refuses to overwrite an existing name."""
    dataset_id = f"sparsebench-test/{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(dataset_id, Dataset(*components))
    return dataset_id


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    docs = tmp_path / "docs.tsv"
    docs.write_text("d1\tAlpha title\talpha body text\nd2\t\tbeta body\nd3\tGamma\tgamma body\n")
    plain_docs = tmp_path / "plain_docs.tsv"
    plain_docs.write_text("p1\tplain one\np2\tplain two\n")
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\twhat is alpha\nq2\tgamma please\nq3\tnothing judged\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 0 d3 1\n")
    return {"docs": docs, "plain_docs": plain_docs, "queries": queries, "qrels": qrels}


def test_loads_docs_queries_qrels_from_native_files(files: dict[str, Path]) -> None:
    dataset_id = _register([
        TsvDocs(LocalDownload(files["docs"]), doc_cls=TitledDoc),
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])

    ds = load_irds(dataset_id)

    assert ds.id == f"irds:{dataset_id}"
    assert [(d.id, d.title, d.text) for d in ds.corpus] == [
        ("d1", "Alpha title", "alpha body text"),
        ("d2", "", "beta body"),
        ("d3", "Gamma", "gamma body"),
    ]
    assert [(q.id, q.text) for q in ds.queries] == [
        ("q1", "what is alpha"), ("q2", "gamma please"), ("q3", "nothing judged"),
    ]
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}
    assert [q.id for q in ds.judged_queries()] == ["q1", "q2"]
    assert ds.counts == {"documents": 3, "queries": 3, "qrels": 3}


def test_doc_without_title_field_and_prefixed_id(files: dict[str, Path]) -> None:
    dataset_id = _register([
        TsvDocs(LocalDownload(files["plain_docs"])),  # GenericDoc(doc_id, text)
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])

    ds = load_irds(f"irds:{dataset_id}")

    assert ds.id == f"irds:{dataset_id}"
    assert [(d.id, d.title, d.text) for d in ds.corpus] == [("p1", "", "plain one"), ("p2", "", "plain two")]


def test_unknown_id_suggests_close_registered_ids() -> None:
    with pytest.raises(DatasetError) as err:
        load_irds("beir/scifact/tset")
    message = str(err.value)
    assert "irds:beir/scifact/tset" in message
    assert "unknown ir_datasets id" in message
    assert "Did you mean: beir/scifact/test" in message


def test_missing_part_is_named(files: dict[str, Path]) -> None:
    dataset_id = _register([
        TsvDocs(LocalDownload(files["docs"]), doc_cls=TitledDoc),
        TsvQueries(LocalDownload(files["queries"])),
    ])
    with pytest.raises(DatasetError, match=r"has no qrels"):
        load_irds(dataset_id)


def test_failed_download_is_fast_and_actionable(files: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "irds_home"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))  # home_path() re-reads it, so the message names it
    dataset_id = _register([
        TsvDocs(Download([RequestsDownload(UNREACHABLE_URL)], cache_path=str(home / "t" / "docs.tsv"))),
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])

    tries_before = os.environ.get("IR_DATASETS_DL_TRIES")
    started = time.monotonic()
    with pytest.raises(DatasetError) as err:
        load_irds(dataset_id, offline=True)
    elapsed = time.monotonic() - started

    message = str(err.value)
    assert elapsed < 10
    assert f"irds:{dataset_id}: the docs are not in the ir_datasets cache {home}" in message
    assert "IR_DATASETS_HOME" in message
    assert UNREACHABLE_URL in message
    assert f"ir_datasets.load('{dataset_id}')" in message
    # the offline knobs are scoped to the call
    assert os.environ.get("IR_DATASETS_DL_TRIES") == tries_before


def test_real_id_with_empty_cache_fails_fast(tmp_path: Path) -> None:
    """beir/scifact/test needs a download. ir_datasets fixes its dataset paths when it is imported, so run in
    a fresh interpreter whose IR_DATASETS_HOME is an empty folder (which also keeps ~/.ir_datasets untouched)."""
    home = tmp_path / "empty_home"
    script = textwrap.dedent("""
        from sparsebench.datasets.irds import load_irds
        from sparsebench.errors import DatasetError
        try:
            load_irds("beir/scifact/test")
        except DatasetError as exc:
            print("DATASET_ERROR:", exc)
    """)
    env = {**os.environ, "IR_DATASETS_HOME": str(home), "SPARSEBENCH_OFFLINE": "1"}

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started

    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("DATASET_ERROR:")), "")
    assert line, result.stdout + result.stderr
    assert elapsed < 15  # interpreter start and ir_datasets import included
    assert f"irds:beir/scifact/test: the docs are not in the ir_datasets cache {home}" in line
    assert "ir_datasets.load('beir/scifact/test')" in line
    assert "copy that machine's IR_DATASETS_HOME folder" in line


def _md5_of(data: bytes) -> str:
    import hashlib

    return hashlib.md5(data).hexdigest()


GOOD_DOCS = b"d1\tAlpha title\talpha body text\nd2\t\tbeta body\n"


def test_cached_file_failing_md5_is_named_not_called_a_failed_download(
        files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape ir_datasets' DownloadConfig builds: a local mirror IR_DATASETS_HOME/downloads/<md5>, then the
    URL. A truncated copy there fails the md5 check; ir_datasets then tries the URL and re-raises only that
    connection error, which used to be reported as a failed download."""
    home = tmp_path / "irds_home"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    expected = _md5_of(GOOD_DOCS)
    drop_in = home / "downloads" / expected
    drop_in.parent.mkdir(parents=True)
    drop_in.write_bytes(GOOD_DOCS[:20])  # a partial copy
    dataset_id = _register([
        TsvDocs(Download([LocalDownload(drop_in), RequestsDownload(UNREACHABLE_URL)], expected_md5=expected,
                         cache_path=str(home / "t" / "docs.tsv")), doc_cls=TitledDoc),
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])

    with pytest.raises(DatasetError) as err:
        load_irds(dataset_id, offline=True)

    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"irds:{dataset_id}: the cached docs file {drop_in} fails its md5 check (expected {expected}, "
        f"found {_md5_of(GOOD_DOCS[:20])}): it is damaged or another file. Delete it so that ir_datasets "
        f"downloads it again from {UNREACHABLE_URL}, or download {UNREACHABLE_URL} on a connected machine and "
        f"put a copy whose md5 is {expected} at {drop_in}."
    )
    assert "downloading them failed" not in message
    # and the advice works: the right file at the drop-in path loads
    drop_in.write_bytes(GOOD_DOCS)
    assert [d.id for d in load_irds(dataset_id, offline=True).corpus] == ["d1", "d2"]


def test_file_at_cache_path_with_wrong_md5_is_named(files: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ir_datasets uses a file already at cache_path without checking it; when reading it then fails,
    the md5 mismatch is the reason given."""
    home = tmp_path / "irds_home"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    cached = home / "t" / "docs.tsv"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\xff\xfe not utf-8 and not a tsv")
    expected = _md5_of(GOOD_DOCS)
    dataset_id = _register([
        TsvDocs(Download([RequestsDownload(UNREACHABLE_URL)], expected_md5=expected, cache_path=str(cached)),
                doc_cls=TitledDoc),
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])

    with pytest.raises(DatasetError) as err:
        load_irds(dataset_id, offline=True)

    message = str(err.value)
    assert f"the cached docs file {cached} fails its md5 check (expected {expected}, found {_md5_of(cached.read_bytes())})" in message
    assert f"put a copy whose md5 is {expected} at {cached}" in message
    assert UNREACHABLE_URL in message and "\n" not in message


def test_missing_file_with_declared_md5_is_still_a_failed_download(files: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "irds_home"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    expected = _md5_of(GOOD_DOCS)
    dataset_id = _register([
        TsvDocs(Download([LocalDownload(home / "downloads" / expected), RequestsDownload(UNREACHABLE_URL)],
                         expected_md5=expected, cache_path=str(home / "t" / "docs.tsv"))),
        TsvQueries(LocalDownload(files["queries"])),
        TrecQrels(LocalDownload(files["qrels"]), QRELS_DEFS),
    ])
    with pytest.raises(DatasetError, match="downloading them failed"):
        load_irds(dataset_id, offline=True)


def test_a_real_id_from_its_native_cache_layout_equals_the_beir_folder(tmp_path: Path) -> None:
    """`irds:beir/scifact/test` served from ir_datasets' own cache: the source zip at the path its
    download config names (IR_DATASETS_HOME/beir/scifact/source.zip), from which ir_datasets
    builds its docstore itself. Our tiny collection stands in for SciFact (ir_datasets does not
    re-check the md5 of a file already in its cache). The same files as a BEIR folder must give
    the same checksum and the same scores."""
    import json
    import zipfile

    from .conftest import REPO, write_beir

    folder = write_beir(tmp_path / "scifact")
    cache = tmp_path / "irds_home" / "beir" / "scifact"
    cache.mkdir(parents=True)
    with zipfile.ZipFile(cache / "source.zip", "w") as z:
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
            z.write(folder / name, f"scifact/{name}")
    env = {**os.environ, "IR_DATASETS_HOME": str(tmp_path / "irds_home"), "SPARSEBENCH_OFFLINE": "1"}
    results = tmp_path / "results"
    for dataset in ("irds:beir/scifact/test", f"beir:{folder}"):
        run = subprocess.run([sys.executable, "-m", "sparsebench.cli", "run", "--suite", "retrieval", "--dataset", dataset,
                              "--method", "bm25", "--results", str(results), "--no-progress"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
    via_irds, via_beir = (json.loads(line) for line in (results / "retrieval.jsonl").read_text().splitlines())
    assert via_irds["dataset"]["id"] == "irds:beir/scifact/test" and via_beir["dataset"]["id"] == "beir:scifact"
    assert via_irds["dataset"]["checksum"] == via_beir["dataset"]["checksum"]
    assert via_irds["metrics"] == via_beir["metrics"]
    assert (cache / "docs.pklz4").exists()  # ir_datasets read the zip through its own machinery
