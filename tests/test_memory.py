"""peak_rss_mb is the method's own: the same method on the same data costs the same memory,
whichever loader the data came through; the whole process's peak is a second figure."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from sparsebench.cli import main

from .conftest import DOCS, EXTRA_QRELS, QUERIES, records_in


_PEAK_PROBE = """
import json, numpy as np
from sparsebench import memory
base = memory.start()
block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
peak, note = memory.method_peak_mib(base)
del block
again, _ = memory.method_peak_mib(memory.start())
print(json.dumps([peak, note, again]))
"""


def test_the_method_peak_counts_what_is_allocated_after_the_baseline() -> None:
    # In a process of its own, as in a worker: inside the pytest process another test's leftover
    # thread freeing memory between the reset and the read lowers the RSS under the baseline and
    # the peak reads 0, which says nothing about the measurement.
    out = subprocess.run([sys.executable, "-c", _PEAK_PROBE], capture_output=True, text=True, check=True)
    peak, note, again = json.loads(out.stdout.strip().splitlines()[-1])
    assert note == "" and 60 < peak < 100
    assert again < 10  # the reset forgets the earlier peak


def register_irds_copy(tmp_path: Path) -> str:
    """The tiny collection in ir_datasets' own formats, registered in its registry."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    from .test_loaders_irds import TitledDoc

    docs, queries, qrels = tmp_path / "docs.tsv", tmp_path / "queries.tsv", tmp_path / "qrels.txt"
    docs.write_text("".join(f"{d}\t{t}\t{x}\n" for d, (t, x) in DOCS.items()))
    queries.write_text("".join(f"{q}\t{x}\n" for q, (x, _) in QUERIES.items()))
    judged = {q: {d: 1, **EXTRA_QRELS.get(q, {})} for q, (_, d) in QUERIES.items()}
    qrels.write_text("".join(f"{q} 0 {d} {g}\n" for q, row in judged.items() for d, g in row.items()))
    dataset_id = f"sparsebench-test/{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(dataset_id, Dataset(
        TsvDocs(LocalDownload(docs), doc_cls=TitledDoc), TsvQueries(LocalDownload(queries)),
        TrecQrels(LocalDownload(qrels), {0: "no", 1: "yes", 2: "very"})))
    return dataset_id


def test_bm25_costs_the_same_memory_via_beir_and_via_ir_datasets(tiny_beir, tmp_path) -> None:
    # Isolated workers (the default): each reads the parent's snapshot of the data, so a dataset
    # registered in this process at run time works there too, and no loader is charged to BM25.
    dataset_id = register_irds_copy(tmp_path)
    results = tmp_path / "results"
    for source in (f"beir:{tiny_beir}", f"irds:{dataset_id}"):
        assert main(["run", "--suite", "retrieval", "--dataset", source, "--results", str(results), "--method", "bm25",
                     "--no-progress"]) == 0
    via_beir, via_irds = records_in(results / "retrieval.jsonl")
    assert via_beir["dataset"]["checksum"] == via_irds["dataset"]["checksum"]
    assert via_beir["metrics"] == via_irds["metrics"]
    own = [r["costs"]["peak_rss_mb"] for r in (via_beir, via_irds)]
    assert all("note" not in c for c in own)
    assert abs(own[0]["value"] - own[1]["value"]) < 10
    for r in (via_beir, via_irds):
        assert 0 < r["costs"]["peak_rss_mb"]["value"] < r["costs"]["process_peak_rss_mb"]["value"]


def test_bm25_costs_the_same_memory_via_beir_and_via_mteb(tmp_path, monkeypatch) -> None:
    # The acceptance case of the issue: the mteb loader (mteb, datasets, polars: hundreds of MiB)
    # runs in the parent only; the worker charges BM25 the same memory as for the BEIR folder.
    import json

    from .mteb_fixtures import HubRepo, SubsetRows, register_task, task_class, write_repo_files

    docs = {f"d{i}": f"passage {i} about " + " ".join(f"w{(i * j) % 31}" for j in range(12)) for i in range(40)}
    queries = {"q1": "w3 w7 passage", "q2": "w11 w5", "q3": "about w2 w9"}
    qrels = {"q1": {"d3": 1}, "q2": {"d5": 2, "d6": 1}, "q3": {"d9": 1}}
    rows = SubsetRows(
        corpus=[{"_id": d, "title": "", "text": t} for d, t in docs.items()],
        queries=[{"_id": q, "text": t} for q, t in queries.items()],
        qrels=[{"query-id": q, "corpus-id": d, "score": g} for q, row in qrels.items() for d, g in row.items()],
    )
    folder = tmp_path / "tiny-mteb"
    write_repo_files(HubRepo("mteb/sparsebench-memory", "local", {"default": rows}), folder)
    register_task(monkeypatch, task_class("SparsebenchMemory", str(folder), "local", ["eng-Latn"]))
    beir = tmp_path / "tiny-beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (beir / "qrels" / "test.tsv").write_text("".join(f"{q}\t{d}\t{g}\n" for q, row in qrels.items() for d, g in row.items()))

    results = tmp_path / "results"
    for source in (f"beir:{beir}", "mteb:SparsebenchMemory"):
        assert main(["run", "--suite", "retrieval", "--dataset", source, "--results", str(results), "--method", "bm25",
                     "--no-progress"]) == 0
    via_beir, via_mteb = records_in(results / "retrieval.jsonl")
    assert via_beir["dataset"]["counts"] == via_mteb["dataset"]["counts"]  # the same data (the checksums differ
    # only by mteb's scoring conventions, which do not matter here: every query has a positive judgment)
    assert via_beir["metrics"] == via_mteb["metrics"]
    a, b = (r["costs"]["peak_rss_mb"]["value"] for r in (via_beir, via_mteb))
    assert abs(a - b) < 10, (a, b)


def test_a_snapshot_left_by_another_version_or_damaged_is_written_again(tiny_beir, tmp_path, monkeypatch) -> None:
    from sparsebench.datasets import snapshot
    from sparsebench.datasets.beir import load_beir

    cache = tmp_path / "cache"
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(cache))
    ds = load_beir(tiny_beir)
    path = snapshot.snapshot_path(cache, ds)
    assert f"v{snapshot.FORMAT_VERSION}" in path.parts  # another format version never shares the file
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "sparsebench-dataset-snapshot/1", "id": "x"}\n')  # an older layout, same checksum
    results = tmp_path / "results"
    assert main(["run", "--suite", "retrieval", "--dataset", f"beir:{tiny_beir}", "--results", str(results),
                 "--method", "bm25", "--no-progress"]) == 0
    [rec] = records_in(results / "retrieval.jsonl")
    assert rec["status"] == "ok" and snapshot.read_snapshot(path).checksum == ds.checksum
