"""Load any `ir_datasets` collection (`irds:<id>`) into a RetrievalDataset.

ir_datasets downloads lazily: `ir_datasets.load(id)` only looks the id up, and the files are fetched
the first time `docs_iter()` / `queries_iter()` / `qrels_iter()` runs. So every failure that matters
offline surfaces while iterating, and that is where it is turned into an actionable DatasetError.

ir_datasets has no offline switch. Its downloader (`ir_datasets.util.download.RequestsDownload`) reads
three environment variables on every request: IR_DATASETS_DL_TRIES (default 3 attempts per source),
IR_DATASETS_DL_TIMEOUT (default 15 s without data, also the connect timeout) and
IR_DATASETS_DL_403_TRIES (default 10), and many files also fall back to a mirror.
Where DNS fails (a machine with no network) that all fails within a second; where packets are
silently dropped it can take 3 x 15 s per source. `offline=True` (or SPARSEBENCH_OFFLINE=1 /
HF_HUB_OFFLINE=1) shrinks those knobs for the duration of the call so such machines fail in seconds.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebench.datasets.types import Document, Query, RetrievalDataset
from sparsebench.errors import DatasetError, exception_chain, offline_requested

logger = logging.getLogger(__name__)

ID_PREFIX = "irds:"

# Download knobs used while `offline` is on: one attempt per source, give up after 3 s of silence.
_OFFLINE_DOWNLOAD_ENV = {
    "IR_DATASETS_DL_TRIES": "1",
    "IR_DATASETS_DL_TIMEOUT": "3",
    "IR_DATASETS_DL_403_TRIES": "1",
}
_PARTS = ("docs", "queries", "qrels")


def load_irds(dataset_id: str, *, offline: bool | None = None) -> RetrievalDataset:
    """Load the ir_datasets collection `dataset_id` (e.g. `beir/scifact/test`; an `irds:` prefix is accepted).

    `offline=None` means: offline when SPARSEBENCH_OFFLINE or HF_HUB_OFFLINE is set to a true value.
    Offline, files already in the ir_datasets cache are used as usual; a missing one fails within seconds.
    """
    dataset_id = dataset_id.removeprefix(ID_PREFIX)
    dataset = _lookup(dataset_id)
    _require_parts(dataset_id, dataset)
    if offline is None:
        offline = offline_requested()
    with _download_settings(offline):
        corpus = tuple(_read(dataset_id, "docs", dataset, _to_document))
        queries = tuple(_read(dataset_id, "queries", dataset, _to_query))
        qrels = _collect_qrels(_read(dataset_id, "qrels", dataset, _to_judgment))
    logger.info("irds:%s: %d documents, %d queries, %d judged queries",
                dataset_id, len(corpus), len(queries), len(qrels))
    return RetrievalDataset(id=f"{ID_PREFIX}{dataset_id}", corpus=corpus, queries=queries, qrels=qrels)


def _lookup(dataset_id: str) -> Any:
    """`ir_datasets.load`, with an unknown id reported with the closest registered ids."""
    import ir_datasets  # heavy: registers hundreds of datasets on import

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        close = difflib.get_close_matches(dataset_id, list(ir_datasets.registry), n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise DatasetError(
            f"irds:{dataset_id}: unknown ir_datasets id.{hint} "
            "The ir_datasets documentation lists every id."
        ) from None


def _require_parts(dataset_id: str, dataset: Any) -> None:
    """A retrieval benchmark needs all three parts; say which ones this id lacks (e.g. a docs-only parent id)."""
    missing = [part for part in _PARTS if not getattr(dataset, f"has_{part}")()]
    if missing:
        raise DatasetError(
            f"irds:{dataset_id}: this ir_datasets id has no {' and no '.join(missing)}; a retrieval "
            "benchmark needs docs, queries and qrels. Use a sub-id that has all three "
            "(e.g. 'beir/scifact/test' rather than 'beir/scifact')."
        )




class OfflineDownloadRefused(ConnectionError):
    """Raised instead of opening a connection while offline is requested."""


@contextlib.contextmanager
def _download_settings(offline: bool) -> Iterator[None]:
    """Offline, no download is even attempted: ir_datasets has no offline switch, so its remote
    download classes are replaced for this call only (local files and the cache still work).
    The retry/timeout knobs are shrunk as well, for remote kinds a newer ir_datasets may add."""
    if not offline:
        yield
        return
    from ir_datasets.util import download

    saved = {name: os.environ.get(name) for name in _OFFLINE_DOWNLOAD_ENV}
    remote = [c for c in vars(download).values() if isinstance(c, type) and issubclass(c, download.BaseDownload)
              and c is not download.BaseDownload and c is not download.LocalDownload]
    originals = {(c, attr): c.__dict__[attr] for c in remote for attr in ("stream", "__iter__") if attr in c.__dict__}
    for c, attr in originals:
        setattr(c, attr, _refuse_download)
    os.environ.update(_OFFLINE_DOWNLOAD_ENV)
    try:
        yield
    finally:
        for (c, attr), fn in originals.items():
            setattr(c, attr, fn)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _refuse_download(self: Any, *args: Any, **kwargs: Any) -> Any:
    where = getattr(self, "url", None) or getattr(self, "uri", None) or type(self).__name__
    raise OfflineDownloadRefused(f"offline (SPARSEBENCH_OFFLINE / HF_HUB_OFFLINE set): not downloading {where}")


def _read(dataset_id: str, part: str, dataset: Any, convert: Any) -> Iterator[Any]:
    """Iterate one part, converting records; any failure (usually a download) becomes a DatasetError.
    A damaged cached file is named as such: re-downloading cannot help while it stays in the cache."""
    try:
        for record in getattr(dataset, f"{part}_iter")():
            yield convert(record)
    except DatasetError:
        raise
    except Exception as exc:  # ir_datasets raises anything from requests errors to RuntimeError
        bad = _corrupt_cached_file(getattr(dataset, f"{part}_handler")())
        if bad is not None:
            raise DatasetError(bad.message(dataset_id, part)) from exc
        raise _read_error(dataset_id, part, exc) from exc


def _to_document(doc: Any) -> Document:
    fields = doc._fields
    if "text" in fields:
        return Document(id=str(doc.doc_id), text=_str(doc.text), title=_str(getattr(doc, "title", "")))
    # default_text() already folds the title in where a doc class has one, so keep title empty
    # rather than repeating it in full_text.
    return Document(id=str(doc.doc_id), text=_str(doc.default_text()))


def _to_query(query: Any) -> Query:
    text = query.text if "text" in query._fields else query.default_text()
    return Query(id=str(query.query_id), text=_str(text))


def _to_judgment(qrel: Any) -> tuple[str, str, int]:
    return str(qrel.query_id), str(qrel.doc_id), int(qrel.relevance)


def _collect_qrels(judgments: Iterable[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for qid, did, grade in judgments:
        qrels.setdefault(qid, {})[did] = grade  # a repeated pair keeps its last grade, as TREC tools do
    return qrels


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _read_error(dataset_id: str, part: str, exc: BaseException) -> DatasetError:
    """Explain a failed read: a missing manual file, a failed download, or anything else."""
    cache = _cache_dir()
    missing = _find_in_chain(exc, FileNotFoundError)
    if missing is not None and not _is_network_error(exc):
        # LocalDownload sources: collections ir_datasets cannot fetch itself (licensed corpora).
        return DatasetError(
            f"irds:{dataset_id}: the {part} file is missing: {missing}. This collection has to be "
            f"obtained manually and placed there; see the ir_datasets documentation of this id for instructions "
            f"(ir_datasets cache: {cache}, set by IR_DATASETS_HOME)."
        )
    if _is_network_error(exc):
        return DatasetError(
            f"irds:{dataset_id}: the {part} are not in the ir_datasets cache {cache} "
            f"(IR_DATASETS_HOME) and downloading them failed ({_root_message(exc)}). "
            "On a connected machine, pre-fetch with: python -c \"import ir_datasets; "
            f"d = ir_datasets.load('{dataset_id}'); "
            "[sum(1 for _ in f()) for f in (d.docs_iter, d.queries_iter, d.qrels_iter)]\" "
            f"then copy that machine's IR_DATASETS_HOME folder (default ~/.ir_datasets) to {cache} "
            "here, or point IR_DATASETS_HOME at the copy before running."
        )
    return DatasetError(f"irds:{dataset_id}: reading the {part} failed: {type(exc).__name__}: {exc}")


def _cache_dir() -> Path:
    import ir_datasets

    return Path(ir_datasets.util.home_path())



def _find_in_chain(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in exception_chain(exc) if isinstance(e, kind)), None)


def _is_network_error(exc: BaseException) -> bool:
    import requests  # ir_datasets' own HTTP client

    for err in exception_chain(exc):
        if isinstance(err, (requests.RequestException, ConnectionError, TimeoutError)):
            return True
        # Download with several mirrors: RuntimeError('All download sources failed', [(mirror, error), ...])
        if isinstance(err, RuntimeError) and err.args[:1] == ("All download sources failed",):
            nested = err.args[1] if len(err.args) > 1 else []
            if any(_is_network_error(e) for _, e in nested if isinstance(e, BaseException)):
                return True
    return False


def _root_message(exc: BaseException) -> str:
    """The innermost error, shortened: requests errors repeat the URL and pool details several times."""
    root = list(exception_chain(exc))[-1]
    if isinstance(root, RuntimeError) and root.args[:1] == ("All download sources failed",):
        nested = [e for _, e in root.args[1]] if len(root.args) > 1 else []
        if nested and isinstance(nested[-1], BaseException):
            return _root_message(nested[-1])
    text = f"{type(root).__name__}: {root}"
    text = text if len(text) <= 200 else text[:197] + "..."
    url = next((e.request.url for e in exception_chain(exc) if getattr(getattr(e, "request", None), "url", None)), None)
    return f"{text} for {url}" if url else text



@dataclass(frozen=True)
class CorruptFile:
    """A file in the ir_datasets cache whose md5 is not the one its Download declares."""

    path: Path
    expected_md5: str
    found_md5: str
    drop_in: Path  # where ir_datasets looks for a correct copy of this file
    url: str | None  # where ir_datasets downloads it from

    def message(self, dataset_id: str, part: str) -> str:
        source = f" from {self.url}" if self.url else ""
        fetch = f"download {self.url} on a connected machine and " if self.url else ""
        return (
            f"irds:{dataset_id}: the cached {part} file {self.path} fails its md5 check "
            f"(expected {self.expected_md5}, found {self.found_md5}): it is damaged or another file. "
            f"Delete it so that ir_datasets downloads it again{source}, or {fetch}put a copy whose md5 is "
            f"{self.expected_md5} at {self.drop_in}."
        )


def _corrupt_cached_file(handler: Any) -> CorruptFile | None:
    """The first existing local file of this part's Downloads whose md5 differs from the declared one.

    Checked only after a read failed. ir_datasets loses its own HashVerificationError when a local
    mirror (IR_DATASETS_HOME/downloads/<md5>) is wrong and the remote mirror then fails too (it re-raises
    only the last mirror's error), so the md5 is recomputed here rather than read from the exception.
    A file already at `cache_path` is used by ir_datasets unverified, so a wrong one there surfaces as a
    parse error; it is checked as well.
    """
    from ir_datasets.util import LocalDownload

    for dl in _downloads(handler):
        if not dl.expected_md5:
            continue
        cache_path = Path(dl._cache_path) if dl._cache_path and dl._cache_path != os.devnull else None
        local = [m._path for m in dl.mirrors if isinstance(m, LocalDownload)]
        for path in [*local, *([cache_path] if cache_path else [])]:
            if not path.is_file():
                continue
            try:
                found = _md5(path)
            except OSError:  # unreadable: the original error is the better report
                continue
            if found != dl.expected_md5.lower():
                url = next((m.url for m in dl.mirrors if isinstance(getattr(m, "url", None), str)), None)
                return CorruptFile(path, dl.expected_md5.lower(), found, path, url)
    return None


def _downloads(root: Any, depth: int = 6) -> Iterator[Any]:
    """Every ir_datasets Download reachable from a part handler (through TarExtract, GzipExtract, ...)."""
    from ir_datasets.util import Download

    seen: set[int] = set()
    stack = [(root, 0)]
    while stack:
        obj, level = stack.pop()
        if obj is None or id(obj) in seen or level > depth:
            continue
        seen.add(id(obj))
        if isinstance(obj, Download):
            yield obj
            continue
        # Only ir_datasets' own objects are walked: their wrappers keep the wrapped streamer in an attribute.
        if type(obj).__module__.startswith("ir_datasets") and hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                values = value if isinstance(value, (list, tuple)) else [value]
                stack.extend((v, level + 1) for v in values)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):  # 1 MiB blocks: cached corpora reach GiB
            digest.update(block)
    return digest.hexdigest()
