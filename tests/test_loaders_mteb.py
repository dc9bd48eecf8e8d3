"""load_mteb / load_mteb_task through mteb's own retrieval loading (AbsTaskRetrieval.load_data ->
RetrievalDatasetLoader -> datasets.load_dataset) on a tiny dataset folder laid out like the Hub's mteb/*
retrieval repos (corpus / queries / qrels configs declared in README.md). Nothing of ours is mocked."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sparsebench.datasets.mteb_loader import load_mteb, load_mteb_task
from sparsebench.errors import DatasetError

import mteb  # noqa: E402  (a hard dependency: a missing install must fail, not skip)
import datasets.config  # noqa: E402
import huggingface_hub.constants  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "alpha body"},
    {"_id": "d2", "title": "", "text": "beta body"},
    {"_id": "d3", "title": "Gamma", "text": "gamma body"},
]
QUERIES = [
    {"_id": "q1", "text": "what is alpha"},
    {"_id": "q2", "text": "gamma please"},
    {"_id": "q3", "text": "no judgments"},  # mteb's loader drops queries absent from the qrels
]
QRELS = [
    {"query-id": "q1", "corpus-id": "d1", "score": 2},
    {"query-id": "q1", "corpus-id": "d2", "score": 0},
    {"query-id": "q2", "corpus-id": "d3", "score": 1},
]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


def _configs_yaml(configs: dict[str, tuple[str, str]]) -> str:
    """README.md front matter declaring one HF config per (split, file), as the Hub's mteb repos do."""
    lines = ["---", "configs:"]
    for name, (split, path) in configs.items():
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {path}"]
    return "\n".join(lines + ["---", ""])


@pytest.fixture(autouse=True)
def _datasets_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # datasets reads this module global at call time; keeps the Arrow cache out of ~/.cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets_cache")


@pytest.fixture
def mono_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-mono"
    _write_jsonl(root / "corpus.jsonl", CORPUS)
    _write_jsonl(root / "queries.jsonl", QUERIES)
    _write_jsonl(root / "qrels" / "test.jsonl", QRELS)
    (root / "README.md").write_text(_configs_yaml({
        "corpus": ("corpus", "corpus.jsonl"),
        "queries": ("queries", "queries.jsonl"),
        "default": ("test", "qrels/test.jsonl"),  # mteb reads a monolingual task's qrels from "default"
    }))
    return root


@pytest.fixture
def multi_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-multi"
    configs: dict[str, tuple[str, str]] = {}
    for lang, word in (("en", "house"), ("de", "haus")):
        configs[f"{lang}-corpus"] = ("corpus", f"{lang}/corpus.jsonl")
        configs[f"{lang}-queries"] = ("queries", f"{lang}/queries.jsonl")
        configs[f"{lang}-qrels"] = ("dev", f"{lang}/qrels_dev.jsonl")
        _write_jsonl(root / lang / "corpus.jsonl", [{"_id": f"{lang}1", "title": "", "text": word}])
        _write_jsonl(root / lang / "queries.jsonl", [{"_id": f"{lang}-q", "text": f"{word}?"}])
        _write_jsonl(root / lang / "qrels_dev.jsonl", [{"query-id": f"{lang}-q", "corpus-id": f"{lang}1", "score": 1}])
    (root / "README.md").write_text(_configs_yaml(configs))
    return root


def _metadata(name: str, path: Path, eval_splits: list[str], eval_langs: Any) -> TaskMetadata:
    return TaskMetadata(
        name=name, description="tiny local retrieval task for tests", type="Retrieval", category="t2t",
        dataset={"path": str(path), "revision": "local"}, eval_splits=eval_splits, eval_langs=eval_langs,
        main_score="ndcg_at_10",
    )


def _mono_task(root: Path) -> type[AbsTaskRetrieval]:
    class TinyMonoRetrieval(AbsTaskRetrieval):
        metadata = _metadata("TinyMonoRetrieval", root, ["test"], ["eng-Latn"])
    return TinyMonoRetrieval


def _multi_task(root: Path) -> type[AbsTaskRetrieval]:
    class TinyMultiRetrieval(AbsTaskRetrieval):
        metadata = _metadata("TinyMultiRetrieval", root, ["dev"], {"en": ["eng-Latn"], "de": ["deu-Latn"]})
    return TinyMultiRetrieval


def test_local_task_class_loads_through_mteb(mono_dir: Path) -> None:
    ds = load_mteb_task(_mono_task(mono_dir))

    assert ds.id == "mteb:TinyMonoRetrieval"
    # title and body joined by mteb's own corpus code (what its models read); no title left to join again
    assert [(d.id, d.title, d.text) for d in ds.corpus] == [
        ("d1", "", "Alpha alpha body"), ("d2", "", "beta body"), ("d3", "", "Gamma gamma body"),
    ]
    assert sorted((q.id, q.text) for q in ds.queries) == [("q1", "what is alpha"), ("q2", "gamma please")]
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


def test_task_object_forced_offline_still_reads_local_folder(mono_dir: Path) -> None:
    flags_before = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    task = _mono_task(mono_dir)()
    ds = load_mteb_task(task, split="test", offline=True)

    assert ds.counts == {"documents": 3, "queries": 2, "qrels": 3}
    assert task.data_loaded
    # the offline switch is scoped to the call
    assert (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == flags_before


def test_multilingual_task_loads_only_the_chosen_subset(multi_dir: Path) -> None:
    task = _multi_task(multi_dir)()
    ds = load_mteb_task(task, split="dev", subset="de")

    assert [(d.id, d.text) for d in ds.corpus] == [("de1", "haus")]
    assert [(q.id, q.text) for q in ds.queries] == [("de-q", "haus?")]
    assert ds.qrels == {"de-q": {"de1": 1}}
    assert list(task.dataset) == ["de"]  # the English subset was never read


def test_multilingual_task_requires_a_known_subset(multi_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"has 2 subsets; choose one as mteb:TinyMultiRetrieval#SPLIT:SUBSET \(subsets: en, de\)\."):
        load_mteb_task(_multi_task(multi_dir), split="dev")
    with pytest.raises(DatasetError, match=r"has no subset 'dee'\. Did you mean: de\?"):
        load_mteb_task(_multi_task(multi_dir), split="dev", subset="dee")


def test_unknown_split_lists_eval_splits(mono_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"has no split 'dev'; its evaluation splits are \['test'\]"):
        load_mteb_task(_mono_task(mono_dir), split="dev")


def test_unknown_task_suggests_close_names() -> None:
    with pytest.raises(DatasetError) as err:
        load_mteb("SciFactt")
    assert "mteb:SciFactt: unknown MTEB task. Did you mean: SciFact" in str(err.value)


def test_non_retrieval_task_names_its_type() -> None:
    with pytest.raises(DatasetError) as err:
        load_mteb("Banking77Classification")
    assert "mteb:Banking77Classification is a Classification task" in str(err.value)
    assert "not a retrieval task" in str(err.value)


def test_real_task_forced_offline_is_fast_and_actionable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    revision = mteb.get_task("SciFact").metadata.dataset["revision"]

    started = time.monotonic()
    with pytest.raises(DatasetError) as err:
        load_mteb("SciFact", offline=True)
    assert time.monotonic() - started < 5

    message = str(err.value)
    assert f"mteb:SciFact: dataset mteb/scifact (revision {revision}, subset default, split test)" in message
    assert f"HF_DATASETS_CACHE={tmp_path / 'hf_datasets_cache'}" in message
    assert "mteb.get_task('SciFact', eval_splits=['test']).load_data()" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_unreachable_hub_switches_to_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No offline setting at all: the TCP probe of the (here unreachable) endpoint must avoid ~25 s of retries."""
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                "HF_HUB_OFFLINE", "SPARSEBENCH_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    started = time.monotonic()
    with pytest.raises(DatasetError, match=r"mteb:SciFact: dataset mteb/scifact .* not used \(offline mode\)"):
        load_mteb("SciFact")
    assert time.monotonic() - started < 8
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored after the call


def test_real_task_with_empty_hf_home_and_hub_offline(tmp_path: Path) -> None:
    """The documented offline setup: HF_HOME (an empty folder here) and HF_HUB_OFFLINE=1 set before import."""
    home = tmp_path / "hf_home"
    script = textwrap.dedent("""
        import time
        import mteb  # imported first so that the timing below is the load alone
        from sparsebench.datasets.mteb_loader import load_mteb
        from sparsebench.errors import DatasetError
        started = time.monotonic()
        try:
            load_mteb("SciFact")
        except DatasetError as exc:
            print("LOAD_SECONDS:", time.monotonic() - started)
            print("DATASET_ERROR:", exc)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_DATASETS_CACHE", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1")

    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)

    lines = dict(ln.split(": ", 1) for ln in result.stdout.splitlines() if ln.startswith(("LOAD_", "DATASET_")))
    assert "DATASET_ERROR" in lines, result.stdout + result.stderr[-2000:]
    assert float(lines["LOAD_SECONDS"]) < 5
    message = lines["DATASET_ERROR"]
    assert "mteb:SciFact: dataset mteb/scifact (revision " in message
    assert f"HF_HOME={home};" in message
    assert f"HF_DATASETS_CACHE={home / 'datasets'}" in message
    assert "not used (offline mode)" in message
    assert "python -c \"import mteb; mteb.get_task('SciFact', eval_splits=['test']).load_data()\"" in message


# --- Hub snapshots, Arrow caches, subsets, MTEB's scores, the optional extra (issue 6) -------------------------

from sparsebench.cli import main  # noqa: E402
from .conftest import records_in  # noqa: E402
from .mteb_fixtures import (  # noqa: E402
    OTHER_REVISION, REVISION, HubRepo, SubsetRows, register_task, task_class, write_arrow_cache, write_hub_snapshot,
    write_repo_files,
)

HUB_REPO_ID = "mteb/sparsebench-tiny"
# q1 is also a document id (as in ArguAna/Quora) and shares every word with q1: mteb's tasks that set
# ignore_identical_ids drop it from q1's hits before scoring
HUB_ROWS = SubsetRows(
    corpus=[
        {"_id": "d1", "title": "Alpha", "text": "alpha body about the first letter"},
        {"_id": "d2", "title": "", "text": "beta body about the second letter"},
        {"_id": "d3", "title": "Gamma", "text": "gamma ray burst"},
        {"_id": "d4", "title": "Letters", "text": "alpha beta gamma delta"},
        {"_id": "q1", "title": "What is alpha", "text": "what is alpha exactly"},
    ],
    queries=[
        {"_id": "q1", "text": "what is alpha exactly"},
        {"_id": "q2", "text": "gamma burst"},
        {"_id": "q3", "text": "second letter beta"},
    ],
    qrels=[
        {"query-id": "q1", "corpus-id": "d1", "score": 2},
        {"query-id": "q1", "corpus-id": "d4", "score": 1},
        {"query-id": "q2", "corpus-id": "d3", "score": 1},
        {"query-id": "q3", "corpus-id": "d2", "score": 1},
        {"query-id": "q3", "corpus-id": "d4", "score": 0},
    ],
)


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tmp HF_HOME: huggingface_hub and datasets read these module globals at call time."""
    home = tmp_path / "hf_home"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    return home


def _bench(dataset: str, results: Path, *extra: str) -> int:
    return main(["run", "--suite", "retrieval", "--dataset", dataset, "--method", "bm25", "--in-process",
                 "--results", str(results), "--no-progress", *extra])


def _error_lines(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    """The CLI's error lines (it logs bad input at ERROR and exits 2) that mention `word`."""
    return [ln for r in caplog.records if r.levelno >= logging.ERROR for ln in r.getMessage().splitlines() if word in ln]


def _only_record(results: Path) -> dict[str, Any]:
    [rec] = records_in(results / "retrieval.jsonl")
    assert rec["status"] == "ok", rec.get("error")
    return rec


def test_hub_snapshot_and_arrow_cache_load_offline_to_the_same_dataset_and_scores(
        hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = HubRepo(HUB_REPO_ID, REVISION, {"default": HUB_ROWS})
    register_task(monkeypatch, task_class("SparsebenchTinyHub", HUB_REPO_ID, REVISION, ["eng-Latn"],
                                          ignore_identical_ids=True))
    snapshot = write_hub_snapshot(hf_home / "hub", repo)

    # 1. only the Hub snapshot (what `hf download` leaves); datasets alone refuses it offline
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="Couldn't reach"):
        datasets.load_dataset(HUB_REPO_ID, "corpus", revision=REVISION)
    assert _bench("mteb:SparsebenchTinyHub", tmp_path / "from-snapshot") == 0
    from_snapshot = _only_record(tmp_path / "from-snapshot")
    from_snapshot_ds = load_mteb("SparsebenchTinyHub", offline=True)

    # 2. only the Arrow cache (what an online `load_dataset` leaves), in a fresh HF_HOME
    arrow_home = tmp_path / "hf_home_arrow"
    write_arrow_cache(arrow_home / "datasets", repo, snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(arrow_home / "hub"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", arrow_home / "datasets")
    assert _bench("mteb:SparsebenchTinyHub", tmp_path / "from-arrow") == 0
    from_arrow = _only_record(tmp_path / "from-arrow")
    from_arrow_ds = load_mteb("SparsebenchTinyHub", offline=True)

    assert from_snapshot_ds.checksum == from_arrow_ds.checksum == from_snapshot["dataset"]["checksum"]
    assert from_arrow["dataset"]["checksum"] == from_snapshot["dataset"]["checksum"]
    assert from_arrow["metrics"] == from_snapshot["metrics"]
    source = {"revision": REVISION, "subset": "default", "hf_path": HUB_REPO_ID}
    assert from_snapshot["dataset"]["source"] == from_arrow["dataset"]["source"] == source
    assert dict(from_snapshot_ds.source_info) == source
    assert from_snapshot_ds.ignore_identical_ids
    assert from_snapshot_ds.counts == {"documents": 5, "queries": 3, "qrels": 5}


def test_snapshot_of_another_revision_is_refused_naming_both(
        hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    write_hub_snapshot(hf_home / "hub", HubRepo(HUB_REPO_ID, OTHER_REVISION, {"default": HUB_ROWS}))
    register_task(monkeypatch, task_class("SparsebenchTinyHub", HUB_REPO_ID, REVISION, ["eng-Latn"]))

    assert _bench("mteb:SparsebenchTinyHub", tmp_path / "results") == 2
    [line] = _error_lines(caplog, "SparsebenchTinyHub")
    assert f"is revision {OTHER_REVISION}, but the task pins revision {REVISION}" in line
    assert f"hf download {HUB_REPO_ID} --repo-type dataset --revision {REVISION}" in line
    assert not (tmp_path / "results" / "retrieval.jsonl").exists()


def test_arrow_cache_of_another_revision_is_refused(hf_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    other = HubRepo(HUB_REPO_ID, OTHER_REVISION, {"default": HUB_ROWS})
    write_repo_files(other, tmp_path / "repo-files")
    write_arrow_cache(hf_home / "datasets", other, tmp_path / "repo-files")
    register_task(monkeypatch, task_class("SparsebenchTinyHub", HUB_REPO_ID, REVISION, ["eng-Latn"]))

    with pytest.raises(DatasetError, match=rf"is revision {OTHER_REVISION}, but the task pins revision {REVISION}"):
        load_mteb("SparsebenchTinyHub", offline=True)


def test_arrow_cache_with_a_newer_other_revision_is_refused(hf_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """datasets' offline cache takes the newest copy whatever its revision: what was read is checked."""
    for revision in (REVISION, OTHER_REVISION):  # the other one is prepared last, so it is the newest
        repo = HubRepo(HUB_REPO_ID, revision, {"default": HUB_ROWS})
        write_repo_files(repo, tmp_path / revision)
        write_arrow_cache(hf_home / "datasets", repo, tmp_path / revision)
    register_task(monkeypatch, task_class("SparsebenchTinyHub", HUB_REPO_ID, REVISION, ["eng-Latn"]))

    with pytest.raises(DatasetError, match=rf"is revision {OTHER_REVISION}, but the task pins revision {REVISION}"):
        load_mteb("SparsebenchTinyHub", offline=True)


def _multi_repo() -> HubRepo:
    def rows(lang: str, word: str) -> SubsetRows:
        return SubsetRows(corpus=[{"_id": f"{lang}1", "title": "", "text": word},
                                  {"_id": f"{lang}2", "title": "", "text": "other"}],
                          queries=[{"_id": f"{lang}-q", "text": f"{word}?"}],
                          qrels=[{"query-id": f"{lang}-q", "corpus-id": f"{lang}1", "score": 1}], split="dev")
    return HubRepo("mteb/sparsebench-tiny-multi", REVISION, {"en": rows("en", "house"), "de": rows("de", "haus")})


def test_multi_subset_task_selects_subset_from_the_dataset_id(
        hf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    repo = _multi_repo()
    write_hub_snapshot(hf_home / "hub", repo)
    register_task(monkeypatch, task_class("SparsebenchTinyMulti", repo.repo_id, REVISION,
                                          {"en": ["eng-Latn"], "de": ["deu-Latn"]}, eval_splits=["dev"]))

    assert _bench("mteb:SparsebenchTinyMulti#dev:de", tmp_path / "results") == 0
    rec = _only_record(tmp_path / "results")
    assert rec["dataset"]["source"] == {"revision": REVISION, "subset": "de", "hf_path": repo.repo_id}
    assert rec["dataset"]["counts"] == {"documents": 2, "queries": 1, "qrels": 1}
    ds = load_mteb("SparsebenchTinyMulti", "dev", "de", offline=True)
    assert [(d.id, d.text) for d in ds.corpus] == [("de1", "haus"), ("de2", "other")]

    caplog.clear()
    assert _bench("mteb:SparsebenchTinyMulti#dev", tmp_path / "results-none") == 2
    [line] = _error_lines(caplog, "SparsebenchTinyMulti")
    assert "has 2 subsets; choose one as mteb:SparsebenchTinyMulti#SPLIT:SUBSET (subsets: en, de)." in line


def test_ndcg_equals_mtebs_own_retrieval_evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same run, scored by the suite and by mteb's RetrievalEvaluator (identical ids ignored, titles joined by mteb)."""
    from mteb._evaluators import RetrievalEvaluator
    from mteb.timing import TimingStack

    folder = tmp_path / "tiny-ids"
    # q4 is judged, but only with grade 0: mteb scores it (0), trec_eval's convention would drop it.
    rows = SubsetRows(corpus=HUB_ROWS.corpus, queries=[*HUB_ROWS.queries, {"_id": "q4", "text": "delta letters"}],
                      qrels=[*HUB_ROWS.qrels, {"query-id": "q4", "corpus-id": "d4", "score": 0}])
    write_repo_files(HubRepo(HUB_REPO_ID, "local", {"default": rows}), folder)
    cls = task_class("SparsebenchTinyIds", str(folder), "local", ["eng-Latn"], ignore_identical_ids=True)
    register_task(monkeypatch, cls)

    assert _bench("mteb:SparsebenchTinyIds", tmp_path / "results", "--save-runs", str(tmp_path / "runs")) == 0
    rec = _only_record(tmp_path / "results")
    [run_file] = (tmp_path / "runs").glob("*.trec")
    results: dict[str, dict[str, float]] = {}
    for line in run_file.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        results.setdefault(qid, {})[doc] = float(score)
    # The run file already leaves out the identical id (so trec_eval on it agrees with the record);
    # BM25 retrieves it (the query is that document's text): put it back, on top, for mteb to ignore.
    assert "q1" not in results["q1"]
    results["q1"]["q1"] = max(results["q1"].values()) + 1.0

    task = cls()
    task.load_data()
    split = task.dataset["default"]["test"]
    evaluator = RetrievalEvaluator(split["corpus"], split["queries"], task_metadata=task.metadata, hf_split="test",
                                   hf_subset="default", top_k=100, timer=TimingStack())
    as_is = evaluator.evaluate(split["relevant_docs"], copy.deepcopy(results), [10], ignore_identical_ids=False)
    scores = evaluator.evaluate(split["relevant_docs"], results, [10], ignore_identical_ids=task.ignore_identical_ids)
    per_query = [s["ndcg_cut_10"] for s in scores.all_scores.values()]

    ours = rec["metrics"]["nDCG@10"]["value"]
    assert len(per_query) == rec["metrics"]["nDCG@10"]["n"] == 4
    assert abs(ours - sum(per_query) / len(per_query)) < 1e-9
    assert round(ours, 5) == scores.ndcg["NDCG@10"]  # mteb reports its mean rounded to 5 places
    assert as_is.ndcg["NDCG@10"] != scores.ndcg["NDCG@10"]  # the identical id changes mteb's score


def test_corpus_text_is_mtebs_joined_text(tmp_path: Path) -> None:
    from mteb._create_dataloaders import _retrieval_texts
    from mteb.types import PromptType

    folder = tmp_path / "tiny-ids"
    # q4 is judged, but only with grade 0: mteb scores it (0), trec_eval's convention would drop it.
    rows = SubsetRows(corpus=HUB_ROWS.corpus, queries=[*HUB_ROWS.queries, {"_id": "q4", "text": "delta letters"}],
                      qrels=[*HUB_ROWS.qrels, {"query-id": "q4", "corpus-id": "d4", "score": 0}])
    write_repo_files(HubRepo(HUB_REPO_ID, "local", {"default": rows}), folder)
    task = task_class("SparsebenchTinyIds", str(folder), "local", ["eng-Latn"])()
    ds = load_mteb_task(task)

    corpus = task.dataset["default"]["test"]["corpus"]
    assert [d.text for d in ds.corpus] == _retrieval_texts(corpus, PromptType.document)
    assert [d.full_text for d in ds.corpus] == [d.text for d in ds.corpus]  # no encoder joins a title again
    assert ds.corpus[0].text == "Alpha alpha body about the first letter"


def test_missing_mteb_extra_is_one_line_on_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "mteb", None)  # `import mteb` now raises ImportError, as when not installed

    assert _bench("mteb:SciFact", tmp_path / "results") == 2
    lines = _error_lines(caplog, "mteb")
    assert len(lines) == 1, lines
    assert "mteb:SciFact: loading MTEB tasks needs the optional mteb extra: pip install 'sparsebench[mteb]'" in lines[0]
    assert not (tmp_path / "results" / "retrieval.jsonl").exists()


def test_snapshot_load_leaves_the_task_pointing_at_its_hub_repo(hf_home: Path) -> None:
    """The snapshot folder is given to this load only: the task (and its class, shared by every instance)
    still names the Hub repo and revision afterwards."""
    write_hub_snapshot(hf_home / "hub", HubRepo(HUB_REPO_ID, REVISION, {"default": HUB_ROWS}))
    cls = task_class("SparsebenchTinyHub", HUB_REPO_ID, REVISION, ["eng-Latn"])
    task = cls()

    ds = load_mteb_task(task, offline=True)

    assert ds.counts["documents"] == 5 and task.data_loaded
    assert task.metadata.dataset == cls.metadata.dataset == {"path": HUB_REPO_ID, "revision": REVISION}


def test_real_task_flags_identical_ids_as_mteb_does() -> None:
    """mteb 2.x keeps the convention as a task attribute (ArguAna sets it, SciFact does not)."""
    assert mteb.get_task("ArguAna").ignore_identical_ids is True
    assert mteb.get_task("SciFact").ignore_identical_ids is False


def test_missing_mteb_extra_in_a_fresh_process(tmp_path: Path) -> None:
    """As on an install without the extra: mteb unimportable before sparsebench is imported at all."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["mteb"] = None  # `import mteb` raises ImportError from here on
        from sparsebench.cli import main
        sys.exit(main(["run", "--suite", "retrieval", "--dataset", "mteb:SciFact", "--method", "bm25",
                       "--in-process", "--results", {str(tmp_path / "results")!r}, "--no-progress"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)

    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if "mteb" in ln]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "mteb:SciFact: loading MTEB tasks needs the optional mteb extra: pip install 'sparsebench[mteb]'" in lines[0]
