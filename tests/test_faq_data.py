"""Tests for the embedded ``faq`` retrieval collection and its rebuild script."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "sparsebench" / "data" / "faq"
SCRIPT = REPO_ROOT / "scripts" / "build_faq_dataset.py"


def _load_script() -> ModuleType:
    name = "build_faq_dataset"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bf() -> ModuleType:
    return _load_script()


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict[str, str]]:
    docs = _read_jsonl(DATA_DIR / "corpus.jsonl")
    ids = [d["_id"] for d in docs]
    assert len(ids) == len(set(ids)), "duplicate document ids"
    return {d["_id"]: d for d in docs}


@pytest.fixture(scope="module")
def queries() -> dict[str, dict[str, str]]:
    qs = _read_jsonl(DATA_DIR / "queries.jsonl")
    ids = [q["_id"] for q in qs]
    assert len(ids) == len(set(ids)), "duplicate query ids"
    return {q["_id"]: q for q in qs}


@pytest.fixture(scope="module")
def qrels() -> list[tuple[str, str, int]]:
    lines = (DATA_DIR / "qrels" / "test.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "query-id\tcorpus-id\tscore"
    assert lines[-1] == "", "qrels must end with a newline"
    rows = []
    for line in lines[1:-1]:
        qid, did, score = line.split("\t")
        rows.append((qid, did, int(score)))
    return rows


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((DATA_DIR / "MANIFEST.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------
# Shipped files
# ---------------------------------------------------------------------------


def test_manifest_counts_and_hashes(manifest, corpus, queries, qrels) -> None:
    assert manifest["name"] == "faq"
    assert manifest["version"] == 1
    assert manifest["counts"] == {"documents": len(corpus), "queries": len(queries), "qrels": len(qrels)}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest, name
    assert set(manifest["files"]) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}


def test_manifest_sources_match_script_pins(manifest, bf) -> None:
    pins = [{"package": p.name, "version": p.version, "sha256": p.sha256} for p in bf.PINNED]
    assert manifest["sources"] == pins
    assert {s["package"] for s in manifest["sources"]} == {"python3.11-doc", "perl-doc"}


def test_files_are_canonical_utf8_lf() -> None:
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "NOTICE.md", "MANIFEST.json"):
        raw = (DATA_DIR / name).read_bytes()
        raw.decode("utf-8")
        assert b"\r" not in raw, name
        assert raw.endswith(b"\n"), name
    for name in ("corpus.jsonl", "queries.jsonl"):
        for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines():
            assert json.dumps(json.loads(line), ensure_ascii=False, sort_keys=False) == line


def test_every_query_has_exactly_one_relevant_doc(corpus, queries, qrels) -> None:
    by_query: dict[str, list[str]] = {}
    for qid, did, score in qrels:
        assert score == 1
        assert did in corpus, did
        by_query.setdefault(qid, []).append(did)
    assert set(by_query) == set(queries)
    for qid, dids in by_query.items():
        assert len(dids) == 1, qid
        assert dids[0] == qid.removeprefix("q-")


def test_no_empty_texts(corpus, queries) -> None:
    for doc in corpus.values():
        assert doc["text"].strip(), doc["_id"]
        assert set(doc) == {"_id", "title", "text"}
    for q in queries.values():
        assert q["text"].strip(), q["_id"]
        assert set(q) == {"_id", "text"}


def test_sources_and_sizes(corpus, queries) -> None:
    py = [q for q in queries if q.startswith("q-pyfaq-")]
    perl = [q for q in queries if q.startswith("q-perlfaq")]
    lib = [d for d in corpus if d.startswith("pylib-")]
    assert 150 <= len(py) <= 220
    assert 250 <= len(perl) <= 320
    assert len(py) + len(perl) == len(queries)
    assert 3000 <= len(corpus) <= 5000
    assert len(lib) == len(corpus) - len(queries)
    assert (DATA_DIR / "corpus.jsonl").stat().st_size < 6_000_000
    for did in lib:
        n = len(corpus[did]["text"].split())
        assert 100 <= n <= 250, did


def test_no_leftover_markup(corpus, queries) -> None:
    for q in queries.values():
        assert ":func:`" not in q["text"] and "``" not in q["text"] and "C<" not in q["text"]
    faq_docs = [d for d in corpus.values() if not d["_id"].startswith("pylib-")]
    assert not [d["_id"] for d in corpus.values() if ":func:`" in d["text"] or ":meth:`" in d["text"]]
    assert not [d["_id"] for d in faq_docs if "E<gt>" in d["text"] or "C<" in d["text"]]


def test_spot_check_python_executable(corpus, queries) -> None:
    hits = [q for q in queries.values() if q["text"] == "How do I make a Python script executable on Unix?"]
    assert len(hits) == 1
    q = hits[0]
    assert q["_id"].startswith("q-pyfaq-library-")
    doc = corpus[q["_id"].removeprefix("q-")]
    assert "#!" in doc["text"]
    assert "chmod +x" in doc["text"]
    assert "executable" not in doc["title"]  # the question does not leak into the title


def test_spot_check_perl(corpus, queries) -> None:
    hits = [q for q in queries.values() if q["text"] == "How do I reverse a string?"]
    assert len(hits) == 1 and hits[0]["_id"].startswith("q-perlfaq4-")
    doc = corpus[hits[0]["_id"].removeprefix("q-")]
    assert "reverse" in doc["text"]
    assert doc["title"].startswith("perlfaq4 - Data Manipulation")
    # E<...>/C<< >> decoding: the spaceship operator appears in perlfaq4's sort answer.
    assert any("<=>" in d["text"] for d in corpus.values() if d["_id"].startswith("perlfaq4-"))


def test_duplicate_question_dropped(queries) -> None:
    texts = [" ".join(q["text"].lower().split()) for q in queries.values()]
    assert len(texts) == len(set(texts))
    assert "what is python?" in texts


def test_notice_mentions_licences(manifest) -> None:
    notice = (DATA_DIR / "NOTICE.md").read_text(encoding="utf-8")
    assert "PSF-2.0" in notice
    assert "Artistic License" in notice and "GPL" in notice
    assert "Copyright (c) 1997-2010 Tom Christiansen, Nathan Torkington, and" in notice
    for src in manifest["sources"]:
        assert src["package"] in notice and src["version"] in notice and src["sha256"] in notice


# ---------------------------------------------------------------------------
# Parsing helpers of the build script
# ---------------------------------------------------------------------------


def test_rst_inline(bf) -> None:
    src = (
        "Use :func:`os.path.join` or :meth:`~pathlib.PurePath.joinpath`, see "
        ":ref:`the tutorial <tut-files>` and `Python\n<https://python.org>`_; "
        "``x = *y*`` is **bold** and *em*; :pep:`8`; f(*args, **kwargs) stays.[#]_"
    )
    assert bf.rst_inline_to_text(src) == (
        "Use os.path.join or joinpath, see the tutorial and Python; "
        "x = *y* is bold and em; PEP 8; f(*args, **kwargs) stays."
    )


def test_rst_blocks_literal_directives_lists(bf) -> None:
    src = "\n".join(
        [
            ".. index:: single: foo",
            "",
            "Intro paragraph that",
            "wraps::",
            "",
            "   def f(x):",
            "       return x  # :func:`kept`",
            "",
            "* first item with ``code``",
            "* second item",
            "",
            ".. versionadded:: 3.2",
            "   The *spam* option.",
            "",
            ".. note::",
            "",
            "   A note.",
            "",
            ".. function:: join(a, b)",
            "   :noindex:",
            "",
            "   Join things.",
            "",
            ">>> 1 + 1",
            "2",
            "",
            ".. a comment",
            "   spanning lines",
        ]
    )
    assert bf.rst_to_blocks(src) == [
        "Intro paragraph that wraps:",
        "def f(x):\n    return x  # :func:`kept`",
        "* first item with code\n* second item",
        "New in version 3.2. The spam option.",
        "A note.",
        "join(a, b)",
        "Join things.",
        ">>> 1 + 1\n2",
    ]


def test_rst_list_item_literal_and_continuation(bf) -> None:
    src = "* Use getattr::\n\n     getattr(a, 'b')\n\n  Note that :func:`getattr` works.\n"
    assert bf.rst_to_blocks(src) == ["* Use getattr:", "getattr(a, 'b')", "Note that getattr works."]
    # "+ x" inside a prose paragraph is text, not a list item.
    assert bf.rst_to_blocks("In decimal, ``0.1\n+ 0.2`` is exact.") == ["In decimal, 0.1 + 0.2 is exact."]


def test_rst_version_directives(bf) -> None:
    assert bf.rst_to_blocks(".. deprecated-removed:: 3.6 3.12\n   Use :mod:`foo` instead.") == [
        "Deprecated since version 3.6, will be removed in version 3.12: Use foo instead."
    ]
    assert bf.rst_to_blocks(".. versionchanged:: 3.3") == ["Changed in version 3.3."]


def test_rst_tables(bf) -> None:
    grid = "\n".join(
        [
            "+--------------+--------+",
            "| Operation    | Result |",
            "+==============+========+",
            "| :func:`math. | x      |",
            "| trunc`       |        |",
            "+--------------+--------+",
        ]
    )
    assert bf.rst_to_blocks(grid) == ["Operation | Result\nmath. trunc | x"]
    simple = "\n".join(["=====  ======", "Char   Type", "=====  ======", "``x``  pad", "c      char", "=====  ======"])
    assert bf.rst_to_blocks(simple) == ["Char | Type\nx | pad\nc | char"]


def test_rst_sections_levels_and_leaves(bf) -> None:
    src = "\n".join(
        [
            "=====",
            "Title",
            "=====",
            "",
            "Group",
            "=====",
            "",
            "Question one?",
            "-------------",
            "",
            "Answer one.",
            "",
            "Question two?",
            "-------------",
            "",
            "Answer two.",
        ]
    )
    secs = [s for s in bf.split_rst_sections(src) if s.level >= 0]
    assert [(s.title, s.level, s.has_children) for s in secs] == [
        ("Title", 0, True),
        ("Group", 1, True),
        ("Question one?", 2, False),
        ("Question two?", 2, False),
    ]
    assert secs[3].parents == ["Title", "Group"]


def test_python_faq_pairs_skip_short(bf) -> None:
    src = "\n".join(
        [
            "=======",
            "Our FAQ",
            "=======",
            "",
            "Empty group",
            "===========",
            "",
            "Topic",
            "=====",
            "",
            "How do I use :func:`len`?",
            "-------------------------",
            "",
            "Call ``len(x)`` on any sized container to get the number of items it holds.",
            "",
            "Is it fast?",
            "-----------",
            "",
            "Yes.",
        ]
    )
    pairs, skipped = bf.python_faq_pairs("ours", src)
    assert pairs == [
        (
            "How do I use len?",
            "Our FAQ: Topic",
            "Call len(x) on any sized container to get the number of items it holds.",
        )
    ]
    assert skipped == 2  # "Empty group" (no body) and "Is it fast?" (1 word)


def test_pod_inline(bf) -> None:
    assert bf.pod_inline_to_text("C<< $a <=> $b >> and C<$x E<gt> 1>") == "$a <=> $b and $x > 1"
    assert bf.pod_inline_to_text("see L<perlfunc/split> or L<the docs|http://x.org/>") == (
        'see "split" in perlfunc or the docs'
    )
    assert bf.pod_inline_to_text('L</"How do I foo?"> X<index entry>B<I<bold>> F<file.txt>') == (
        '"How do I foo?" bold file.txt'
    )
    assert bf.pod_inline_to_text("L<< (?PARNO)|perlre/C<(?PARNO)> >> E<sol>E<0x41>") == "(?PARNO) /A"
    # A lone "<" that opens no code is kept.
    assert bf.pod_inline_to_text("if $a < $b") == "if $a < $b"


def test_pod_blocks_and_parse(bf) -> None:
    pod = "\n".join(
        [
            "=head1 NAME",
            "",
            "perlfaqX - Test FAQ",
            "",
            "=head1 Things",
            "",
            "=head2 How do I C<print>?",
            "",
            "Use the C<print>",
            "function, which is described in L<perlfunc>.",
            "",
            "    print \"hi\\n\";",
            "      # indented more",
            "",
            "=over 4",
            "",
            "=item *",
            "",
            "First B<point> here.",
            "",
            "=back",
            "",
            "=head2 Short?",
            "",
            "Yes.",
            "",
            "=head1 AUTHOR AND COPYRIGHT",
            "",
            "Copyright (c) 2000 Someone.",
        ]
    )
    title, qas = bf.parse_perlfaq(pod)
    assert title == "perlfaqX - Test FAQ"
    assert [(q.question, q.group) for q in qas] == [("How do I print?", "Things"), ("Short?", "Things")]
    assert qas[0].answer == (
        "Use the print function, which is described in perlfunc.\n\n"
        'print "hi\\n";\n  # indented more\n\n'
        "* First point here."
    )
    assert qas[1].answer == "Yes."
    assert bf.perlfaq_copyright(pod) == "Copyright (c) 2000 Someone."


def test_chunk_blocks(bf) -> None:
    prose = " ".join(f"w{i}" for i in range(600))
    code = "\n".join(f"x{i} = {i}" for i in range(200))  # 3 words per line
    passages = bf.chunk_blocks(["intro words here", prose, code], max_words=250)
    assert all(len(p.split()) <= 250 for p in passages)
    assert " ".join(" ".join(p.split()) for p in passages) == " ".join(f"intro words here {prose} {code}".split())
    assert any("\nx1 = 1\n" in p for p in passages)  # code keeps its lines


def test_fetch_deb_wrong_version_message(bf, tmp_path) -> None:
    (tmp_path / "perl-doc_5.36.0-7+deb12u3_all.deb").write_bytes(b"")
    with pytest.raises(bf.BuildError) as exc:
        bf.fetch_deb(bf.PERL_DOC, tmp_path, tmp_path)
    msg = str(exc.value)
    assert "5.36.0-7+deb12u4" in msg and "perl-doc_5.36.0-7+deb12u3_all.deb" in msg


def test_check_reports_differing_files(bf, tmp_path, monkeypatch, caplog) -> None:
    shipped = tmp_path / "shipped"
    shutil.copytree(DATA_DIR, shipped)

    def fake_build(out: Path, debs_dir: Path | None) -> None:
        shutil.copytree(DATA_DIR, out, dirs_exist_ok=True)

    monkeypatch.setattr(bf, "build", fake_build)
    assert bf.main(["--check", "--out", str(shipped)]) == 0
    (shipped / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        assert bf.main(["--check", "--out", str(shipped)]) == 1
    assert "qrels/test.tsv" in caplog.text and "corpus.jsonl" not in caplog.text


@pytest.mark.slow
def test_rebuild_check_matches_shipped_files() -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} on PATH to download and extract the Debian packages")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(DATA_DIR)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-4000:]
