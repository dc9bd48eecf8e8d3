"""The embedded LM texts (sparsebench/data/lmtext) and their builder, scripts/make_lm_text.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from types import ModuleType

import pytest

from sparsebench import lmtext
from sparsebench.errors import ConfigError
from sparsebench.lmtext import LMText, available, load_text, text_checksum

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_lm_text.py"
DATA_DIR = Path(str(files("sparsebench"))) / "data" / "lmtext"
MANIFEST = json.loads((DATA_DIR / "MANIFEST.json").read_text(encoding="utf-8"))


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_lm_text", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_lm_text"] = mod
    spec.loader.exec_module(mod)
    return mod


mlt = _load_script()
# Read at import time: the autouse fixture in conftest.py points SPARSEBENCH_CACHE at a temp dir
# for each test, and the rebuild check wants the user's real download cache.
REAL_DOWNLOADS = mlt.default_download_dir()


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def shingles(text: str, k: int = 12) -> set[tuple[str, ...]]:
    w = text.split()
    return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}


@pytest.fixture(autouse=True)
def _fresh_manifest_cache():
    lmtext._manifest.cache_clear()
    yield
    lmtext._manifest.cache_clear()


# --- the shipped texts --------------------------------------------------------------------------


def test_available() -> None:
    assert available() == ("austen", "wiki")


@pytest.mark.parametrize("name", ["austen", "wiki"])
@pytest.mark.parametrize("part", ["eval", "calib"])
def test_load_verifies_checksum_and_format(name: str, part: str) -> None:
    t = load_text(name, part)
    assert isinstance(t, LMText) and (t.name, t.part) == (name, part)
    raw = (DATA_DIR / f"{name}.{part}.txt").read_bytes()
    assert t.sha256 == hashlib.sha256(raw).hexdigest() == MANIFEST["files"][f"{name}.{part}.txt"]
    assert t.text == raw.decode("utf-8")
    # Normalized: \n only, no trailing spaces, one blank line between paragraphs, final newline.
    assert "\r" not in t.text and t.text.endswith("\n") and not t.text.endswith("\n\n")
    assert "\n\n\n" not in t.text
    assert all(line == line.strip() for line in t.text.split("\n"))
    assert t.source["package"] in {"r-cran-janeaustenr", "gensim"} and t.source["licence"]
    assert t.source["sha256"] and len(t.source["sha256"]) == 64


@pytest.mark.parametrize(("name", "part", "lo", "hi"), [
    ("austen", "eval", 60_000, 80_000), ("austen", "calib", 30_000, 40_000),
    ("wiki", "eval", 60_000, 80_000), ("wiki", "calib", 30_000, 40_000),
])
def test_word_counts_in_range_and_match_manifest(name: str, part: str, lo: int, hi: int) -> None:
    n = len(load_text(name, part).text.split())
    assert lo <= n <= hi
    assert MANIFEST["texts"][name]["parts"][part]["words"] == n


def test_package_size() -> None:
    assert sum(p.stat().st_size for p in DATA_DIR.iterdir()) < 2_500_000


@pytest.mark.parametrize("name", ["austen", "wiki"])
def test_eval_and_calib_are_disjoint(name: str) -> None:
    ev, ca = load_text(name, "eval").text, load_text(name, "calib").text
    long_ev = {p for p in paragraphs(ev) if len(p.split()) >= 20}
    long_ca = {p for p in paragraphs(ca) if len(p.split()) >= 20}
    assert long_ev and long_ca
    assert not long_ev & long_ca
    sc = shingles(ca)
    shared = shingles(ev) & sc
    assert len(shared) / len(sc) < 0.001, sorted(shared)[:5]


def test_split_items_are_disjoint_and_listed() -> None:
    wiki = MANIFEST["texts"]["wiki"]["parts"]
    assert wiki["eval"]["items"] and wiki["calib"]["items"]
    assert not set(wiki["eval"]["items"]) & set(wiki["calib"]["items"])
    notice = (DATA_DIR / "NOTICE.md").read_text(encoding="utf-8")
    assert "CC BY-SA" in notice and "Wikipedia contributors" in notice and "modified" in notice
    assert all(f". {t}\n" in notice for t in wiki["eval"]["items"] + wiki["calib"]["items"])
    austen = MANIFEST["texts"]["austen"]["parts"]
    assert all(i.startswith("Pride and Prejudice:") for i in austen["eval"]["items"])
    assert all(i.startswith("Sense and Sensibility:") for i in austen["calib"]["items"])
    for name in ("austen", "wiki"):
        assert MANIFEST["texts"][name]["split_rule"]


# --- errors -------------------------------------------------------------------------------------


def test_unknown_name_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown LM text 'austin'.*did you mean 'austen'"):
        load_text("austin")
    with pytest.raises(ConfigError, match=r"unknown LM text 'zzz' \(available: austen, wiki\)"):
        load_text("zzz")


def test_unknown_part() -> None:
    with pytest.raises(ConfigError, match=r"unknown part 'test'"):
        load_text("wiki", "test")
    with pytest.raises(ConfigError, match=r"did you mean 'calib'"):
        load_text("wiki", "calibration")


def test_checksum_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "lmtext"
    shutil.copytree(DATA_DIR, copy)
    (copy / "wiki.calib.txt").write_bytes((copy / "wiki.calib.txt").read_bytes() + b"tampered\n")
    monkeypatch.setattr(lmtext, "_data_dir", lambda: copy)
    assert load_text("wiki", "eval").sha256 == MANIFEST["files"]["wiki.eval.txt"]
    with pytest.raises(ConfigError, match=r"'wiki' \(calib\).*has sha256 [0-9a-f]{64}, but MANIFEST.json pins"):
        load_text("wiki", "calib")


# --- text_checksum ------------------------------------------------------------------------------


def test_text_checksum() -> None:
    both = text_checksum(["austen", "wiki"])
    assert both == text_checksum(["wiki", "austen", "wiki"]) == text_checksum(("wiki", "austen"))
    assert text_checksum("wiki") == text_checksum(["wiki"])
    assert len({both, text_checksum(["wiki"]), text_checksum(["austen"])}) == 3
    with pytest.raises(ConfigError, match="did you mean 'wiki'"):
        text_checksum(["wikki"])
    with pytest.raises(ConfigError):
        text_checksum([])


def test_text_checksum_follows_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = text_checksum(["austen"])
    copy = tmp_path / "lmtext"
    shutil.copytree(DATA_DIR, copy)
    m = json.loads((copy / "MANIFEST.json").read_text(encoding="utf-8"))
    m["texts"]["austen"]["parts"]["calib"]["sha256"] = "0" * 64
    (copy / "MANIFEST.json").write_text(json.dumps(m), encoding="utf-8")
    monkeypatch.setattr(lmtext, "_data_dir", lambda: copy)
    lmtext._manifest.cache_clear()
    assert text_checksum(["austen"]) != before
    assert text_checksum(["wiki"]) == text_checksum(["wiki"])


# --- the builder's rules ------------------------------------------------------------------------


def test_strip_wiki_markup() -> None:
    wikitext = (
        "{{Infobox person |name=Ada {{nested|x}} |born=1815}}\n"
        "'''Ada Lovelace''' ({{lang-fr|x}}; 1815 – 1852) was an English [[mathematician]] and "
        "[[Writer|writer]],<ref>Toole, p. 5</ref> known for [[Charles Babbage]]'s "
        "[[Analytical Engine#Design|proposed computer]]. Born in&nbsp;London.<!-- note -->\n"
        "[[File:Ada.jpg|thumb|Portrait of [[Ada Lovelace|Ada]] with Bicyclo[1.1.0]butane]]\n"
        "== Early life ==\n"
        "Her father was [[Lord Byron]]; see [http://example.org/b the poet's page] and http://example.org/x too.\n"
        "{| class=\"wikitable\"\n! Year !! Event\n|-\n| 1833 || met Babbage\n|}\n"
        "* A list item that is dropped entirely here.\n"
        "== References ==\n* Toole, Betty. Ada, the Enchantress of Numbers.\n"
        "=== Sub of references ===\nStill inside references, so it is skipped too.\n"
        "== Legacy ==\nThe [[Ada (programming language)|Ada language]] is named after her.\n"
        "Short.\n\nTiny.\n[[Category:1815 births]]\n"
    )
    assert mlt.strip_wiki_markup(wikitext) == [
        "Ada Lovelace (1815 – 1852) was an English mathematician and writer, known for Charles Babbage's "
        "proposed computer. Born in London.",
        "Her father was Lord Byron; see the poet's page and too.",
        "The Ada language is named after her. Short.",
    ]


def test_austen_chapters_and_selection() -> None:
    lines = ["PRIDE", "", "Chapter 1", "", "It is a _truth_ universally", "acknowledged.", "",
             "  * * * * *", "Second para.", "CHAPTER II", "", "More words here now.", ""]
    chs = mlt.austen_chapters(lines)
    assert [c.heading for c in chs] == ["Chapter 1", "CHAPTER II"]
    assert chs[0].paragraphs == ("Chapter 1", "It is a truth universally acknowledged.", "Second para.")
    assert chs[1].paragraphs == ("CHAPTER II", "More words here now.")
    assert mlt.take_chapters(chs, 3) == chs[:1]
    assert mlt.take_chapters(chs, chs[0].words + 1) == chs
    with pytest.raises(mlt.BuildError):
        mlt.take_chapters(chs, 10_000)


def test_lead_paragraphs() -> None:
    ps = ["a " * 10, "b " * 10, "c " * 10]
    assert mlt.lead_paragraphs(ps, 25) == ps[:2]
    assert mlt.lead_paragraphs(ps, 5) == ps[:1]  # at least one paragraph


# --- rebuild check ------------------------------------------------------------------------------


def test_rebuild_check_matches_shipped_files() -> None:
    needed = [REAL_DOWNLOADS / mlt.JANEAUSTENR.filename, REAL_DOWNLOADS / mlt.GENSIM.filename]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"source packages not in the download cache {REAL_DOWNLOADS}: {', '.join(missing)} "
                    "(run scripts/make_lm_text.py once to fetch them)")
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb on PATH to extract the Debian package")
    if importlib.util.find_spec("rdata") is None:
        pytest.skip("needs rdata (pip install -e .[textdata]) to read the R data")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(DATA_DIR), "--downloads", str(REAL_DOWNLOADS)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "identical to a fresh build" in res.stderr


@pytest.mark.slow  # a second full rebuild (~4 s); the check above already runs one by default
def test_check_reports_differing_file(tmp_path: Path) -> None:
    needed = [REAL_DOWNLOADS / mlt.JANEAUSTENR.filename, REAL_DOWNLOADS / mlt.GENSIM.filename]
    if not all(p.is_file() for p in needed) or shutil.which("dpkg-deb") is None \
            or importlib.util.find_spec("rdata") is None:
        pytest.skip(f"source packages not in {REAL_DOWNLOADS}, or dpkg-deb/rdata missing")
    shipped = tmp_path / "lmtext"
    shutil.copytree(DATA_DIR, shipped)
    (shipped / "austen.calib.txt").write_text("changed\n", encoding="utf-8")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--out", str(shipped), "--downloads", str(REAL_DOWNLOADS)],
        capture_output=True, text=True, timeout=600,
    )
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and errors[0].endswith(": austen.calib.txt"), errors
