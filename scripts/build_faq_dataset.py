#!/usr/bin/env python3
"""Rebuild the embedded ``faq`` retrieval test collection from Debian packages.

The collection shipped in ``sparsebench/data/faq/`` is a BEIR-style folder
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``) derived from two
Debian bookworm documentation packages:

* ``python3.11-doc``: the Python FAQ (``faq/*.rst.txt``) gives question/answer
  pairs; the library reference (``library/*.rst.txt``) gives distractor
  passages.
* ``perl-doc``: ``perlfaq1.pod`` .. ``perlfaq9.pod`` give question/answer pairs.

Every FAQ question becomes a query whose single relevant document (grade 1) is
its own answer.  The build is fully deterministic: the package versions and the
sha256 of the ``.deb`` files are pinned below, files are read in sorted order,
no randomness is involved, and JSON is written with fixed settings.  Running
``--check`` rebuilds into a temporary directory and compares byte for byte
with the shipped files.

This is a maintenance tool, not part of the runtime package, so all the
parsing rules live here.

Usage::

    python scripts/build_faq_dataset.py                 # apt-get download + build
    python scripts/build_faq_dataset.py --debs /tmp/deb # reuse downloaded .debs
    python scripts/build_faq_dataset.py --check         # verify shipped files
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import html
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger("build_faq_dataset")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sparsebench" / "data" / "faq"

DATASET_NAME = "faq"
DATASET_VERSION = 1


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


PYTHON_DOC = PinnedDeb(
    name="python3.11-doc",
    version="3.11.2-6+deb12u9",
    sha256="5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be",
)
PERL_DOC = PinnedDeb(
    name="perl-doc",
    version="5.36.0-7+deb12u4",
    sha256="f4269cff4576d6f02a6756df842988e58451c7e945b08517dd235531b24e48f8",
)
PINNED: tuple[PinnedDeb, ...] = (PYTHON_DOC, PERL_DOC)

PY_SOURCES = "usr/share/doc/python3.11/html/_sources"
PY_FAQ_DIR = f"{PY_SOURCES}/faq"
PY_LIB_DIR = f"{PY_SOURCES}/library"
PY_COPYRIGHT = f"{PY_SOURCES}/copyright.rst.txt"
PERL_POD_DIR = "usr/share/perl/5.36.0/pod"

# An answer with fewer words than this is not a useful relevant document
# (e.g. a heading that only groups sub-questions, or a bare "Yes.").
MIN_ANSWER_WORDS = 10

# Distractor passages: sections are packed paragraph by paragraph into
# passages of at most PASSAGE_MAX_WORDS words; passages shorter than
# PASSAGE_MIN_WORDS are dropped; at most PASSAGES_PER_PAGE passages are
# taken from each library page (in document order), so that the sample covers
# many modules instead of exhausting the biggest pages.
PASSAGE_MIN_WORDS = 100
PASSAGE_MAX_WORDS = 250
PASSAGES_PER_PAGE = 25

OUTPUT_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")
ALL_OUTPUT_FILES = (*OUTPUT_FILES, "NOTICE.md", "MANIFEST.json")


class BuildError(RuntimeError):
    """A failure the user can act on (wrong package version, missing tool...)."""


# ---------------------------------------------------------------------------
# Small text helpers
# ---------------------------------------------------------------------------


def word_count(text: str) -> int:
    """Count whitespace-separated tokens; used for all length rules."""
    return len(text.split())


def dedent_lines(lines: Sequence[str]) -> list[str]:
    """Remove the common leading indentation of the non-blank lines.

    Code blocks keep their relative indentation (it matters for Python
    examples) but lose the indentation that only marked them as blocks.
    """
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip()]
    cut = min(indents) if indents else 0
    return [ln[cut:].rstrip() if ln.strip() else "" for ln in lines]


def trim_blank(lines: Sequence[str]) -> list[str]:
    """Drop leading and trailing blank lines."""
    out = list(lines)
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def squash_blank_runs(lines: Sequence[str]) -> list[str]:
    """Collapse runs of blank lines inside a code block to a single blank line."""
    out: list[str] = []
    for ln in lines:
        if not ln.strip() and out and not out[-1].strip():
            continue
        out.append(ln)
    return out


def indent_of(line: str) -> int:
    """Number of leading spaces (tabs are expanded before parsing)."""
    return len(line) - len(line.lstrip(" "))


def join_blocks(blocks: Iterable[str]) -> str:
    """Join text blocks (paragraphs, code blocks) with one blank line."""
    return "\n\n".join(b for b in blocks if b.strip())


# ---------------------------------------------------------------------------
# reStructuredText
# ---------------------------------------------------------------------------

_ADORNMENT_RE = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])\1{2,}")

# Inline markup, tried left to right in one pass so that the content of an
# inline literal is never re-interpreted as emphasis or a role.
_RST_INLINE_RE = re.compile(
    r"(?P<literal>``(?P<lit>\S(?:.*?\S)??)``)"
    r"|(?P<role>:(?P<rname>[A-Za-z][\w+.-]*(?::[A-Za-z][\w+.-]*)*):`(?P<rbody>[^`]+?)`)"
    r"|(?P<ref>`(?P<refbody>[^`]+?)`__?)"
    r"|(?P<interp>`(?P<ibody>[^`]+?)`)"
    r"|(?P<strong>(?<![\w*\\])\*\*(?P<sbody>\S(?:.*?\S)??)\*\*(?![\w*]))"
    r"|(?P<emph>(?<![\w*\\])\*(?P<ebody>[^\s*](?:[^*]*?[^\s*\\])??)\*(?![\w*]))"
    r"|(?P<footref>\s?\[(?:#[\w-]*|\d+|\*)\]_)"
    r"|(?P<escape>\\(?P<esc>.))",
    re.DOTALL,
)
_EXPLICIT_TITLE_RE = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)


def _rst_role_text(name: str, body: str) -> str:
    """Render the visible text of an interpreted-text role.

    Why: roles such as ``:func:`~os.path.join``` are how Sphinx writes code
    names; a reader (and a retrieval model) only sees ``join``.  Explicit
    titles (``:ref:`text <label>```) show the title; ``:pep:`8``` shows
    ``PEP 8`` as Sphinx renders it.
    """
    body = body.replace("\\", "")
    m = _EXPLICIT_TITLE_RE.match(body)
    if m and m.group("title"):
        return m.group("title")
    bare = name.split(":")[-1]
    if bare == "pep":
        return f"PEP {body}"
    if bare == "rfc":
        return f"RFC {body}"
    body = body.lstrip("!")
    if body.startswith("~"):
        body = body[1:].split(".")[-1]
    return body


def rst_inline_to_text(text: str) -> str:
    """Strip reST inline markup from one paragraph of prose.

    ``:role:`x``` -> ``x``, ````x```` -> ``x``, ```text <url>`_`` -> ``text``,
    ``*x*``/``**x**`` -> ``x``, footnote references are dropped and backslash
    escapes are resolved.  Whitespace runs are collapsed.
    """

    def repl(m: re.Match[str]) -> str:
        if m.group("literal"):
            return m.group("lit")
        if m.group("role"):
            return _rst_role_text(m.group("rname"), m.group("rbody"))
        if m.group("ref") or m.group("interp"):
            body = m.group("refbody") if m.group("ref") else m.group("ibody")
            tm = _EXPLICIT_TITLE_RE.match(body)
            return tm.group("title") if tm and tm.group("title") else body
        if m.group("strong"):
            return m.group("sbody")
        if m.group("emph"):
            return m.group("ebody")
        if m.group("footref"):
            return ""
        if m.group("escape"):
            ch = m.group("esc")
            return "" if ch.isspace() else ch
        return m.group(0)

    text = re.sub(r"\s+", " ", text).strip()
    return _RST_INLINE_RE.sub(repl, text).strip()


def rst_title_to_text(title: str) -> str:
    """Plain text of a section title (inline markup stripped, ``---`` -> em dash).

    Sphinx's smart quotes render `` --- `` in titles such as
    ``:mod:`os` --- Miscellaneous ...`` as an em dash.
    """
    return rst_inline_to_text(title).replace(" --- ", " \u2014 ")


@dataclass
class RstSection:
    """A section of a reST document: its title, level and own body lines.

    ``body`` holds the lines between this heading and the next heading of any
    level, so sub-sections are separate ``RstSection`` objects.
    """

    title: str
    level: int
    body: list[str]
    has_children: bool = False
    parents: list[str] = field(default_factory=list)


def _is_adornment(line: str) -> bool:
    return bool(_ADORNMENT_RE.fullmatch(line))


def split_rst_sections(text: str) -> list[RstSection]:
    """Split a reST document into sections, following reST's heading rules.

    A heading is a non-indented line underlined (and optionally overlined)
    by a line of one repeated punctuation character at least as long as the
    title, preceded by a blank line (or the overline).  Levels are assigned
    in order of first appearance of each adornment style (character plus
    overline or not), exactly as docutils does, so the first style seen is
    the document title (level 0).  Lines before the first heading form a
    section with level -1 and an empty title.
    """
    lines = text.expandtabs(8).split("\n")
    styles: list[tuple[str, bool]] = []
    sections: list[RstSection] = [RstSection(title="", level=-1, body=[])]
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        heading: tuple[str, str, bool, int] | None = None  # title, char, over, consumed
        if (
            _is_adornment(line)
            and i + 2 < n
            and lines[i + 2] == line
            and lines[i + 1].strip()
            and (i == 0 or not lines[i - 1].strip())
        ):
            heading = (lines[i + 1].strip(), line[0], True, 3)
        elif (
            line.strip()
            and not line.startswith(" ")
            and not _is_adornment(line)
            and i + 1 < n
            and _is_adornment(lines[i + 1])
            and len(lines[i + 1]) >= len(line.rstrip())
            and (i == 0 or not lines[i - 1].strip())
        ):
            heading = (line.strip(), lines[i + 1][0], False, 2)
        if heading is None:
            sections[-1].body.append(line)
            i += 1
            continue
        title, char, over, consumed = heading
        style = (char, over)
        if style not in styles:
            styles.append(style)
        level = styles.index(style)
        sections.append(RstSection(title=title, level=level, body=[]))
        i += consumed
    # Parent titles and leaf detection.
    stack: list[RstSection] = []
    for sec in sections[1:]:
        while stack and stack[-1].level >= sec.level:
            stack.pop()
        if stack:
            stack[-1].has_children = True
        sec.parents = [s.title for s in stack]
        stack.append(sec)
    return sections


_DIRECTIVE_RE = re.compile(r"^\.\.\s+(?P<name>[A-Za-z][\w:+.-]*)::(?:\s+(?P<arg>.*))?$")
_OPTION_RE = re.compile(r"^:[\w][\w -]*:(\s|$)")
_BULLET_RE = re.compile(r"^(?:[*+\-\u2022]|#\.|\d+[.)]|\(?[a-zA-Z0-9]\)|[a-zA-Z]\.)\s+")
_GRID_BORDER_RE = re.compile(r"\+(?:[-=]+\+)+")
_SIMPLE_BORDER_RE = re.compile(r"=+(?: +=+)*")
_SIMPLE_RULE_RE = re.compile(r"[-=]+(?: +[-=]+)*")
_CELL_VERSION_RE = re.compile(r"\.\. (versionadded|versionchanged)::\s*(\S+)")

# Directives whose whole block is dropped: build machinery, index entries,
# tables of contents, file inclusions we cannot resolve, audit tables.
_RST_DROP_DIRECTIVES = frozenset(
    {
        "index", "contents", "toctree", "only", "highlight", "sectionauthor",
        "moduleauthor", "codeauthor", "testsetup", "testcleanup", "raw",
        "image", "figure", "tabularcolumns", "currentmodule", "module",
        "include", "literalinclude", "audit-event", "audit-event-table",
        "program", "default-role", "role", "meta",
    }
)
# Directives whose content is code and is kept verbatim.
_RST_CODE_DIRECTIVES = frozenset(
    {
        "code-block", "sourcecode", "code", "doctest", "testcode",
        "testoutput", "productionlist", "parsed-literal",
    }
)
# Object descriptions: the argument (signature) is kept as a code line, the
# content as prose.
_RST_SIGNATURE_DIRECTIVES = frozenset(
    {
        "function", "method", "class", "exception", "data", "attribute",
        "decorator", "decoratormethod", "classmethod", "staticmethod",
        "abstractmethod", "coroutinefunction", "coroutinemethod",
        "awaitablefunction", "awaitablemethod", "property", "opcode",
        "cmdoption", "option", "envvar", "describe", "object", "pdbcommand",
        "type",
    }
)
_RST_VERSION_DIRECTIVES = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}:",
    "deprecated-removed": "Deprecated since version {}, will be removed in version {}:",
}


def _take_indented(lines: Sequence[str], start: int, parent_indent: int) -> int:
    """Index just past the block of lines indented deeper than ``parent_indent``.

    Blank lines belong to the block while more indented lines follow.
    """
    j = start
    last = start
    while j < len(lines):
        ln = lines[j]
        if ln.strip():
            if indent_of(ln) <= parent_indent:
                break
            last = j + 1
        j += 1
    return last


def _split_directive_body(body: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a dedented directive body into (argument/head lines, content).

    The head is everything before the first blank line minus option lines
    (``:noindex:``); reST puts extra argument lines (continued signatures) or,
    for admonitions, the first content paragraph there.
    """
    head: list[str] = []
    k = 0
    while k < len(body) and body[k].strip():
        if not _OPTION_RE.match(body[k].strip()):
            head.append(body[k])
        k += 1
    return head, list(body[k:])


def _directive_blocks(name: str, arg: str, body: list[str]) -> list[str]:
    """Render one explicit-markup directive as text blocks.

    Why the categories: index/toctree/build directives carry no readable
    text; code directives are examples worth keeping verbatim; object
    descriptions (``.. function:: f(x)``) contribute their signature, which is
    what the reader sees as the heading of the entry; admonitions and version
    notes are ordinary prose.
    """
    lname = name.lower()
    bare = lname.split(":")[-1]
    if lname in _RST_DROP_DIRECTIVES:
        return []
    head, rest = _split_directive_body(dedent_lines(body))
    if lname in _RST_CODE_DIRECTIVES:
        if lname == "productionlist":
            src = [arg, *head, *rest]
        else:
            src = rest if any(ln.strip() for ln in rest) else head
        code = squash_blank_runs(trim_blank(dedent_lines(src)))
        return ["\n".join(code)] if code else []
    if bare in _RST_SIGNATURE_DIRECTIVES or ":" in lname:
        sigs = [s.strip() for s in [arg, *head] if s.strip()]
        blocks = ["\n".join(s.replace("\\", "") for s in sigs)] if sigs else []
        return blocks + rst_to_blocks("\n".join(rest))
    if lname in _RST_VERSION_DIRECTIVES:
        template = _RST_VERSION_DIRECTIVES[lname]
        nversions = template.count("{}")
        parts = arg.split(None, nversions)
        versions, after = parts[:nversions], parts[nversions:]
        prefix = template.format(*versions, *[""] * (nversions - len(versions)))
        inner = rst_to_blocks("\n".join([*after, *head, "", *rest]))
        if inner:
            return [f"{prefix} {inner[0]}", *inner[1:]]
        return [prefix.rstrip(":") + ("" if prefix.endswith(".") else ".")]
    if lname in {"rubric", "sidebar", "topic", "table", "admonition"}:
        title = [rst_inline_to_text(arg)] if arg else []
        return title + rst_to_blocks("\n".join([*head, "", *rest]))
    # Admonitions (note, warning, seealso, impl-detail, availability, ...)
    # and unknown directives: argument and content are prose.
    return rst_to_blocks("\n".join([arg or "", *head, "", *rest]))


def _cell_text(parts: Sequence[str]) -> str:
    """Plain text of one table cell given its source fragments (one per line)."""
    text = " ".join(p.strip() for p in parts if p.strip())
    text = _CELL_VERSION_RE.sub(
        lambda m: _RST_VERSION_DIRECTIVES[m.group(1)].format(m.group(2)),
        text,
    )
    return rst_inline_to_text(text)


def _trim_cells(row: list[str]) -> list[str]:
    """Drop trailing empty cells; inner empty cells stay so columns line up."""
    while row and not row[-1]:
        row.pop()
    return row


def grid_table_to_text(lines: Sequence[str]) -> str:
    """Render a reST grid table as one text line per row, cells joined by `` | ``.

    Why: cells span several source lines, so reading the table line by line
    would cut inline markup (``:func:`a\nb```) in half.  Column boundaries
    come from the ``+`` positions of the top border; a ``|`` at a boundary
    separates cells (a spanning cell simply has none), and the fragments of a
    cell are joined across the lines of its row.
    """
    lines = dedent_lines(lines)
    bounds = [k for k, ch in enumerate(lines[0]) if ch == "+"]
    rows: list[str] = []
    cells: dict[int, list[str]] = {}

    def flush() -> None:
        row = _trim_cells([_cell_text(cells[k]) for k in sorted(cells)])
        if row:
            rows.append(" | ".join(row))
        cells.clear()

    for ln in lines:
        if _GRID_BORDER_RE.fullmatch(ln.strip()):
            flush()
            continue
        seps = [b for b in bounds if b < len(ln) and ln[b] == "|"]
        for a, b in zip(seps, [*seps[1:], len(ln)], strict=True):
            cells.setdefault(a, []).append(ln[a + 1 : b])
    flush()
    return "\n".join(rows)


def simple_table_to_text(lines: Sequence[str]) -> str:
    """Render a reST simple table as one text line per row, cells joined by `` | ``.

    Column starts come from the runs of ``=`` in the top border; rule lines
    (``====``/``----``) are dropped.  A line whose first column is blank
    continues the previous row, as in reST.
    """
    lines = dedent_lines(lines)
    starts = [m.start() for m in re.finditer(r"=+", lines[0])]
    rows: list[list[list[str]]] = []
    for ln in lines:
        if not ln.strip() or _SIMPLE_RULE_RE.fullmatch(ln.strip()):
            continue
        parts = [ln[a:b] for a, b in zip(starts, [*starts[1:], len(ln) + 1], strict=True)]
        if rows and not parts[0].strip():
            for k, part in enumerate(parts):
                rows[-1][k].append(part)
        else:
            rows.append([[part] for part in parts])
    rendered = [" | ".join(_trim_cells([_cell_text(cell) for cell in row])) for row in rows]
    return "\n".join(r for r in rendered if r)


def _simple_table_end(lines: Sequence[str], start: int) -> int:
    """Index past a simple table starting at its top border ``start``.

    Simple tables may contain blank lines; the table ends at the first border
    line after the top one that is followed by a blank line or the end.
    """
    n = len(lines)
    for k in range(start + 1, n):
        s = lines[k].strip()
        if _SIMPLE_BORDER_RE.fullmatch(s) and (k + 1 >= n or not lines[k + 1].strip()):
            return k + 1
        if not s and k + 1 < n and not lines[k + 1].strip():
            return k  # two blank lines: malformed table, stop here
    return n


def rst_to_blocks(text: str) -> list[str]:
    """Convert a reST fragment (no section headings) into plain-text blocks.

    Paragraph lines are joined and inline markup stripped; list items start
    new lines; literal blocks (after ``::``), doctest blocks (``>>>``) and
    code directives are kept verbatim with their relative indentation;
    directives are handled by :func:`_directive_blocks`; comments and link
    targets are dropped.
    """
    lines = text.expandtabs(8).split("\n")
    blocks: list[str] = []
    i = 0
    n = len(lines)
    literal_after: int | None = None  # indent of the paragraph that ended "::"
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        ind = indent_of(line)
        stripped = line.strip()
        if literal_after is not None:
            if ind > literal_after:
                j = _take_indented(lines, i, literal_after)
                code = squash_blank_runs(trim_blank(dedent_lines(lines[i:j])))
                if code:
                    blocks.append("\n".join(code))
                literal_after = None
                i = j
                continue
            literal_after = None
        if stripped.startswith(".. ") or stripped == "..":
            j = _take_indented(lines, i + 1, ind)
            m = _DIRECTIVE_RE.match(stripped)
            if m:
                blocks.extend(_directive_blocks(m.group("name"), (m.group("arg") or "").strip(), lines[i + 1 : j]))
            # else: comment, hyperlink target, footnote or substitution: dropped.
            i = j
            continue
        if _GRID_BORDER_RE.fullmatch(stripped):
            j = i
            while j < n and lines[j].strip():
                j += 1
            table = grid_table_to_text(lines[i:j])
            if table:
                blocks.append(table)
            i = j
            continue
        if _SIMPLE_BORDER_RE.fullmatch(stripped) and i + 1 < n and lines[i + 1].strip():
            j = _simple_table_end(lines, i)
            table = simple_table_to_text(lines[i:j])
            if table:
                blocks.append(table)
            i = j
            continue
        # Gather one paragraph.
        j = i
        para: list[str] = []
        while j < n and lines[j].strip():
            s = lines[j].strip()
            if j > i and (s.startswith(".. ") or (_DIRECTIVE_RE.match(s) is not None)):
                break
            para.append(lines[j])
            j += 1
        if para[0].strip().startswith(">>>"):
            blocks.append("\n".join(dedent_lines(para)))
            i = j
            continue
        if _ADORNMENT_RE.fullmatch(stripped) and len(para) == 1:
            i = j  # transition line
            continue
        # Split the paragraph into logical lines at list-item starts.  As in
        # reST, a list needs a paragraph that starts with an item; further
        # items start at the same indentation (deeper lines such as
        # "  + 0.1" continue the current item, and a "+ x" line inside a
        # prose paragraph is just text).
        items: list[list[str]] = []
        content_indent = ind
        list_para = _BULLET_RE.match(stripped) is not None
        for ln in para:
            s = ln.strip()
            bullet = _BULLET_RE.match(s)
            if not items or (bullet and indent_of(ln) == ind and list_para):
                items.append([s])
                content_indent = indent_of(ln) + (bullet.end() if bullet else 0)
            else:
                items[-1].append(s)
        rendered = [rst_inline_to_text(" ".join(it)) for it in items]
        if rendered and rendered[-1].endswith("::"):
            last = rendered[-1]
            if last == "::":
                rendered.pop()
            elif last[-3:-2].isspace():
                rendered[-1] = last[:-3].rstrip()
            else:
                rendered[-1] = last[:-1]
            literal_after = content_indent
        text_block = "\n".join(r for r in rendered if r)
        if text_block:
            blocks.append(text_block)
        i = j
    return blocks


def rst_to_text(text: str) -> str:
    """Plain text of a reST fragment: :func:`rst_to_blocks` joined by blank lines."""
    return join_blocks(rst_to_blocks(text))


# ---------------------------------------------------------------------------
# POD
# ---------------------------------------------------------------------------

_POD_CODE_START_RE = re.compile(r"([A-Z])(<+)")


def _pod_entity(name: str) -> str:
    """Resolve an ``E<...>`` escape (named, decimal or hex)."""
    special = {"lt": "<", "gt": ">", "sol": "/", "verbar": "|", "quot": '"', "amp": "&", "apos": "'"}
    if name in special:
        return special[name]
    try:
        if name.lower().startswith("0x"):
            return chr(int(name, 16))
        if name.startswith("0") and name.isdigit() and len(name) > 1:
            return chr(int(name, 8))
        if name.isdigit():
            return chr(int(name))
    except (ValueError, OverflowError):
        return name
    resolved = html.unescape(f"&{name};")
    return resolved if resolved != f"&{name};" else name


def _pod_link_text(content: str) -> str:
    """Visible text of an ``L<...>`` link, following perlpodspec's rendering.

    ``L<text|target>`` -> ``text``; ``L<page/"sec">`` -> ``"sec" in page``;
    ``L</"sec">`` -> ``"sec"``; ``L<page>``/``L<url>`` -> as is.
    """
    if "|" in content:
        return content.split("|", 1)[0]
    if "://" in content:
        return content
    if "/" in content:
        page, sec = content.split("/", 1)
        sec = sec.strip()
        if not (sec.startswith('"') and sec.endswith('"')):
            sec = f'"{sec}"'
        return f"{sec} in {page}" if page else sec
    return content


def _pod_parse(text: str, pos: int, closer: str | None) -> tuple[str, int, bool]:
    """Recursive-descent parser for POD formatting codes.

    Returns (rendered text, position after the closer, closed?).  Single
    bracket codes end at the first unmatched ``>``; multi-bracket codes
    (``C<< $a <=> $b >>``) end at whitespace followed by the same number of
    ``>`` characters, as perlpodspec requires.
    """
    out: list[str] = []
    n = len(text)
    while pos < n:
        if closer is not None:
            if closer == ">" and text[pos] == ">":
                return "".join(out), pos + 1, True
            if closer != ">":
                m = re.compile(r"\s+" + re.escape(closer)).match(text, pos)
                if m:
                    return "".join(out), m.end(), True
        m = _POD_CODE_START_RE.match(text, pos)
        if m:
            code, brackets = m.group(1), len(m.group(2))
            if brackets == 1:
                inner_closer, start = ">", m.end()
            else:
                ws = re.compile(r"\s+").match(text, m.end())
                if ws is None:
                    out.append(text[pos])
                    pos += 1
                    continue
                inner_closer, start = ">" * brackets, ws.end()
            inner, end, closed = _pod_parse(text, start, inner_closer)
            if not closed:
                out.append(text[pos])
                pos += 1
                continue
            out.append(_pod_apply_code(code, inner))
            pos = end
            continue
        out.append(text[pos])
        pos += 1
    return "".join(out), pos, closer is None


def _pod_apply_code(code: str, inner: str) -> str:
    """Render one formatting code: index (X) and null (Z) codes vanish,
    entities (E) are resolved, links (L) show their text, and the typographic
    codes (C, B, I, F, S) show their content."""
    if code in ("X", "Z"):
        return ""
    if code == "E":
        return _pod_entity(inner.strip())
    if code == "L":
        return _pod_link_text(inner)
    return inner


def pod_inline_to_text(text: str) -> str:
    """Strip POD formatting codes from ordinary-paragraph text and collapse
    whitespace (``C<x>`` -> ``x``, ``E<gt>`` -> ``>``, ``L<perlfunc/split>``
    -> ``"split" in perlfunc``)."""
    rendered, _, _ = _pod_parse(text, 0, None)
    return re.sub(r"\s+", " ", rendered).strip()


def split_pod_paragraphs(text: str) -> list[str]:
    """Split POD source into paragraphs separated by whitespace-only lines."""
    paras: list[str] = []
    cur: list[str] = []
    for line in text.expandtabs(8).split("\n"):
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            paras.append("\n".join(cur))
            cur = []
    if cur:
        paras.append("\n".join(cur))
    return paras


def pod_to_blocks(paragraphs: Sequence[str]) -> list[str]:
    """Convert POD paragraphs (no ``=head`` commands) to plain-text blocks.

    Verbatim paragraphs (indented) are code and kept as is, minus the common
    indentation; ``=item *``/``=item 1`` become bullet prefixes of the
    following paragraph; other ``=item`` labels become their own line;
    ``=over``/``=back``/``=pod``/``=cut`` vanish and ``=begin``..``=end`` /
    ``=for`` blocks (formatter-specific output) are skipped.
    """
    blocks: list[str] = []
    prefix = ""
    skip_until_end: str | None = None
    for para in paragraphs:
        if skip_until_end is not None:
            if para.startswith(f"=end {skip_until_end}"):
                skip_until_end = None
            continue
        if para.startswith("="):
            cmd, _, rest = para.partition(" ")
            cmd = cmd.split("\n", 1)[0]
            rest = para[len(cmd):].strip()
            if cmd == "=begin":
                skip_until_end = rest.split()[0] if rest else ""
            elif cmd == "=item":
                label = rest
                if label in ("*", "\u2022"):
                    prefix = "* "
                elif re.fullmatch(r"\d+\.?", label):
                    prefix = f"{label.rstrip('.')}. "
                elif label.startswith("* "):
                    blocks.append("* " + pod_inline_to_text(label[2:]))
                    prefix = ""
                else:
                    blocks.append(pod_inline_to_text(label))
                    prefix = ""
            # =over, =back, =for, =pod, =cut, =encoding, =head3/4: no text.
            continue
        if para[:1].isspace():
            code = "\n".join(dedent_lines(para.split("\n")))
            if prefix:
                blocks.append(prefix.rstrip())
                prefix = ""
            blocks.append(code)
            continue
        blocks.append(prefix + pod_inline_to_text(para))
        prefix = ""
    return [b for b in blocks if b.strip()]


@dataclass
class PodQA:
    """One perlfaq entry: the ``=head2`` question, its ``=head1`` group and answer."""

    question: str
    group: str
    answer: str


def parse_perlfaq(text: str) -> tuple[str, list[PodQA]]:
    """Extract (page title, Q/A pairs) from a perlfaq pod.

    Each ``=head2`` is a question; its answer is every paragraph up to the
    next ``=head1`` or ``=head2``.  The page title is the ``NAME`` line
    (``perlfaq4 - Data Manipulation``).
    """
    paras = split_pod_paragraphs(text)
    title = ""
    group = ""
    in_name = False
    entries: list[tuple[str, str, list[str]]] = []  # question, group, paragraphs
    open_entry = False
    for para in paras:
        if para.startswith("=head1"):
            group = pod_inline_to_text(para[len("=head1") :])
            in_name = group == "NAME"
            open_entry = False
            continue
        if para.startswith("=head2"):
            entries.append((pod_inline_to_text(para[len("=head2") :]), group, []))
            open_entry = True
            continue
        if in_name and not title and not para.startswith("="):
            title = pod_inline_to_text(para)
        if open_entry:
            entries[-1][2].append(para)
    qas = [PodQA(question=q, group=g, answer=join_blocks(pod_to_blocks(body))) for q, g, body in entries]
    return title, qas


def perlfaq_copyright(text: str) -> str:
    """The ``AUTHOR AND COPYRIGHT`` section of a perlfaq pod, verbatim.

    NOTICE.md quotes it exactly as it appears in the pod (copyright line,
    licence sentence and the public-domain grant for code examples).
    """
    paras = split_pod_paragraphs(text)
    out: list[str] = []
    inside = False
    for para in paras:
        if para.startswith("=head1"):
            inside = "COPYRIGHT" in para
            continue
        if inside and not para.startswith("="):
            out.append(para)
    return "\n\n".join(out)


# ---------------------------------------------------------------------------
# Collection assembly
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """A corpus document in BEIR form."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Query:
    """A query with its single relevant document."""

    id: str
    text: str
    doc_id: str


@dataclass
class Collection:
    """Documents, queries and the notice material gathered while parsing."""

    docs: list[Doc] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    perl_copyrights: dict[str, str] = field(default_factory=dict)
    python_copyright: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def _faq_title(page: str, parents: Sequence[str]) -> str:
    """Document title: the FAQ page plus the grouping headings, never the
    question itself (that would leak the query into the document)."""
    return ": ".join(p for p in (page, *parents) if p)


def python_faq_pairs(name: str, text: str) -> tuple[list[tuple[str, str, str]], int]:
    """(question, title, answer) triples of one Python FAQ page, plus the
    number of skipped entries.

    Questions are the *leaf* sections below the page title: sections with
    sub-sections ("Core Language", "Threads") only group questions.  A leaf
    whose answer has fewer than ``MIN_ANSWER_WORDS`` words is skipped (e.g.
    "General GUI Questions", which is an empty grouping heading).
    """
    sections = split_rst_sections(text)
    page = next((rst_title_to_text(s.title) for s in sections if s.level == 0), name)
    out: list[tuple[str, str, str]] = []
    skipped = 0
    for sec in sections:
        if sec.level <= 0 or sec.has_children:
            continue
        answer = rst_to_text("\n".join(sec.body))
        if word_count(answer) < MIN_ANSWER_WORDS:
            skipped += 1
            continue
        question = rst_title_to_text(sec.title)
        parents = [rst_title_to_text(p) for p in sec.parents[1:]]
        out.append((question, _faq_title(page, parents), answer))
    return out, skipped


def chunk_blocks(blocks: Sequence[str], max_words: int = PASSAGE_MAX_WORDS) -> list[str]:
    """Pack consecutive blocks into passages of at most ``max_words`` words.

    Blocks longer than ``max_words`` are first cut: code blocks at line
    boundaries, prose at word boundaries.  Packing is greedy and never
    reorders text, so a passage is a contiguous run of the section.
    """
    pieces: list[str] = []
    for block in blocks:
        if word_count(block) <= max_words:
            pieces.append(block)
            continue
        if "\n" in block:
            cur: list[str] = []
            cur_words = 0
            for ln in block.split("\n"):
                w = word_count(ln)
                if cur and cur_words + w > max_words:
                    pieces.append("\n".join(cur))
                    cur, cur_words = [], 0
                if w > max_words:
                    words = ln.split()
                    for k in range(0, len(words), max_words):
                        pieces.append(" ".join(words[k : k + max_words]))
                    continue
                cur.append(ln)
                cur_words += w
            if cur:
                pieces.append("\n".join(cur))
        else:
            words = block.split()
            for k in range(0, len(words), max_words):
                pieces.append(" ".join(words[k : k + max_words]))
    passages: list[str] = []
    cur_blocks: list[str] = []
    cur_words = 0
    for piece in pieces:
        w = word_count(piece)
        if cur_blocks and cur_words + w > max_words:
            passages.append(join_blocks(cur_blocks))
            cur_blocks, cur_words = [], 0
        cur_blocks.append(piece)
        cur_words += w
    if cur_blocks:
        passages.append(join_blocks(cur_blocks))
    return [p for p in passages if p.strip()]


def library_passages(name: str, text: str) -> list[tuple[str, str]]:
    """(title, passage) distractors of one library reference page.

    Each section's own body is converted to text and packed by
    :func:`chunk_blocks`; passages under ``PASSAGE_MIN_WORDS`` words (short
    stubs, leftovers) are dropped and at most ``PASSAGES_PER_PAGE`` passages
    are kept, in document order.
    """
    sections = split_rst_sections(text)
    page = next((rst_title_to_text(s.title) for s in sections if s.level == 0), name)
    out: list[tuple[str, str]] = []
    for sec in sections:
        if sec.level < 0:
            continue
        sec_title = rst_title_to_text(sec.title)
        title = page if sec.level == 0 else f"{page}: {sec_title}"
        for passage in chunk_blocks(rst_to_blocks("\n".join(sec.body))):
            if word_count(passage) < PASSAGE_MIN_WORDS:
                continue
            out.append((title, passage))
            if len(out) >= PASSAGES_PER_PAGE:
                return out
    return out


def _stem(path: Path) -> str:
    """Page name used in ids: ``programming.rst.txt`` -> ``programming``."""
    return path.name.split(".rst.txt")[0].removesuffix(".pod")


def build_collection(root: Path) -> Collection:
    """Assemble the collection from a directory holding both extracted packages."""
    col = Collection()
    seen_questions: set[str] = set()

    def is_duplicate(question: str) -> bool:
        """True for a question already asked by an earlier FAQ entry.

        Why: "What is Python?" is asked in both general.rst and
        installed.rst; keeping both would make each answer relevant to the
        other's identical query while only one is judged.  The later entry
        (sorted file order) is dropped entirely, query and document.
        """
        key = " ".join(question.lower().split())
        if key in seen_questions:
            return True
        seen_questions.add(key)
        return False

    def add_pair(doc_id: str, title: str, question: str, answer: str) -> None:
        col.docs.append(Doc(id=doc_id, title=title, text=answer))
        col.queries.append(Query(id=f"q-{doc_id}", text=question, doc_id=doc_id))

    # Python FAQ.
    skipped = duplicates = 0
    for path in sorted((root / PY_FAQ_DIR).glob("*.rst.txt")):
        stem = _stem(path)
        if stem == "index":
            continue
        pairs, nskip = python_faq_pairs(stem, path.read_text(encoding="utf-8"))
        skipped += nskip
        k = 0
        for question, title, answer in pairs:
            if is_duplicate(question):
                duplicates += 1
                continue
            k += 1
            add_pair(f"pyfaq-{stem}-{k:04d}", title, question, answer)
    col.skipped["pyfaq"] = skipped
    col.skipped["pyfaq-duplicate"] = duplicates

    # Perl FAQ.
    skipped = duplicates = 0
    for num in range(1, 10):
        path = root / PERL_POD_DIR / f"perlfaq{num}.pod"
        text = path.read_text(encoding="utf-8")
        col.perl_copyrights[path.name] = perlfaq_copyright(text)
        page, qas = parse_perlfaq(text)
        k = 0
        for qa in qas:
            if word_count(qa.answer) < MIN_ANSWER_WORDS:
                skipped += 1
                continue
            if is_duplicate(qa.question):
                duplicates += 1
                continue
            k += 1
            # "DESCRIPTION" is the pod's generic section name, not a topic.
            group = [] if qa.group == "DESCRIPTION" else [qa.group]
            add_pair(f"perlfaq{num}-{k:04d}", _faq_title(page, group), qa.question, qa.answer)
    col.skipped["perlfaq"] = skipped
    col.skipped["perlfaq-duplicate"] = duplicates

    # Distractors from the library reference.
    for path in sorted((root / PY_LIB_DIR).glob("*.rst.txt")):
        stem = _stem(path)
        for k, (title, passage) in enumerate(library_passages(stem, path.read_text(encoding="utf-8")), start=1):
            col.docs.append(Doc(id=f"pylib-{stem}-{k:04d}", title=title, text=passage))

    col.python_copyright = [
        block
        for sec in split_rst_sections((root / PY_COPYRIGHT).read_text(encoding="utf-8"))
        for block in rst_to_blocks("\n".join(sec.body))
        if block.startswith("Copyright")
    ]
    _validate(col)
    return col


def _validate(col: Collection) -> None:
    """Fail the build on duplicate ids, empty texts or dangling judgments."""
    doc_ids = [d.id for d in col.docs]
    if len(set(doc_ids)) != len(doc_ids):
        raise BuildError("duplicate document ids")
    qids = [q.id for q in col.queries]
    if len(set(qids)) != len(qids):
        raise BuildError("duplicate query ids")
    known = set(doc_ids)
    for q in col.queries:
        if not q.text.strip() or q.doc_id not in known:
            raise BuildError(f"bad query {q.id}")
    for d in col.docs:
        if not d.text.strip():
            raise BuildError(f"empty document {d.id}")


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _jsonl(objs: Iterable[dict[str, str]]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False, sort_keys=False) + "\n" for o in objs).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_notice(col: Collection) -> str:
    """NOTICE.md: provenance, licences and the derivation rules."""
    n_py = sum(1 for q in col.queries if q.doc_id.startswith("pyfaq-"))
    n_perl = sum(1 for q in col.queries if q.doc_id.startswith("perlfaq"))
    n_lib = sum(1 for d in col.docs if d.id.startswith("pylib-"))
    dup_py, dup_perl = col.skipped.get("pyfaq-duplicate", 0), col.skipped.get("perlfaq-duplicate", 0)
    perl_lines: list[str] = []
    by_text: dict[str, list[str]] = {}
    for fname, text in col.perl_copyrights.items():
        by_text.setdefault(text, []).append(fname)
    for text, files in by_text.items():
        perl_lines.append(f"{', '.join(files)}:")
        perl_lines.append("")
        perl_lines.extend(f"> {ln}".rstrip() for ln in text.split("\n"))
        perl_lines.append("")
    py_copy = "\n>\n".join(f"> {ln}" for ln in col.python_copyright)
    return f"""# `faq` retrieval test collection: notices

This collection is derived from documentation shipped in two Debian bookworm
packages.  It is rebuilt byte for byte by `scripts/build_faq_dataset.py`
(`--check` verifies the shipped files).

| source | Debian package | version | .deb sha256 |
|---|---|---|---|
| Python FAQ, Python library reference | `{PYTHON_DOC.name}` | `{PYTHON_DOC.version}` | `{PYTHON_DOC.sha256}` |
| perlfaq1-perlfaq9 | `{PERL_DOC.name}` | `{PERL_DOC.version}` | `{PERL_DOC.sha256}` |

## Python documentation (PSF-2.0)

Files: `/{PY_FAQ_DIR}/*.rst.txt` (Python FAQ) and `/{PY_LIB_DIR}/*.rst.txt`
(library reference) from `{PYTHON_DOC.name}` {PYTHON_DOC.version}.  As stated
in its `copyright.rst.txt`, Python and this documentation is:

{py_copy}

The Python documentation is licensed under the Python Software Foundation
License Version 2 (PSF-2.0); examples, recipes and other code in the
documentation are additionally licensed under the Zero Clause BSD License.
The full licence texts are in the package (`/usr/share/doc/python3.11/html/license.html`)
and at <https://docs.python.org/3.11/license.html>.

## perlfaq (Perl's terms: Artistic License or GPL)

Files: `/{PERL_POD_DIR}/perlfaq1.pod` .. `perlfaq9.pod` from
`{PERL_DOC.name}` {PERL_DOC.version}.  The "AUTHOR AND COPYRIGHT" sections,
exactly as they appear in the pods:

{chr(10).join(perl_lines).rstrip()}

The perlfaq documentation is free; you can redistribute it and/or modify it
under the same terms as Perl itself, that is, under either the Artistic
License or the GNU General Public License (version 1 or, at your option,
any later version).  All code examples in the perlfaq files are placed into
the public domain by their authors.

## Derivation

* Python FAQ: every leaf section below the page title of
  `faq/*.rst.txt` (except `index`) is a question; the section heading is the
  query text and the section body, up to the next heading, is the answer
  document (`pyfaq-<page>-NNNN`).  Sections with sub-sections only group
  questions and are not used.
* perlfaq: every `=head2` of `perlfaq1.pod` .. `perlfaq9.pod` is a question;
  its body up to the next `=head1`/`=head2` is the answer
  (`perlfaqN-NNNN`).
* Questions whose answer has fewer than {MIN_ANSWER_WORDS} words are skipped
  (skipped: {col.skipped.get('pyfaq', 0)} Python, {col.skipped.get('perlfaq', 0)} Perl).
  A question whose text (case and spacing ignored) was already asked by an
  earlier entry, in the order Python FAQ pages sorted by name then
  perlfaq1..9, is dropped with its answer, so no unjudged duplicate answer
  stays in the corpus (dropped: {dup_py} Python, {dup_perl} Perl).
  Each kept question is a query `q-<doc id>` with exactly one relevant
  document (grade 1), its own answer.
* Markup is stripped: reST roles, literals, emphasis and links keep only
  their visible text; index/toctree/build directives are dropped; object
  descriptions keep their signature; POD formatting codes keep their text
  (`X<>` index entries dropped, `E<>` escapes resolved, `L<>` rendered as in
  perlpodspec).  Code blocks are kept as text.
* Distractors (`pylib-<page>-NNNN`): the library reference pages in sorted
  file order; each section's own body is converted to text and packed,
  paragraph by paragraph, into passages of at most {PASSAGE_MAX_WORDS} words
  (longer blocks cut at line or word boundaries); passages under
  {PASSAGE_MIN_WORDS} words are dropped; the first {PASSAGES_PER_PAGE}
  passages of each page are kept.  No randomness is involved.
* Document titles are the page title plus grouping headings (never the
  question itself).

Counts: {len(col.docs)} documents ({n_py} Python FAQ answers, {n_perl} perlfaq
answers, {n_lib} library passages), {len(col.queries)} queries
({n_py} Python, {n_perl} Perl), {len(col.queries)} judgments.
"""


def write_collection(col: Collection, out: Path, debs: dict[str, str]) -> None:
    """Write the BEIR files, NOTICE.md and MANIFEST.json into ``out``."""
    payloads: dict[str, bytes] = {
        "corpus.jsonl": _jsonl({"_id": d.id, "title": d.title, "text": d.text} for d in col.docs),
        "queries.jsonl": _jsonl({"_id": q.id, "text": q.text} for q in col.queries),
        "qrels/test.tsv": (
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q.id}\t{q.doc_id}\t1\n" for q in col.queries)
        ).encode("utf-8"),
    }
    manifest = {
        "name": DATASET_NAME,
        "version": DATASET_VERSION,
        "sources": [{"package": p.name, "version": p.version, "sha256": debs[p.name]} for p in PINNED],
        "files": {name: sha256_bytes(data) for name, data in payloads.items()},
        "counts": {"documents": len(col.docs), "queries": len(col.queries), "qrels": len(col.queries)},
    }
    payloads["NOTICE.md"] = render_notice(col).encode("utf-8")
    manifest_text = json.dumps(manifest, ensure_ascii=False, sort_keys=False, indent=2) + "\n"
    payloads["MANIFEST.json"] = manifest_text.encode("utf-8")
    for name, data in payloads.items():
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        LOG.info("wrote %s (%d bytes)", dest, len(data))


# ---------------------------------------------------------------------------
# Fetching and extraction
# ---------------------------------------------------------------------------


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"'{name}' is not on PATH; it is needed to fetch/extract the Debian packages")
    return path


def _deb_field(deb: Path, fieldname: str) -> str:
    return subprocess.run(
        [_require_tool("dpkg-deb"), "-f", str(deb), fieldname], check=True, capture_output=True, text=True
    ).stdout.strip()


def _candidate_version(name: str) -> str:
    """The version apt would give now (for error messages only)."""
    try:
        res = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    m = re.search(r"Candidate:\s*(\S+)", res.stdout)
    return m.group(1) if m else "unknown"


def fetch_deb(pin: PinnedDeb, debs_dir: Path | None, work: Path) -> Path:
    """Locate (``--debs``) or ``apt-get download`` the pinned .deb and verify it.

    The sha256 check is what makes the build reproducible: the same version
    string could in principle be rebuilt with different bytes.
    """
    if debs_dir is not None:
        deb = debs_dir / pin.filename
        if not deb.is_file():
            others = sorted(p.name for p in debs_dir.glob(f"{pin.name}_*.deb"))
            found = f"found {', '.join(others)}" if others else "no .deb of that package found"
            raise BuildError(
                f"{pin.name}: expected {pin.filename} (version {pin.version}) in {debs_dir}; {found}"
            )
    else:
        apt = _require_tool("apt-get")
        LOG.info("apt-get download %s=%s", pin.name, pin.version)
        res = subprocess.run(
            [apt, "download", f"{pin.name}={pin.version}"], cwd=work, capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise BuildError(
                f"apt-get download {pin.name}={pin.version} failed (exit {res.returncode}): "
                f"{res.stderr.strip()}\nThe archive now offers version {_candidate_version(pin.name)}; "
                f"update the pins in {Path(__file__).name} deliberately if the sources changed."
            )
        deb = work / pin.filename
        if not deb.is_file():
            got = sorted(p.name for p in work.glob(f"{pin.name}_*.deb"))
            raise BuildError(f"{pin.name}: apt-get download produced {got}, expected {pin.filename}")
    version = _deb_field(deb, "Version")
    package = _deb_field(deb, "Package")
    digest = sha256_file(deb)
    if package != pin.name or version != pin.version:
        raise BuildError(
            f"{deb.name}: found package {package} version {version}; expected {pin.name} version {pin.version}"
        )
    if digest != pin.sha256:
        raise BuildError(
            f"{deb.name}: sha256 mismatch for {package} {version}: found {digest}, expected {pin.sha256} "
            "(the archive rebuilt this version or the file is corrupt; do not update the pin without "
            "reviewing the resulting collection)"
        )
    LOG.info("verified %s %s sha256 %s", pin.name, pin.version, digest)
    return deb


def extract_deb(deb: Path, dest: Path) -> None:
    """Extract the data part of a .deb (``dpkg-deb -x``)."""
    subprocess.run([_require_tool("dpkg-deb"), "-x", str(deb), str(dest)], check=True)


def build(out: Path, debs_dir: Path | None) -> None:
    """Fetch, verify, extract and write the collection into ``out``."""
    with tempfile.TemporaryDirectory(prefix="faq-build-") as tmp:
        work = Path(tmp)
        root = work / "root"
        root.mkdir()
        digests: dict[str, str] = {}
        for pin in PINNED:
            deb = fetch_deb(pin, debs_dir, work)
            digests[pin.name] = pin.sha256
            extract_deb(deb, root)
        col = build_collection(root)
        out.mkdir(parents=True, exist_ok=True)
        write_collection(col, out, digests)
        LOG.info("documents=%d queries=%d", len(col.docs), len(col.queries))


def check(out: Path, debs_dir: Path | None) -> list[str]:
    """Rebuild into a temporary directory; return the files that differ."""
    with tempfile.TemporaryDirectory(prefix="faq-check-") as tmp:
        fresh = Path(tmp) / "faq"
        build(fresh, debs_dir)
        differing: list[str] = []
        for name in ALL_OUTPUT_FILES:
            a, b = out / name, fresh / name
            if not a.is_file() or not filecmp.cmp(a, b, shallow=False):
                differing.append(name)
        return differing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument(
        "--debs", type=Path, default=None, help="folder with already-downloaded .deb files (default: apt-get download)"
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild into a temp dir and compare byte for byte with --out"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.check:
            differing = check(args.out, args.debs)
            if differing:
                LOG.error("shipped files differ from a fresh build in %s: %s", args.out, ", ".join(differing))
                return 1
            LOG.info("all %d files in %s are identical to a fresh build", len(ALL_OUTPUT_FILES), args.out)
            return 0
        build(args.out, args.debs)
    except BuildError as exc:
        LOG.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
