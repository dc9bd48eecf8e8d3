#!/usr/bin/env python3
"""Rebuild the embedded language-model texts (``lmtext``) from registry packages.

The texts shipped in ``sparsebench/data/lmtext/`` are plain UTF-8 prose used to
measure perplexity (``<name>.eval.txt``) and to calibrate pruning methods
(``<name>.calib.txt``).  Two registers:

* ``austen``: Jane Austen's novels (public domain) from the Debian package
  ``r-cran-janeaustenr``, whose data is an R lazy-load database
  (``data/Rdata.rdb`` + ``data/Rdata.rdx``) read here with PyPI ``rdata``.
* ``wiki``: the English Wikipedia sample inside the PyPI ``gensim`` 4.4.0
  wheel (CC BY-SA), wiki markup stripped by the rules below.

Evaluation and calibration parts are disjoint by construction: for Austen they
come from different novels, for Wikipedia from different articles.  The build
is deterministic: the package versions and the sha256 of the downloaded
package files are pinned below, no randomness is involved, selection follows
fixed orders, and JSON is written with fixed settings.  ``--check`` rebuilds
into a temporary directory and compares byte for byte with the shipped files.

Downloads are cached in ``<cache>/downloads/`` (``~/.cache/sparsebench``, or
``$SPARSEBENCH_CACHE``), the folder ``scripts/make_corpora.py`` uses, and are
verified against their pins before use.

This is a maintenance tool, not part of the runtime package, so all the
parsing rules live here.  It needs ``rdata`` (``pip install -e .[textdata]``),
``apt-get`` and ``dpkg-deb`` (only when the .deb is not cached yet) and pip.

Usage::

    python scripts/make_lm_text.py            # fetch (or reuse cached) packages + build
    python scripts/make_lm_text.py --check    # verify shipped files
    python scripts/make_lm_text.py --downloads DIR   # another download cache
"""

from __future__ import annotations

import argparse
import bz2
import filecmp
import gzip
import hashlib
import html
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("make_lm_text")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sparsebench" / "data" / "lmtext"

DATASET_NAME = "lmtext"
DATASET_VERSION = 1


class BuildError(RuntimeError):
    """A failure the user can act on (wrong package version, missing tool...)."""


def default_download_dir() -> Path:
    """``<cache>/downloads``: the same folder ``sparsebench.corpora`` caches its inputs in."""
    env = os.environ.get("SPARSEBENCH_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsebench"
    return root / "downloads"


# ---------------------------------------------------------------------------
# Pins
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedDeb:
    """A Debian package pinned to an exact version and .deb checksum."""

    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives (epoch ``:`` -> ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_all.deb"


@dataclass(frozen=True)
class PinnedWheel:
    """A PyPI wheel pinned to an exact file (platform tags included) and checksum.

    The wheel's bytes differ per platform, so one platform's wheel is pinned
    and downloaded explicitly (``pip download --platform ...``) whatever the
    host is; the member we read is pinned as well.
    """

    name: str
    version: str
    filename: str
    sha256: str
    platform: str
    python_version: str
    abi: str
    member: str
    member_sha256: str


JANEAUSTENR = PinnedDeb(
    name="r-cran-janeaustenr",
    version="1.0.0-1",
    sha256="df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
)
GENSIM = PinnedWheel(
    name="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    platform="manylinux_2_28_x86_64",
    python_version="311",
    abi="cp311",
    member="gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    member_sha256="a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d",
)

AUSTEN_DATA_DIR = "usr/lib/R/site-library/janeaustenr/data"
AUSTEN_COPYRIGHT = "usr/share/doc/r-cran-janeaustenr/copyright"

# Selection.  Austen: whole chapters, in order from chapter 1, until the part
# reaches its target (the chapter that reaches it is included).  Wikipedia:
# eligible articles ordered by sha256 of their title; each contributes its
# leading paragraphs up to WIKI_ARTICLE_MAX_WORDS; eval is filled first, then
# calib continues with the next articles.
AUSTEN_EVAL_BOOK = ("prideprejudice", "Pride and Prejudice")
AUSTEN_CALIB_BOOK = ("sensesensibility", "Sense and Sensibility")
EVAL_TARGET_WORDS = 70_000
CALIB_TARGET_WORDS = 35_000
WIKI_MIN_ARTICLE_WORDS = 300
WIKI_ARTICLE_MAX_WORDS = 1_600

PARTS = ("eval", "calib")
TEXT_NAMES = ("austen", "wiki")
OUTPUT_FILES = tuple(f"{n}.{p}.txt" for n in TEXT_NAMES for p in PARTS)
ALL_OUTPUT_FILES = (*OUTPUT_FILES, "NOTICE.md", "MANIFEST.json")


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def word_count(text: str) -> int:
    """Count whitespace-separated tokens; used for all length rules."""
    return len(text.split())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize_paragraph(text: str) -> str:
    """NFC, non-breaking spaces to spaces, whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    return re.sub(r"\s+", " ", text).strip()


def render_paragraphs(paragraphs: Iterable[str]) -> bytes:
    """Paragraphs separated by one blank line, ``\\n`` newlines, final newline, UTF-8."""
    return ("\n\n".join(paragraphs) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------
# Austen: R lazy-load database
# ---------------------------------------------------------------------------


def _parse_r(data: bytes) -> object:
    """Convert one serialized R object (XDR format, ``X\\n`` header) with rdata."""
    import rdata  # maintenance-only dependency (extra "textdata")

    with warnings.catch_warnings():
        # rdata cannot tell a bare serialization from an .rds file and says so.
        warnings.simplefilter("ignore", UserWarning)
        return rdata.conversion.convert(rdata.parser.parse_data(data, extension=".rds"))


def read_lazyload_db(data_dir: Path) -> dict[str, list[str]]:
    """Read every character vector of an R lazy-load database (``Rdata.rdb/.rdx``).

    Format (R's ``lazyLoadDBinsertValue``/``lazyLoadDBfetch``): the ``.rdx`` is
    an ``.rds`` (gzip-compressed serialized R list) with ``variables``, a
    named list of ``c(offset, length)`` into the ``.rdb``, and ``compressed``.
    Each ``.rdb`` entry is a 4-byte big-endian uncompressed length followed by
    a zlib stream (``compressed = TRUE``; types 2/3, bzip2/xz, have a type
    byte after the length and are not used by this package) holding one
    serialized R object.
    """
    index = _parse_r(gzip.decompress((data_dir / "Rdata.rdx").read_bytes()))
    if not isinstance(index, dict) or "variables" not in index:
        raise BuildError(f"{data_dir}/Rdata.rdx is not a lazy-load index (no 'variables')")
    compressed = index.get("compressed")
    if compressed is not None and [bool(x) for x in compressed] != [True]:
        raise BuildError(f"{data_dir}/Rdata.rdx: compression {compressed!r} is not zlib (TRUE); not supported")
    rdb = (data_dir / "Rdata.rdb").read_bytes()
    out: dict[str, list[str]] = {}
    for name, pos in index["variables"].items():
        offset, length = (int(x) for x in pos)
        blob = rdb[offset : offset + length]
        (expected_len,) = struct.unpack(">i", blob[:4])
        raw = zlib.decompress(blob[4:])
        if len(raw) != expected_len:
            raise BuildError(f"Rdata.rdb entry {name}: {len(raw)} bytes decompressed, header says {expected_len}")
        value = _parse_r(raw)
        out[str(name)] = [str(x) for x in value]  # type: ignore[union-attr]
    return out


_CHAPTER_RE = re.compile(r"^(?:CHAPTER|Chapter)\s+(?:\d+|[IVXLC]+)\.?$")
_SCENE_BREAK_RE = re.compile(r"^[*\s]+$")
_ITALIC_RE = re.compile(r"_([^_\n]+?)_")


@dataclass(frozen=True)
class Chapter:
    heading: str
    paragraphs: tuple[str, ...]

    @property
    def words(self) -> int:
        return sum(word_count(p) for p in self.paragraphs)


def austen_chapters(lines: Sequence[str]) -> list[Chapter]:
    """Split a janeaustenr novel (one element per printed line) into chapters.

    Rules: lines before the first ``Chapter N``/``CHAPTER N`` heading (title
    page) are dropped; a chapter runs to the next heading; paragraphs are
    runs of non-blank lines, unwrapped (joined with one space); lines made of
    ``*`` only (scene breaks) are dropped; Project Gutenberg's ``_italic_``
    underscores are removed; the heading is the chapter's first paragraph.
    """
    chapters: list[Chapter] = []
    heading: str | None = None
    paras: list[str] = []
    buf: list[str] = []

    def flush_para() -> None:
        if buf:
            p = normalize_paragraph(_ITALIC_RE.sub(r"\1", " ".join(buf)))
            if p:
                paras.append(p)
            buf.clear()

    for line in lines:
        s = line.strip()
        if _CHAPTER_RE.match(s):
            flush_para()
            if heading is not None:
                chapters.append(Chapter(heading, tuple(paras)))
            heading, paras = s, [s]
            continue
        if heading is None:
            continue
        if not s or _SCENE_BREAK_RE.match(s):
            flush_para()
            continue
        buf.append(s)
    flush_para()
    if heading is not None:
        chapters.append(Chapter(heading, tuple(paras)))
    return chapters


def take_chapters(chapters: Sequence[Chapter], target: int) -> list[Chapter]:
    """Chapters 1, 2, ... until the word total reaches ``target`` (that chapter included)."""
    taken: list[Chapter] = []
    total = 0
    for ch in chapters:
        if total >= target:
            break
        taken.append(ch)
        total += ch.words
    if total < target:
        raise BuildError(f"only {total} words in {len(chapters)} chapters; target {target}")
    return taken


# ---------------------------------------------------------------------------
# Wikipedia: markup stripping
# ---------------------------------------------------------------------------

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_REF = re.compile(r"<ref\b[^>]*?/>|<ref\b[^>]*>.*?(?:</ref\s*>|$)", re.S | re.I)
_BLOCK = re.compile(
    r"<(math|gallery|timeline|imagemap|score|chem|hiero|syntaxhighlight|source|pre|code|graph|mapframe|table)\b"
    r"[^>]*?(?:/>|>.*?(?:</\1\s*>|$))",
    re.S | re.I,
)
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_DROP_LINK = re.compile(r"^\s*:?\s*(?:file|image|media|category|wikt|wiktionary|[a-z]{2,3}(?:-[a-z]{2,8})?)\s*:", re.I)
_EXTLINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_URL = re.compile(r"(?:https?|ftp)://\S+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1$")
_MAGIC = re.compile(r"__[A-Z]+__")
_PAREN_LEAD = re.compile(r"\(\s*(?:[,;]\s*)+|\(\s+")
_EMPTY_PARENS = re.compile(r"\s*\(\s*\)")
_SPACE_PUNCT = re.compile(r"\s+([,.;:!?])")
# Sections of citations and link lists rather than prose: skipped to the next
# section of the same or a higher level.
_SKIP_SECTIONS = frozenset(
    {
        "references", "external links", "see also", "further reading", "notes", "bibliography",
        "sources", "footnotes", "citations", "notes and references", "works", "discography",
        "filmography", "selected works", "publications",
    }
)


def _remove_nested(text: str, open_: str, close: str) -> str:
    """Remove every (possibly nested) ``open_ ... close`` span; an unclosed one runs to the end."""
    out: list[str] = []
    depth = 0
    pos = 0
    token = re.compile(re.escape(open_) + "|" + re.escape(close))
    for m in token.finditer(text):
        if m.group() == open_:
            if depth == 0:
                out.append(text[pos : m.start()])
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                pos = m.end()
    if depth == 0:
        out.append(text[pos:])
    return "".join(out)


def _remove_tables(text: str) -> str:
    """Drop ``{| ... |}`` tables (line-based, as wikitext writes them), nested ones included."""
    kept: list[str] = []
    depth = 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
        elif depth and s.startswith("|}"):
            depth -= 1
        elif not depth:
            kept.append(line)
    return "\n".join(kept)


_FILE_LINK_START = re.compile(r"\[\[\s*:?\s*(?:file|image|media)\s*:", re.I)
_LINK_TOKEN = re.compile(r"\[\[|\]\]")


def _remove_file_links(text: str) -> str:
    """Remove ``[[File:...]]``/``[[Image:...]]`` with their captions, balancing nested ``[[...]]``.

    A caption may hold links and single brackets (``Bicyclo[1.1.0]butane``),
    which a one-level pattern cannot match; an unclosed one runs to the end.
    """
    out: list[str] = []
    pos = 0
    while True:
        m = _FILE_LINK_START.search(text, pos)
        if m is None:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos : m.start()])
        depth = 1
        end = len(text)
        for tok in _LINK_TOKEN.finditer(text, m.end()):
            depth += 1 if tok.group() == "[[" else -1
            if depth == 0:
                end = tok.end()
                break
        pos = end


def _replace_links(text: str) -> str:
    """``[[target|label]]`` -> label, ``[[target]]`` -> target; file/category/interwiki links dropped.

    Innermost links are replaced first and the pass repeats, so the caption of
    an image (which may contain links) goes with the image.
    """

    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        if _DROP_LINK.match(body):
            return ""
        if "|" in body:
            return body.rsplit("|", 1)[1]
        # [[Page#Section]] -> "Page"; [[#Section]] -> "Section"
        page, _, section = body.partition("#")
        return page or section

    prev = None
    while prev != text:
        prev = text
        text = _LINK.sub(repl, text)
    return text


def strip_wiki_markup(text: str) -> list[str]:
    """Plain prose paragraphs from wikitext.

    Rules, applied in this order:

    1. HTML comments, ``<ref>`` footnotes and non-prose blocks (math, gallery,
       code, tables written in HTML, ...) are removed with their content.
    2. Templates ``{{...}}`` (nested) and parser tables ``{|...|}`` are removed.
    3. Links: file/image/media links are removed with their captions
       (nesting balanced); ``[[target|label]]`` -> label, ``[[target]]`` ->
       target (``[[Page#Section]]`` -> Page); category and interlanguage
       links are removed; external links ``[url label]`` -> label; bare URLs removed.
    4. Remaining HTML tags are removed (their text kept), entities decoded,
       bold/italic quotes and ``__MAGIC__`` words removed.
    5. Lines: headings are dropped, and a heading named like a reference
       section ("References", "See also", ...) drops its section; list,
       indent and definition lines (``*``, ``#``, ``:``, ``;``) and leftover
       table rows (``|``, ``!``) are dropped; the remaining consecutive lines
       form paragraphs (split at blank lines and headings).
    6. Each paragraph is normalized (NFC, whitespace collapsed, empty
       parentheses left by removed templates deleted, "," / ";" / spaces
       right after "(" deleted, space before punctuation removed); paragraphs under 5 words are dropped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _BLOCK.sub("", text)
    text = _remove_nested(text, "{{", "}}")
    text = _remove_tables(text)
    text = _remove_file_links(text)
    text = _replace_links(text)
    text = _EXTLINK.sub(lambda m: m.group(1), text)
    text = _URL.sub("", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _QUOTES.sub("", text)
    text = _MAGIC.sub("", text)
    paragraphs: list[str] = []
    buf: list[str] = []
    skip_level = 0  # >0: inside a skipped section of this level

    def flush() -> None:
        if buf:
            p = normalize_paragraph(" ".join(buf))
            p = _EMPTY_PARENS.sub("", _PAREN_LEAD.sub("(", p))
            p = normalize_paragraph(_SPACE_PUNCT.sub(r"\1", p))
            if word_count(p) >= 5:
                paragraphs.append(p)
            buf.clear()

    for line in text.split("\n"):
        s = line.strip()
        heading = _HEADING.match(s)
        if heading:
            flush()
            level, title = len(heading.group(1)), heading.group(2).strip().lower()
            if skip_level and level <= skip_level:
                skip_level = 0
            if not skip_level and title in _SKIP_SECTIONS:
                skip_level = level
            continue
        if skip_level:
            continue
        if not s or s.startswith(("*", "#", ":", ";", "|", "!", "{", "}")):
            flush()
            continue
        buf.append(s)
    flush()
    return paragraphs


@dataclass(frozen=True)
class WikiArticle:
    page_id: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def words(self) -> int:
        return sum(word_count(p) for p in self.paragraphs)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_wiki(path: Path) -> Iterator[WikiArticle]:
    """Eligible articles of the dump, in dump order, markup stripped.

    Eligible: main namespace (``ns`` 0), not a redirect, not a disambiguation
    page (title ending in ``(disambiguation)``) nor a list (``List of ...``),
    at least WIKI_MIN_ARTICLE_WORDS words after stripping.
    """
    with bz2.open(path, "rb") as f:
        for _, elem in ET.iterparse(f, events=("end",)):
            if _local(elem.tag) != "page":
                continue
            fields = {_local(c.tag): c for c in elem}
            ns = (fields["ns"].text or "").strip() if "ns" in fields else ""
            title = (fields["title"].text or "").strip() if "title" in fields else ""
            page_id = (fields["id"].text or "").strip() if "id" in fields else ""
            revision = fields.get("revision")
            text_el = None if revision is None else next((c for c in revision if _local(c.tag) == "text"), None)
            elem.clear()
            if ns != "0" or "redirect" in fields or text_el is None:
                continue
            if title.endswith("(disambiguation)") or title.startswith("List of "):
                continue
            art = WikiArticle(page_id, title, tuple(strip_wiki_markup(text_el.text or "")))
            if art.words >= WIKI_MIN_ARTICLE_WORDS:
                yield art


def lead_paragraphs(paragraphs: Sequence[str], max_words: int) -> list[str]:
    """The leading paragraphs whose running total stays within ``max_words`` (at least one)."""
    out: list[str] = []
    total = 0
    for p in paragraphs:
        n = word_count(p)
        if out and total + n > max_words:
            break
        out.append(p)
        total += n
    return out


def title_key(title: str) -> str:
    return sha256_bytes(title.encode("utf-8"))


# ---------------------------------------------------------------------------
# Building the parts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    name: str
    part: str
    paragraphs: tuple[str, ...]
    selection: str
    items: tuple[str, ...]  # chapters or article titles, in file order

    @property
    def data(self) -> bytes:
        return render_paragraphs(self.paragraphs)

    @property
    def words(self) -> int:
        return sum(word_count(p) for p in self.paragraphs)


def build_austen(data_dir: Path) -> tuple[Part, Part]:
    books = read_lazyload_db(data_dir)
    parts = []
    for part, (key, title), target in (
        ("eval", AUSTEN_EVAL_BOOK, EVAL_TARGET_WORDS),
        ("calib", AUSTEN_CALIB_BOOK, CALIB_TARGET_WORDS),
    ):
        if key not in books:
            raise BuildError(f"janeaustenr has no {key!r}; found {sorted(books)}")
        chapters = take_chapters(austen_chapters(books[key]), target)
        paragraphs = tuple(p for ch in chapters for p in ch.paragraphs)
        parts.append(
            Part(
                "austen",
                part,
                paragraphs,
                f"{title}, chapters 1-{len(chapters)} (janeaustenr object {key!r})",
                tuple(f"{title}: {ch.heading}" for ch in chapters),
            )
        )
        LOG.info("austen %s: %s, %d chapters, %d words", part, title, len(chapters), parts[-1].words)
    return parts[0], parts[1]


def build_wiki(dump: Path) -> tuple[Part, Part]:
    articles = sorted(read_wiki(dump), key=lambda a: title_key(a.title))
    LOG.info("wiki: %d eligible articles", len(articles))
    it = iter(articles)
    parts = []
    for part, target in (("eval", EVAL_TARGET_WORDS), ("calib", CALIB_TARGET_WORDS)):
        paragraphs: list[str] = []
        titles: list[str] = []
        total = 0
        for art in it:
            lead = lead_paragraphs(art.paragraphs, WIKI_ARTICLE_MAX_WORDS)
            paragraphs.extend(lead)
            titles.append(art.title)
            total += sum(word_count(p) for p in lead)
            if total >= target:
                break
        if total < target:
            raise BuildError(f"wiki {part}: only {total} words left in the eligible articles; target {target}")
        parts.append(
            Part(
                "wiki",
                part,
                tuple(paragraphs),
                f"{len(titles)} whole-article leads (see articles)",
                tuple(titles),
            )
        )
        LOG.info("wiki %s: %d articles, %d words", part, len(titles), total)
    return parts[0], parts[1]


# ---------------------------------------------------------------------------
# Manifest and notice
# ---------------------------------------------------------------------------

AUSTEN_SPLIT_RULE = (
    f"eval: {AUSTEN_EVAL_BOOK[1]}, calib: {AUSTEN_CALIB_BOOK[1]} (different novels, so disjoint by "
    f"construction). Each part takes whole chapters in order from chapter 1 until it reaches "
    f"{EVAL_TARGET_WORDS} (eval) / {CALIB_TARGET_WORDS} (calib) words, the chapter that reaches it included. "
    "Title pages dropped, lines unwrapped into paragraphs, '_italic_' underscores and '* * *' scene breaks "
    "removed; each chapter heading is kept as a paragraph."
)
WIKI_SPLIT_RULE = (
    "Eligible articles (main namespace, no redirects, disambiguation pages or 'List of' pages, at least "
    f"{WIKI_MIN_ARTICLE_WORDS} words after markup stripping) are ordered by sha256 of their UTF-8 title. "
    f"Each article contributes its leading paragraphs up to {WIKI_ARTICLE_MAX_WORDS} words (at least one "
    f"paragraph); eval takes articles in that order until it reaches {EVAL_TARGET_WORDS} words, calib "
    f"continues with the following articles until {CALIB_TARGET_WORDS} words. An article is in at most one "
    "part, so the parts are disjoint by construction."
)

AUSTEN_LICENCE = "public domain (the novels); janeaustenr packaging MIT (c) 2016-2017 Julia Silge"
WIKI_LICENCE = "CC BY-SA 3.0 (Wikipedia text; modified: markup stripped, excerpted)"


def build_manifest(parts: dict[tuple[str, str], Part]) -> dict[str, object]:
    sources = {
        "austen": {
            "package": JANEAUSTENR.name,
            "kind": "deb",
            "version": JANEAUSTENR.version,
            "file": JANEAUSTENR.filename,
            "sha256": JANEAUSTENR.sha256,
            "member": f"/{AUSTEN_DATA_DIR}/Rdata.rdb",
            "licence": AUSTEN_LICENCE,
        },
        "wiki": {
            "package": GENSIM.name,
            "kind": "wheel",
            "version": GENSIM.version,
            "file": GENSIM.filename,
            "sha256": GENSIM.sha256,
            "member": GENSIM.member,
            "member_sha256": GENSIM.member_sha256,
            "licence": WIKI_LICENCE,
            "attribution": "Wikipedia contributors; article titles listed under texts.wiki.parts.*.items",
        },
    }
    texts: dict[str, object] = {}
    files: dict[str, str] = {}
    for name, rule in (("austen", AUSTEN_SPLIT_RULE), ("wiki", WIKI_SPLIT_RULE)):
        text_parts: dict[str, object] = {}
        for part in PARTS:
            p = parts[(name, part)]
            fname = f"{name}.{part}.txt"
            digest = sha256_bytes(p.data)
            files[fname] = digest
            text_parts[part] = {
                "file": fname,
                "sha256": digest,
                "bytes": len(p.data),
                "words": p.words,
                "paragraphs": len(p.paragraphs),
                "selection": p.selection,
                "items": list(p.items),
            }
        texts[name] = {"source": sources[name], "split_rule": rule, "parts": text_parts}
    return {
        "name": DATASET_NAME,
        "version": DATASET_VERSION,
        "word_count": "whitespace-separated tokens (str.split())",
        "sources": [
            {"package": JANEAUSTENR.name, "version": JANEAUSTENR.version, "file": JANEAUSTENR.filename,
             "sha256": JANEAUSTENR.sha256},
            {"package": GENSIM.name, "version": GENSIM.version, "file": GENSIM.filename, "sha256": GENSIM.sha256},
        ],
        "files": files,
        "texts": texts,
    }


def render_notice(parts: dict[tuple[str, str], Part], copyright_text: str) -> str:
    def counts(name: str) -> str:
        e, c = parts[(name, "eval")], parts[(name, "calib")]
        return f"eval {e.words} words ({len(e.paragraphs)} paragraphs), calib {c.words} words ({len(c.paragraphs)} paragraphs)"

    def titles(part: str) -> str:
        return "\n".join(f"{i}. {t}" for i, t in enumerate(parts[("wiki", part)].items, 1))

    # The stanzas from "Files: *" on (copyright holders, licence text); the
    # header stanza (format URL, upstream contact) is not a notice.
    stanzas = copyright_text.strip().split("\n\n")
    first = next((i for i, st in enumerate(stanzas) if st.startswith("Files:")), 0)
    notice_text = "\n\n".join(stanzas[first:])
    copyright_quoted = "\n".join(f"> {ln}".rstrip() for ln in notice_text.split("\n"))
    return f"""# `lmtext` language-model texts: notices

These texts are derived from two registry packages.  They are rebuilt byte
for byte by `scripts/make_lm_text.py` (`--check` verifies the shipped files).

| text | source | package | version | file | sha256 |
|---|---|---|---|---|---|
| `austen` | Jane Austen's novels | Debian `{JANEAUSTENR.name}` | `{JANEAUSTENR.version}` | `{JANEAUSTENR.filename}` | `{JANEAUSTENR.sha256}` |
| `wiki` | English Wikipedia sample | PyPI `{GENSIM.name}` | `{GENSIM.version}` | `{GENSIM.filename}` | `{GENSIM.sha256}` |

Each text has an evaluation part (`<name>.eval.txt`) and a calibration part
(`<name>.calib.txt`), disjoint by construction.  Files are UTF-8 (NFC), `\\n`
newlines, one paragraph per line, paragraphs separated by one blank line.

## `austen`: public domain

*Pride and Prejudice* (1813) and *Sense and Sensibility* (1811) by Jane
Austen are in the public domain.  The texts were read from the R data
(`/{AUSTEN_DATA_DIR}/Rdata.rdb`) of `{JANEAUSTENR.name}` {JANEAUSTENR.version}
(the CRAN package janeaustenr, which takes them from Project Gutenberg); its
packaging is under the MIT licence, as its `copyright` file states:

{copyright_quoted}

{AUSTEN_SPLIT_RULE}

Counts: {counts("austen")}.

## `wiki`: Wikipedia, CC BY-SA 3.0, modified

Source: Wikipedia contributors, English Wikipedia, the sample dump
`{GENSIM.member.rsplit("/", 1)[-1]}` shipped as test data in the `{GENSIM.name}`
{GENSIM.version} wheel (member sha256 `{GENSIM.member_sha256}`).  The
page histories (the authors) of each article are at
`https://en.wikipedia.org/wiki/<title>?action=history`.

Licence: Creative Commons Attribution-ShareAlike 3.0 Unported
(<https://creativecommons.org/licenses/by-sa/3.0/>), the licence of
Wikipedia's text when the dump was made (text contributed before
November 2008 is also available under the GFDL).  These files are
**modified** from the originals: wiki markup was stripped (templates,
references, tables, files, categories, headings, lists, HTML tags removed;
links replaced by their text; entities decoded) and only the leading
paragraphs of each article were kept.  The modified text is distributed under
the same licence, CC BY-SA 3.0.

{WIKI_SPLIT_RULE}

Counts: {counts("wiki")}.

### Articles used in `wiki.eval.txt` (in file order)

{titles("eval")}

### Articles used in `wiki.calib.txt` (in file order)

{titles("calib")}
"""


def write_outputs(parts: dict[tuple[str, str], Part], out: Path, copyright_text: str) -> None:
    payloads: dict[str, bytes] = {f"{n}.{p}.txt": parts[(n, p)].data for n, p in parts}
    payloads["NOTICE.md"] = render_notice(parts, copyright_text).encode("utf-8")
    manifest = build_manifest(parts)
    payloads["MANIFEST.json"] = (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    out.mkdir(parents=True, exist_ok=True)
    for name in ALL_OUTPUT_FILES:
        dest = out / name
        dest.write_bytes(payloads[name])
        LOG.info("wrote %s (%d bytes)", dest, len(payloads[name]))


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"'{name}' is not on PATH; it is needed to fetch/extract the Debian package")
    return path


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> None:
    try:
        res = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what} failed: {exc}") from exc
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-5:]
        raise BuildError(f"{what} failed (exit {res.returncode}): {' | '.join(tail)}")


def _verify(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise BuildError(
            f"{what}: {path} has sha256 {got}, expected {expected} (a different build or a corrupt file; "
            "delete it to download it again, and do not update the pin without reviewing the resulting texts)"
        )
    LOG.info("verified %s sha256 %s", path.name, got)


def fetch_deb(pin: PinnedDeb, downloads: Path) -> Path:
    """The pinned .deb from the cache, or ``apt-get download`` it into the cache; verified."""
    target = downloads / pin.filename
    if not target.is_file():
        apt = _require_tool("apt-get")
        LOG.info("apt-get download %s=%s into %s", pin.name, pin.version, downloads)
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lmtext-apt-") as tmp:
            _run([apt, "download", f"{pin.name}={pin.version}"], f"apt-get download {pin.name}={pin.version}",
                 cwd=Path(tmp))
            got = Path(tmp) / pin.filename
            if not got.is_file():
                raise BuildError(f"apt-get download left {sorted(os.listdir(tmp))}, expected {pin.filename}")
            shutil.move(str(got), str(target))
    _verify(target, pin.sha256, f"{pin.name} {pin.version}")
    return target


def fetch_wheel(pin: PinnedWheel, downloads: Path) -> Path:
    """The pinned wheel from the cache, or ``pip download`` exactly that file into the cache; verified."""
    target = downloads / pin.filename
    if not target.is_file():
        LOG.info("pip download %s==%s (%s, no dependencies) into %s", pin.name, pin.version, pin.platform, downloads)
        downloads.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lmtext-pip-") as tmp:
            _run(
                [sys.executable, "-m", "pip", "download", f"{pin.name}=={pin.version}", "--no-deps",
                 "--only-binary=:all:", "--platform", pin.platform, "--python-version", pin.python_version,
                 "--implementation", "cp", "--abi", pin.abi, "--quiet", "--dest", tmp],
                f"pip download {pin.name}=={pin.version}",
            )
            got = Path(tmp) / pin.filename
            if not got.is_file():
                raise BuildError(f"pip download left {sorted(os.listdir(tmp))}, expected {pin.filename}")
            shutil.move(str(got), str(target))
    _verify(target, pin.sha256, f"{pin.name} {pin.version} wheel")
    return target


def extract_member(wheel: Path, pin: PinnedWheel, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(pin.member)
        except KeyError as exc:
            raise BuildError(f"{wheel.name} has no {pin.member}") from exc
    if sha256_bytes(data) != pin.member_sha256:
        raise BuildError(f"{wheel.name}:{pin.member} has sha256 {sha256_bytes(data)}, expected {pin.member_sha256}")
    path = dest / pin.member.rsplit("/", 1)[-1]
    path.write_bytes(data)
    return path


def build(out: Path, downloads: Path) -> None:
    """Fetch, verify, extract and write the texts into ``out``."""
    deb = fetch_deb(JANEAUSTENR, downloads)
    wheel = fetch_wheel(GENSIM, downloads)
    with tempfile.TemporaryDirectory(prefix="lmtext-build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        _run([_require_tool("dpkg-deb"), "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
        austen = build_austen(root / AUSTEN_DATA_DIR)
        copyright_text = (root / AUSTEN_COPYRIGHT).read_text(encoding="utf-8")
        wiki = build_wiki(extract_member(wheel, GENSIM, work))
        parts = {(p.name, p.part): p for p in (*austen, *wiki)}
        write_outputs(parts, out, copyright_text)


def check(out: Path, downloads: Path) -> list[str]:
    """Rebuild into a temporary directory; return the files that differ."""
    with tempfile.TemporaryDirectory(prefix="lmtext-check-") as tmp:
        fresh = Path(tmp) / "lmtext"
        build(fresh, downloads)
        return [
            name
            for name in ALL_OUTPUT_FILES
            if not (out / name).is_file() or not filecmp.cmp(out / name, fresh / name, shallow=False)
        ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--downloads", type=Path, default=None,
        help=f"download cache for the .deb and the wheel (default: {default_download_dir()})",
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild into a temp dir and compare byte for byte with --out"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    downloads = args.downloads or default_download_dir()
    try:
        if args.check:
            differing = check(args.out, downloads)
            if differing:
                LOG.error("shipped files differ from a fresh build in %s: %s", args.out, ", ".join(differing))
                return 1
            LOG.info("all %d files in %s are identical to a fresh build", len(ALL_OUTPUT_FILES), args.out)
            return 0
        build(args.out, downloads)
    except BuildError as exc:
        LOG.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
