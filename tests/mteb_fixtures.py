"""Tiny MTEB retrieval tasks in the native on-disk formats, built in tmp dirs at test time.

Two layouts of the same Hub dataset repo:

- a Hub snapshot, as `hf download --repo-type dataset` leaves it: `HF_HUB_CACHE/datasets--ns--name/`
  with `blobs/`, `refs/main` and `snapshots/<revision>/` whose files link to the blobs. The repo is laid
  out as mteb's `push_dataset_to_hub` / `datasets.push_to_hub` write it: one parquet file per
  config and split (`corpus/test-00000-of-00001.parquet`), configs declared in README.md.
- a `datasets` Arrow cache, as `datasets.load_dataset(repo, config, revision=...)` leaves it online:
  `HF_DATASETS_CACHE/ns___name/<config>/0.0.0/<revision>/` (the hash is the commit).
  It is prepared here by the same packaged builder class `datasets` picks for the repo, given the
  repo id and commit the Hub module factory would give it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pytest
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

Rows = list[dict[str, Any]]
REVISION = "0123456789abcdef0123456789abcdef01234567"
OTHER_REVISION = "fedcba9876543210fedcba9876543210fedcba98"


@dataclass(frozen=True)
class SubsetRows:
    """corpus / queries / qrels rows of one HF subset, in the Hub column names (`_id`, `query-id`, ...)."""

    corpus: Rows
    queries: Rows
    qrels: Rows
    split: str = "test"


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    revision: str
    # subset name -> rows; the single key "default" makes a monolingual repo (configs corpus/queries/default)
    subsets: Mapping[str, SubsetRows] = field(default_factory=dict)


def _config_names(subset: str) -> dict[str, str]:
    """mteb's RetrievalDatasetLoader config names: `corpus`/`queries`/`default`, or `<subset>-corpus`/..."""
    if subset == "default":
        return {"corpus": "corpus", "queries": "queries", "qrels": "default"}
    return {kind: f"{subset}-{kind}" for kind in ("corpus", "queries", "qrels")}


def _readme(configs: Mapping[str, str]) -> str:
    """Dataset card front matter: config name -> split (one parquet shard each)."""
    lines = ["---", "configs:"]
    for name, split in configs.items():
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {name}/{split}-*"]
    return "\n".join(lines + ["---", "", "# tiny retrieval task for sparsebench tests", ""])


def write_repo_files(repo: HubRepo, staging: Path) -> dict[str, Path]:
    """Write the repo's files under `staging` (a dataset folder mteb can also load as a local path);
    relative repo path -> file."""
    files: dict[str, Path] = {}
    configs: dict[str, str] = {}
    for subset, rows in repo.subsets.items():
        names = _config_names(subset)
        # mteb's push_dataset_to_hub writes every config under the evaluation split's name
        split = rows.split
        for kind, data in (("corpus", rows.corpus), ("queries", rows.queries), ("qrels", rows.qrels)):
            rel = f"{names[kind]}/{split}-00000-of-00001.parquet"
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(data).to_parquet(str(staging / rel))
            files[rel] = staging / rel
            configs[names[kind]] = split
    (staging / "README.md").write_text(_readme(configs))
    files["README.md"] = staging / "README.md"
    return files


def write_hub_snapshot(hub_cache: Path, repo: HubRepo) -> Path:
    """The repo at `repo.revision` in huggingface_hub's cache layout; returns the snapshot folder."""
    repo_dir = hub_cache / f"datasets--{repo.repo_id.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / repo.revision
    staging = repo_dir / ".staging"
    for rel, src in write_repo_files(repo, staging).items():
        data = src.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    shutil.rmtree(staging)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(repo.revision)
    return snapshot


def write_arrow_cache(datasets_cache: Path, repo: HubRepo, snapshot: Path) -> None:
    """Prepare every config of the repo into the `datasets` cache as an online load_dataset would."""
    namespace, name = repo.repo_id.split("/")
    staging = datasets_cache / ".staging"
    for subset in repo.subsets:
        for config in _config_names(subset).values():
            local = datasets.load_dataset_builder(str(snapshot), config, cache_dir=str(staging / ".local"))
            # the builder refuses a repo_id whose files are not hf:// URLs, so it is prepared without one and
            # its folder moved to the name the Hub factory derives from repo_id (`ns___name`)
            builder = type(local)(cache_dir=str(staging), config_name=config, hash=repo.revision,
                                  dataset_name=name, base_path=str(snapshot))
            builder.download_and_prepare()
    target = datasets_cache / f"{namespace}___{name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staging / name, target, dirs_exist_ok=True)
    shutil.rmtree(staging)


def task_class(name: str, repo_id: str, revision: str, eval_langs: Sequence[str] | Mapping[str, Sequence[str]],
               *, eval_splits: Sequence[str] = ("test",), ignore_identical_ids: bool = False,
               ) -> type[AbsTaskRetrieval]:
    """An mteb retrieval task (as mteb's own task modules declare them) pinned to `repo_id@revision`."""
    metadata = TaskMetadata(
        name=name, description="tiny retrieval task for sparsebench tests", type="Retrieval", category="t2t",
        dataset={"path": repo_id, "revision": revision}, eval_splits=list(eval_splits),
        eval_langs=eval_langs if isinstance(eval_langs, Mapping) else list(eval_langs), main_score="ndcg_at_10",
    )
    return type(name, (AbsTaskRetrieval,), {"metadata": metadata, "ignore_identical_ids": ignore_identical_ids})


def register_task(monkeypatch: pytest.MonkeyPatch, cls: type[AbsTaskRetrieval]) -> None:
    """Make `mteb.get_task(name)` find the class, for the test only.

    mteb 2.x has no public registration for tasks outside its package; its registry is the
    name -> class dict that `mteb.get_task` reads.
    """
    registry = sys.modules["mteb.get_tasks"]._TASKS_REGISTRY
    monkeypatch.setitem(registry, cls.metadata.name, cls)
