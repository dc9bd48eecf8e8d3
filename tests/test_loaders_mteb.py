"""load_mteb / load_mteb_task through mteb's own retrieval loading (AbsTaskRetrieval.load_data ->
RetrievalDatasetLoader -> datasets.load_dataset) on a tiny dataset folder laid out like the Hub's mteb/*
retrieval repos (corpus / queries / qrels configs declared in README.md). Nothing of ours is mocked."""

from __future__ import annotations

import json
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
    assert [(d.id, d.title, d.text) for d in ds.corpus] == [
        ("d1", "Alpha", "alpha body"), ("d2", "", "beta body"), ("d3", "Gamma", "gamma body"),
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
    with pytest.raises(DatasetError, match=r"has 2 subsets; choose one \(e\.g\. en, de\)"):
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
