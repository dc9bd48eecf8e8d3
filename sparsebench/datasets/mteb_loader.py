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
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import urllib.request
from collections.abc import Iterator, Mapping
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
    return _to_dataset(task.metadata.name, split_data)


def _get_task(name: str) -> AbsTask:
    """`mteb.get_task`, with an unknown name reported with the closest task names."""
    import mteb  # heavy (~4 s): pulls in datasets, torch and the task registry

    try:
        return mteb.get_task(name)
    except KeyError:
        close = _close_matches(name, _task_names())
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DatasetError(
            f"mteb:{name}: unknown MTEB task.{hint} List tasks with: python -c \"import mteb; "
            "print([t.metadata.name for t in mteb.get_tasks(task_types=['Retrieval'])])\""
        ) from None


def _task_names() -> list[str]:
    try:
        # name -> task class; reading it avoids instantiating ~2000 tasks (and their beta-task warnings)
        from mteb.get_tasks import _TASKS_REGISTRY
    except ImportError:  # private in mteb 2.x; fall back to the public, slower listing
        import mteb

        return [t.metadata.name for t in mteb.get_tasks(exclude_superseded=False)]
    return list(_TASKS_REGISTRY)


def _close_matches(word: str, candidates: list[str]) -> list[str]:
    """difflib on lower-cased names, so `scifact` finds `SciFact`."""
    by_lower = {c.lower(): c for c in candidates}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)]


def _require_text_retrieval(task: AbsTask) -> None:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

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
    subsets = list(task.metadata.hf_subsets)
    if subset is None:
        if len(subsets) == 1:
            return subsets[0]
        raise DatasetError(
            f"mteb:{task.metadata.name} has {len(subsets)} subsets; choose one "
            f"(e.g. {', '.join(subsets[:_MAX_LISTED])}{', ...' if len(subsets) > _MAX_LISTED else ''})."
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
                task.load_data()
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


def _to_dataset(task_name: str, split_data: Mapping[str, Any]) -> RetrievalDataset:
    corpus = tuple(_documents(split_data["corpus"]))
    queries = tuple(_queries(split_data["queries"]))
    qrels = {str(qid): {str(did): int(score) for did, score in docs.items()}
             for qid, docs in split_data["relevant_docs"].items()}
    logger.info("mteb:%s: %d documents, %d queries, %d judged queries",
                task_name, len(corpus), len(queries), len(qrels))
    return RetrievalDataset(id=f"{ID_PREFIX}{task_name}", corpus=corpus, queries=queries, qrels=qrels)


def _documents(corpus: Any) -> Iterator[Document]:
    # whole columns at once: row-by-row access to an Arrow-backed Dataset is far slower
    columns = corpus.column_names
    titles = corpus["title"] if "title" in columns else [None] * len(corpus)
    for doc_id, text, title in zip(corpus["id"], corpus["text"], titles, strict=True):
        yield Document(id=str(doc_id), text=text or "", title=title or "")


def _queries(queries: Any) -> Iterator[Query]:
    columns = queries.column_names
    instructions = queries["instruction"] if "instruction" in columns else [None] * len(queries)
    for query_id, text, instruction in zip(queries["id"], queries["text"], instructions, strict=True):
        yield Query(id=str(query_id), text=_query_text(text, instruction))


def _query_text(text: Any, instruction: str | None) -> str:
    """The query as mteb's own retrieval dataloader spells it (mteb._create_dataloaders._retrieval_texts)."""
    if isinstance(text, list):  # a conversation: list of turns, plain strings or {role, content}
        turns = [t if isinstance(t, str) else f"{t['role']}: {t['content']}" for t in text]
        joined = "; ".join(turns)
        return f"{instruction} {joined}" if instruction else joined
    text = text or ""
    return f"{text} {instruction}" if instruction else text
