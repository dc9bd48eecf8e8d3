"""Load an MTEB retrieval task (`mteb:<TaskName>`) into a RetrievalDataset, through mteb's own loading.

mteb 2.x retrieval tasks (`AbsTaskRetrieval`) load with `task.load_data()`, which fills
`task.dataset[hf_subset][split]` with `corpus` (HF Dataset: id, text, optional title), `queries`
(id, text, optional instruction) and `relevant_docs` ({query_id: {doc_id: score}}); the data comes from
the Hugging Face Hub dataset named in `task.metadata.dataset` (`path`, `revision`) via `datasets`.

Offline: with no network and no HF_HUB_OFFLINE, huggingface_hub retries each request with back-off
(about 25 s measured here) before failing. HF_HUB_OFFLINE is read by huggingface_hub and datasets only
when they are imported, so the loader instead switches their module-level flags for the duration of the
load when offline is asked for (`offline=True`, SPARSEBENCH_OFFLINE=1 or HF_HUB_OFFLINE=1) or when a
2-second TCP probe of the Hub endpoint fails. Offline, a cached dataset still loads; a missing one fails
at once. The flag switch is process-wide while it lasts: do not load tasks from several threads.

Offline, `datasets` never looks at the Hub cache (`HF_HUB_CACHE/datasets--ns--name/snapshots/<rev>/`, what
`hf download` leaves): it refuses at once and reads only its own Arrow cache (`HF_DATASETS_CACHE`), and
there it takes the most recent copy whatever its revision. So offline the loader first looks for a Hub
snapshot of the task's pinned revision and, if there is one, lets mteb load that folder as a local
dataset (same configs, same files, same RetrievalDatasetLoader); otherwise it lets mteb load from the
Arrow cache and checks that what was read is the pinned revision. Another revision is refused.

mteb is an optional extra (`sparsebench[mteb]`): every mteb import goes through `_import_mteb`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import os
import re
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sparsebench.datasets.types import Document, Query, RetrievalDataset
from sparsebench.errors import DatasetError, exception_chain, offline_requested

if TYPE_CHECKING:
    from mteb import AbsTask

logger = logging.getLogger(__name__)

ID_PREFIX = "mteb:"
_PROBE_TIMEOUT_S = 2.0
_MAX_LISTED = 10
_EXTRA_HINT = "pip install 'sparsebench[mteb]'"
_COMMIT = re.compile(r"[0-9a-f]{40}")
# mteb.get_task's KeyError text: "KeyError: 'X' not found. Did you mean: 'Y'?"
_MTEB_SUGGESTION = re.compile(r"Did you mean: '([^']+)'")


def _import_mteb(module: str = "mteb", *, what: str = "mteb") -> ModuleType:
    """Import mteb (or one of its modules); a missing optional extra is bad input, said in one line.

    `what` names the dataset id in the message (`mteb:SciFact`).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DatasetError(
            f"{what}: loading MTEB tasks needs the optional mteb extra: {_EXTRA_HINT} ({exc})"
        ) from None


def load_mteb(task_name: str, split: str = "test", subset: str | None = None, *,
              offline: bool | None = None) -> RetrievalDataset:
    """Load split `split` of the MTEB retrieval task `task_name` (e.g. `SciFact`; an `mteb:` prefix is accepted).

    `subset` is the HF subset (a language for multilingual tasks); it may be left out when the task has
    only one. `offline=None` means: offline when asked for by the environment or when the Hub is unreachable.
    """
    task = _get_task(task_name.removeprefix(ID_PREFIX))
    return load_mteb_task(task, split=split, subset=subset, offline=offline)


def load_mteb_task(task: AbsTask | type[AbsTask], split: str = "test", subset: str | None = None, *,
                   offline: bool | None = None) -> RetrievalDataset:
    """Load one split of an mteb task object or class; `load_mteb` resolves a name and calls this.

    A task object that has not loaded its data yet is narrowed to `split` and `subset` first (mteb would
    otherwise download every split and language), so it is modified in place.
    """
    if isinstance(task, type):
        task = task()
    _require_text_retrieval(task)
    _require_split(task, split)
    subset = _pick_subset(task, subset)
    split_data = _load_split(task, split, subset, offline)
    return _to_dataset(task, subset, split_data)


def _get_task(name: str) -> AbsTask:
    """`mteb.get_task`, with an unknown name reported with mteb's own closest task name."""
    mteb = _import_mteb(what=f"{ID_PREFIX}{name}")  # heavy (~4 s): pulls in datasets, torch and the task registry
    try:
        return mteb.get_task(name)
    except KeyError as exc:
        match = _MTEB_SUGGESTION.search(str(exc))
        hint = f" Did you mean: {match.group(1)}?" if match else ""
        raise DatasetError(
            f"mteb:{name}: unknown MTEB task.{hint} List tasks with: python -c \"import mteb; "
            "print([t.metadata.name for t in mteb.get_tasks(task_types=['Retrieval'])])\""
        ) from None


def _close_matches(word: str, candidates: list[str]) -> list[str]:
    """difflib on lower-cased names, so `scifact` finds `SciFact`."""
    by_lower = {c.lower(): c for c in candidates}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)]


def _require_text_retrieval(task: AbsTask) -> None:
    AbsTaskRetrieval = _import_mteb("mteb.abstasks.retrieval").AbsTaskRetrieval  # noqa: N806

    meta = task.metadata
    if getattr(task, "is_aggregate", False):
        raise DatasetError(f"mteb:{meta.name} is an aggregate of several tasks; load its member tasks one by one.")
    if not isinstance(task, AbsTaskRetrieval):
        raise DatasetError(
            f"mteb:{meta.name} is a {meta.type} task ({type(task).__mro__[1].__name__}), not a retrieval task: "
            "only retrieval-style tasks (Retrieval, Reranking, InstructionRetrieval, ...) have a corpus, "
            "queries and qrels."
        )
    # category is "<query modalities>2<document modalities>"; this suite encodes text only
    if meta.category not in (None, "t2t") or "text" not in meta.modalities:
        raise DatasetError(
            f"mteb:{meta.name} is a {meta.category} retrieval task (modalities {meta.modalities}); "
            "only text-to-text (t2t) tasks can be loaded."
        )


def _require_split(task: AbsTask, split: str) -> None:
    splits = list(task.metadata.eval_splits)
    if split not in splits:
        raise DatasetError(f"mteb:{task.metadata.name} has no split {split!r}; its evaluation splits are {splits}.")


def _pick_subset(task: AbsTask, subset: str | None) -> str:
    """The subset to load: the given one, or the only one; several and none given is refused."""
    subsets = list(task.metadata.hf_subsets)
    if subset is None:
        if len(subsets) == 1:
            return subsets[0]
        # all of them: a multilingual task's scores are per subset, so the user has to pick
        raise DatasetError(
            f"mteb:{task.metadata.name} has {len(subsets)} subsets; choose one as "
            f"mteb:{task.metadata.name}#SPLIT:SUBSET (subsets: {', '.join(subsets)})."
        )
    if subset not in subsets:
        close = _close_matches(subset, subsets)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DatasetError(
            f"mteb:{task.metadata.name} has no subset {subset!r}.{hint} "
            f"Subsets: {', '.join(subsets[:_MAX_LISTED])}{', ...' if len(subsets) > _MAX_LISTED else ''}."
        )
    return subset


def _load_split(task: AbsTask, split: str, subset: str, offline: bool | None) -> Mapping[str, Any]:
    if not task.data_loaded:
        task.filter_eval_splits([split])
        task.filter_languages(None, hf_subsets=[subset])
        offline = _resolve_offline(task, offline)
        try:
            with _hub_offline(offline):
                _load_task_data(task, split, subset, offline)
        except DatasetError:
            raise
        except Exception as exc:  # datasets/huggingface_hub raise many unrelated types
            raise _load_error(task, split, subset, exc, offline) from exc
    try:
        return task.dataset[subset][split]
    except (KeyError, TypeError):
        loaded = {s: list(v) for s, v in (task.dataset or {}).items()}
        raise DatasetError(
            f"mteb:{task.metadata.name}: split {split!r} of subset {subset!r} was not loaded (loaded: {loaded})."
        ) from None


def _load_task_data(task: AbsTask, split: str, subset: str, offline: bool) -> None:
    """`task.load_data()`, offline from a Hub snapshot of the pinned revision when there is one."""
    path, revision = str(task.metadata.dataset["path"]), str(task.metadata.dataset["revision"])
    if not offline or os.path.isdir(path):
        task.load_data()
        return
    snapshot = _hub_snapshot(path, revision)
    if snapshot is not None:
        logger.info("mteb:%s: loading %s@%s from the Hub snapshot %s", task.metadata.name, path, revision, snapshot)
        with _dataset_path(task, str(snapshot)):
            task.load_data()
        return
    pinned = _COMMIT.fullmatch(revision) is not None  # a branch name cannot be checked against folder names
    cached = _arrow_cache_revisions(path)
    others = sorted((cached | _snapshot_revisions(path)) - {revision})
    if pinned and revision not in cached and others:
        raise _revision_error(task, split, subset, others)
    task.load_data()
    if pinned:  # datasets' offline cache takes the most recent copy of each config, whatever its revision
        _require_loaded_revision(task, split, subset)


def _hub_snapshot(repo_id: str, revision: str) -> Path | None:
    """The local snapshot folder of `repo_id` at `revision` (huggingface_hub resolves branch names via refs/)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def _hub_repo_dir(repo_id: str) -> Path:
    import huggingface_hub.constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(huggingface_hub.constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="dataset")


def _snapshot_revisions(repo_id: str) -> set[str]:
    snapshots = _hub_repo_dir(repo_id) / "snapshots"
    return {p.name for p in snapshots.iterdir() if p.is_dir()} if snapshots.is_dir() else set()


def _arrow_cache_dir(repo_id: str) -> Path:
    """`HF_DATASETS_CACHE/ns___name`: datasets' folder for a Hub dataset (name snake-cased, as datasets does)."""
    import datasets.config
    from datasets.naming import camelcase_to_snakecase

    *namespace, name = repo_id.split("/")
    return Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*namespace, camelcase_to_snakecase(name)])


def _arrow_cache_revisions(repo_id: str) -> set[str]:
    """Revisions in datasets' Arrow cache: for Hub datasets the hash folder (config/version/hash) is the commit."""
    root = _arrow_cache_dir(repo_id)
    return {p.name for p in root.glob("*/*/*") if p.is_dir()} if root.is_dir() else set()


def _require_loaded_revision(task: AbsTask, split: str, subset: str) -> None:
    """The Arrow files mteb's corpus and queries were read from lie under the pinned revision's folder."""
    revision = str(task.metadata.dataset["revision"])
    split_data = task.dataset[subset][split]
    for part in ("corpus", "queries"):
        for cache_file in getattr(split_data[part], "cache_files", []):
            found = Path(cache_file["filename"]).parent.name
            if found != revision:
                raise _revision_error(task, split, subset, [found])


def _revision_error(task: AbsTask, split: str, subset: str, found: list[str]) -> DatasetError:
    meta = task.metadata
    path, revision = meta.dataset["path"], meta.dataset["revision"]
    return DatasetError(
        f"mteb:{meta.name}: the local copy of {path} is revision {', '.join(found)}, but the task pins revision "
        f"{revision}; scores on another revision are not MTEB's. Fetch the pinned one on a connected machine with: "
        f"hf download {path} --repo-type dataset --revision {revision} and copy its HF_HOME here "
        f"(hub cache {_hub_repo_dir(path).parent})."
    )


@contextlib.contextmanager
def _dataset_path(task: AbsTask, path: str) -> Iterator[None]:
    """Point this task object (not its class, whose metadata every instance shares) at a local folder."""
    original = task.metadata
    task.metadata = original.model_copy(update={"dataset": {**original.dataset, "path": path}})
    try:
        yield
    finally:
        task.metadata = original


def _resolve_offline(task: AbsTask, offline: bool | None) -> bool:
    if offline is not None:
        return offline
    import datasets.config
    import huggingface_hub.constants

    if (offline_requested()
            or huggingface_hub.constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE):
        return True
    if os.path.isdir(str(task.metadata.dataset.get("path", ""))):
        return False  # a local dataset folder needs no Hub
    if not _hub_reachable(huggingface_hub.constants.ENDPOINT):
        logger.warning("Hugging Face Hub %s is unreachable; loading mteb:%s from the local cache only.",
                       huggingface_hub.constants.ENDPOINT, task.metadata.name)
        return True
    return False


def _hub_reachable(endpoint: str) -> bool:
    """A TCP connect to the Hub endpoint; it spares offline machines the client's ~25 s of retries."""
    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    if proxies.get(parts.scheme) or proxies.get("all"):
        return True  # a direct probe says nothing about the proxy route; let the Hub client decide
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Turn on huggingface_hub's and datasets' offline flags for this block (both read them per call)."""
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
             datasets.config.HF_DATASETS_OFFLINE)
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE,
         datasets.config.HF_DATASETS_OFFLINE) = saved


def _load_error(task: AbsTask, split: str, subset: str, exc: BaseException, offline: bool) -> DatasetError:
    meta = task.metadata
    path, revision = meta.dataset.get("path"), meta.dataset.get("revision")
    where = f"dataset {path} (revision {revision}, subset {subset}, split {split})"
    if _is_unreachable(exc, offline):
        import datasets.config
        import huggingface_hub.constants

        hf_home = huggingface_hub.constants.HF_HOME
        return DatasetError(
            f"mteb:{meta.name}: {where} is not in the local Hugging Face cache "
            f"(HF_HOME={hf_home}; HF_DATASETS_CACHE={datasets.config.HF_DATASETS_CACHE}; "
            f"hub cache {huggingface_hub.constants.HF_HUB_CACHE}) and the Hub is "
            f"{'not used (offline mode)' if offline else 'unreachable'}: {_root_message(exc)}. "
            f"On a connected machine, pre-fetch with: python -c \"import mteb; {_fetch_call(task, split, subset)}\" "
            f"(or: hf download {path} --repo-type dataset --revision {revision}) "
            "then copy that machine's HF_HOME folder "
            f"(default ~/.cache/huggingface) to {hf_home} here (or point HF_HOME at the copy) "
            "and set HF_HUB_OFFLINE=1."
        )
    return DatasetError(f"mteb:{meta.name}: loading {where} failed: {_root_message(exc)}")


def _fetch_call(task: AbsTask, split: str, subset: str) -> str:
    """The mteb call that downloads just this split and subset (load_data() alone fetches every language)."""
    args = [repr(task.metadata.name), f"eval_splits=[{split!r}]"]
    if len(task.metadata.hf_subsets) > 1:
        args.append(f"hf_subsets=[{subset!r}]")
    return f"mteb.get_task({', '.join(args)}).load_data()"



def _is_unreachable(exc: BaseException, offline: bool) -> bool:
    """Network failures, offline-mode refusals and (when offline) "not cached" errors."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    for err in exception_chain(exc):
        if isinstance(err, (ConnectionError, TimeoutError, LocalEntryNotFoundError)):
            return True  # includes OfflineModeIsEnabled and datasets' "Couldn't reach ... on the Hub"
        name, module = type(err).__name__, type(err).__module__
        if module.startswith(("httpx", "httpcore")) and ("Connect" in name or "Timeout" in name):
            return True
        if offline and isinstance(err, FileNotFoundError):
            return True
    return False


def _root_message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def _to_dataset(task: AbsTask, subset: str, split_data: Mapping[str, Any]) -> RetrievalDataset:
    name = task.metadata.name
    corpus = tuple(_documents(split_data["corpus"]))
    queries = tuple(_queries(split_data["queries"]))
    qrels = {str(qid): {str(did): int(score) for did, score in docs.items()}
             for qid, docs in split_data["relevant_docs"].items()}
    logger.info("mteb:%s: %d documents, %d queries, %d judged queries", name, len(corpus), len(queries), len(qrels))
    return RetrievalDataset(
        id=f"{ID_PREFIX}{name}", corpus=corpus, queries=queries, qrels=qrels,
        # a task attribute in mteb 2.x (AbsTaskRetrieval.ignore_identical_ids), passed to its evaluator
        ignore_identical_ids=bool(getattr(task, "ignore_identical_ids", False)),
        score_queries_without_positives=True,  # mteb's evaluator scores every query in its qrels
        source_info={"revision": str(task.metadata.dataset.get("revision", "")), "subset": subset,
                     "hf_path": str(task.metadata.dataset.get("path", ""))},
    )


def _documents(corpus: Any) -> Iterator[Document]:
    """Documents with the text mteb's models read (title and body joined by mteb itself) and no title,
    so that no encoder joins them a second time its own way."""
    texts = _retrieval_texts(corpus, "document")
    for doc_id, text in zip(corpus["id"], texts, strict=True):
        yield Document(id=str(doc_id), text=text or "", title="")


def _queries(queries: Any) -> Iterator[Query]:
    texts = _retrieval_texts(queries, "query")
    for query_id, text in zip(queries["id"], texts, strict=True):
        yield Query(id=str(query_id), text=text or "")


def _retrieval_texts(dataset: Any, kind: str) -> list[str]:
    """mteb's own text of each corpus entry or query (`mteb._create_dataloaders._retrieval_texts`, what its
    retrieval dataloaders and statistics use). mteb 2.x has no public name for it; if the private one moves,
    the copies below (of mteb 2.26) are used."""
    try:
        texts_fn = _import_mteb("mteb._create_dataloaders")._retrieval_texts
        prompt_type = getattr(_import_mteb("mteb.types").PromptType, kind)
    except (DatasetError, AttributeError) as exc:
        logger.warning("mteb._create_dataloaders._retrieval_texts could not be used (%s); "
                       "using sparsebench's copy of mteb 2.26's.", exc)
        return _copied_texts(dataset, kind)
    return list(texts_fn(dataset, prompt_type))


def _copied_texts(dataset: Any, kind: str) -> list[str]:
    columns = dataset.column_names
    if kind == "document":
        titles = dataset["title"] if "title" in columns else [""] * len(dataset)
        return [_document_text(title, text) for title, text in zip(titles, dataset["text"], strict=True)]
    instructions = dataset["instruction"] if "instruction" in columns else [None] * len(dataset)
    return [_query_text(text, instr) for text, instr in zip(dataset["text"], instructions, strict=True)]


def _document_text(title: str | None, text: str) -> str:
    """mteb._create_dataloaders._corpus_to_dict: "title text", stripped."""
    return f"{title} {text}".strip() if title else text.strip()


def _query_text(text: Any, instruction: str | None) -> str:
    """The query as mteb's retrieval dataloader spells it (mteb._create_dataloaders)."""
    if isinstance(text, list):  # a conversation: list of turns, plain strings or {role, content}
        turns = [t if isinstance(t, str) else f"{t['role']}: {t['content']}" for t in text]
        joined = "; ".join(turns)
        return f"{instruction} {joined}" if instruction is not None else joined
    return f"{text} {instruction}" if instruction is not None else text
