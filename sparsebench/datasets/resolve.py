"""Dataset ids, from the suite's declared names or from the command line.

`NAME` is a dataset the suite declares (checked against its declared checksum and counts);
`beir:PATH[#SPLIT]`, `irds:ID` and `mteb:TASK[#SPLIT[:SUBSET]]` load the user's own data without editing
any file.
"""

from __future__ import annotations

import difflib
import logging
from importlib.resources import files
from pathlib import Path

from ..errors import DatasetError
from ..suites.spec import DatasetDecl, Suite
from .types import RetrievalDataset

log = logging.getLogger(__name__)

PREFIXES = ("beir:", "irds:", "mteb:", "embedded:")


def embedded_path(name: str) -> Path:
    path = Path(str(files("sparsebench.data"))) / name
    if not path.is_dir():
        raise DatasetError(f"embedded dataset {name!r} is not in this installation ({path})")
    return path


def load_source(source: str, dataset_id: str | None = None, name: str | None = None) -> RetrievalDataset:
    """Load by source string; `dataset_id` names it in records (default: see `beir_dataset_id`)."""
    kind, _, rest = source.partition(":")
    rest, has_split, split = rest.partition("#")
    split = split or "test"
    if not rest:
        raise DatasetError(f"dataset {source!r}: nothing after {kind}:")
    if name is not None and kind != "beir":
        raise DatasetError(f"--dataset-name names your own beir: folders; {source!r} already has its canonical id")
    if kind == "embedded":
        from .beir import load_beir

        return load_beir(embedded_path(rest), split, dataset_id or source)
    if kind == "beir":
        from .beir import beir_dataset_id, load_beir

        return load_beir(rest, split, dataset_id or beir_dataset_id(rest, split if has_split else None, name))
    if kind == "irds":
        from .irds import load_irds

        return load_irds(rest)
    if kind == "mteb":
        from .mteb_loader import load_mteb

        split, _, subset = split.partition(":")  # mteb:TASK#SPLIT:SUBSET picks one HF subset (a language)
        return load_mteb(rest, split or "test", subset or None)
    raise DatasetError(f"dataset {source!r}: unknown source kind {kind!r} (use one of {', '.join(PREFIXES)})")


def resolve(suite: Suite, ref: str | None) -> tuple[str, DatasetDecl | None]:
    """(source, declaration) for a dataset reference; the declaration is None for ad-hoc data."""
    ref = ref or suite.default_dataset
    decl = suite.dataset(ref)
    if decl is not None:
        return decl.source, decl
    if ref.startswith(PREFIXES):
        return ref, None
    names = [d.id for d in suite.datasets]
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise DatasetError(
        f"unknown dataset {ref!r} for suite {suite.ref}: {hint}declared: {', '.join(names)}; "
        "or give your own as beir:PATH, irds:ID or mteb:TASK"
    )


def load_dataset(suite: Suite, ref: str | None, name: str | None = None) -> RetrievalDataset:
    source, decl = resolve(suite, ref)
    if decl is not None and name is not None:
        raise DatasetError(f"--dataset-name names your own beir: folders; {decl.id!r} is declared by {suite.ref}")
    ds = load_source(source, decl.id if decl else None, name)
    if decl is not None:
        check_declared(ds, decl, suite)
    check_usable(ds)
    return ds


def check_usable(ds: RetrievalDataset) -> None:
    """Data no method can be measured on is bad input, refused before any record is written:
    recorded as a failure it would be retried, and fail, on every run."""
    if not ds.corpus:
        raise DatasetError(f"dataset {ds.id}: the corpus is empty; nothing to retrieve")
    if not ds.positive_queries():
        graded = sum(len(v) for v in ds.qrels.values())
        raise DatasetError(
            f"dataset {ds.id}: no query has a positive judgment ({len(ds.queries)} queries, {graded} judgments, "
            "all of grade 0 or for unknown queries); every metric would be undefined"
        )


def check_declared(ds: RetrievalDataset, decl: DatasetDecl, suite: Suite) -> None:
    """A pinned dataset must be exactly what the suite version was defined on."""
    counts = ds.counts
    for key in ("documents", "queries", "qrels"):
        expected = getattr(decl, key)
        if expected is not None and counts[key] != expected:
            raise DatasetError(f"{suite.file}: dataset {decl.id!r}: expected {expected} {key}, found {counts[key]} in {decl.source}")
    if decl.sha256 and ds.checksum != decl.sha256:
        raise DatasetError(
            f"{suite.file}: dataset {decl.id!r}: content checksum {ds.checksum[:12]}... differs from the pinned "
            f"{decl.sha256[:12]}...; the data changed, so results would not be comparable (bump the suite version)"
        )
