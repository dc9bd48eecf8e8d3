"""`bench report`: the HTML leaderboard site, rendered from real records and parsed back.

The fixture writes records through `records.append` / `write_sidecar` (the runner's own code
path); the checks recompute frontiers, intervals, ratios and budgets from the fixture numbers
independently of the reporter and compare with what the page shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sparsebench import records, sidecars
from sparsebench.errors import BenchError, ResultsError
from sparsebench.report import (
    ReportOptions,
    build_report,
    build_site,
    command,
    render_site,
    write_report,
)

from .conftest import SAMPLE_RESULTS

EVIL_METHOD = 'bm25(x="</script><script>alert(1)</script>")'
EVIL_ERROR = 'boom <img src=x onerror=alert(2)> "</td></tr></table><script>alert(1)</script>'
DIRECTIONS = {"latency_p50_ms": "lower", "latency_p99_ms": "lower", "index_bytes": "lower",
              "batch_throughput": "higher", "peak_rss_mb": "lower", "search_flops_per_query": "lower"}
N_QUERIES = 40


# --- fixture -------------------------------------------------------------------------------

@dataclass
class Spec:
    method: str
    suite: str = "retrieval@1"
    profile: str = "cpu-2core"
    family: str = "sparse-encoder"
    quality: float = 0.5  # centre of the per-query values
    costs: dict = field(default_factory=dict)  # name -> value (None: not measured)
    finished_at: str = "2026-01-01T00:00:10+00:00"
    status: str = "ok"
    error: str | None = None
    run_id: str = "r0"
    extra: dict = field(default_factory=dict)  # more record fields (e.g. contention)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.suite}|{self.method}|{self.profile}".encode()).hexdigest()


def make_record(spec: Spec, results_dir: Path) -> tuple[dict, list[float]]:
    seed = int(spec.key[:8], 16) ^ int(hashlib.sha256(spec.run_id.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    qids = [f"q{i:02d}" for i in range(N_QUERIES)]
    ndcg = np.clip(rng.normal(spec.quality, 0.25, N_QUERIES), 0.0, 1.0).round(6)
    rr = np.clip(ndcg - 0.05, 0.0, 1.0)
    per_query = {q: {"nDCG@10": float(a), "RR@10": float(b), "latency_ms": 1.0} for q, a, b in zip(qids, ndcg, rr)}
    ok = spec.status == "ok"
    rec = {
        "schema": 1, "key": spec.key, "run_id": spec.run_id, "suite": spec.suite, "task": "retrieval",
        "method": spec.method, "method_name": spec.method.split("(")[0], "family": spec.family,
        "params": {"k1": 1.2, "note": spec.method}, "settings": {"top_k": 100},
        "dataset": {"id": "faq", "checksum": "c" * 64, "counts": {"documents": 100, "queries": N_QUERIES}},
        "main_metric": "nDCG@10",
        "metrics": {
            "nDCG@10": {"value": float(ndcg.mean()), "unit": "", "n": N_QUERIES, "direction": "higher"},
            "RR@10": {"value": float(rr.mean()), "unit": "", "n": N_QUERIES, "direction": "higher"},
        } if ok else {},
        "costs": {},
        "profile": {"id": spec.profile, "fingerprint": "fp-" + spec.profile, "matched": True},
        "provenance": {"git_commit": "abc123", "git_dirty": False, "packages": {"numpy": "2.0"}},
        "started_at": spec.finished_at.replace(":10+", ":05+"), "finished_at": spec.finished_at,
        "status": spec.status, "error": spec.error, "duration_s": 5.0,
    }
    if ok:
        for name, value in spec.costs.items():
            unit = {"latency_p50_ms": "ms", "latency_p99_ms": "ms", "index_bytes": "B", "batch_throughput": "queries/s",
                    "peak_rss_mb": "MiB", "search_flops_per_query": "FLOP"}[name]
            cost = {"value": value, "unit": unit, "n": 1}
            if value is None:
                cost["note"] = "not reported: 40 samples, 660 needed"
            if name == "search_flops_per_query":
                cost["proxy"] = True
            rec["costs"][name] = cost
        suite_name = spec.suite.split("@")[0]
        rec["per_query"] = sidecars.write_sidecar(results_dir, suite_name, spec.key, spec.run_id, per_query)
    rec.update(spec.extra)
    file = "retrieval.jsonl" if spec.suite == "retrieval@1" else "retrieval-v2.jsonl"
    records.append(results_dir / file, rec)
    return rec, [per_query[q]["nDCG@10"] for q in sorted(per_query)]


def c(p50: float, p99: float | None, size: float, tput: float, rss: float, flops: float | None = None) -> dict:
    out = {"latency_p50_ms": p50, "latency_p99_ms": p99, "index_bytes": size, "batch_throughput": tput, "peak_rss_mb": rss}
    if flops is not None:
        out["search_flops_per_query"] = flops
    return out


SPECS = [
    # group 1: retrieval@1 on cpu-2core, eight methods
    Spec("bm25", quality=0.45, costs=c(0.9, 1.4, 3.6e6, 2600, 102)),
    Spec("bm25(k1=0.9)", quality=0.44, costs=c(0.8, 1.6, 3.6e6, 2700, 102)),
    Spec("bm25(b=0.4)", quality=0.40, costs=c(0.7, None, 3.5e6, 2650, 103)),
    Spec("minilm", family="dense-encoder", quality=0.70, costs=c(15.8, 21.7, 4.9e6, 160, 1275, 2.4e6)),
    Spec("splade", family="sparse-encoder", quality=0.62, costs=c(9.0, 12.0, 8.0e6, 300, 900, 5.0e5)),
    Spec("colbert", family="multi-vector", quality=0.74, costs=c(40.0, 60.0, 9.0e7, 40, 2500, 9.0e7)),
    Spec("pq-minilm", family="compressor", quality=0.66, costs=c(12.0, 18.0, 6.0e5, 200, 1100, 3.0e5)),
    Spec(EVIL_METHOD, quality=0.30, costs=c(5.0, 6.0, 1.0e6, 500, 300)),
    # an older ok record of minilm's key (must be superseded) and failures, one malicious
    Spec("minilm", family="dense-encoder", quality=0.2, costs=c(99.0, 99.0, 9.9e6, 1, 9999), finished_at="2025-12-01T00:00:10+00:00", run_id="old"),
    Spec("splade", status="failed", error=EVIL_ERROR, finished_at="2025-12-02T00:00:10+00:00", run_id="f1"),
    Spec("unicoil", status="timeout", error="timed out after 3600 s", finished_at="2025-12-03T00:00:10+00:00", run_id="t1"),
    # group 2: same suite on another profile
    Spec("bm25", profile="h100-x1", quality=0.45, costs=c(0.5, 0.8, 3.6e6, 5000, 100)),
    Spec("minilm", profile="h100-x1", family="dense-encoder", quality=0.70, costs=c(2.0, 3.0, 4.9e6, 4000, 2000)),
    Spec("colbert", profile="h100-x1", family="multi-vector", quality=0.74, costs=c(3.0, 4.0, 9.0e7, 3000, 3000)),
    # group 3: a newer suite version on cpu-2core
    Spec("bm25", suite="retrieval@2", quality=0.47, costs=c(0.9, 1.4, 3.7e6, 2500, 104)),
    Spec("minilm", suite="retrieval@2", family="dense-encoder", quality=0.72, costs=c(16.0, 22.0, 4.9e6, 150, 1300)),
    Spec("splade", suite="retrieval@2", quality=0.60, costs=c(0.5, 0.7, 2.0e6, 3000, 90)),
]


@dataclass
class Fixture:
    results: Path
    shown: dict[str, tuple[Spec, dict, list[float]]]  # key -> latest ok (spec, record, per-query main values)


@pytest.fixture
def fixture(tmp_path: Path) -> Fixture:
    results = tmp_path / "results"
    shown: dict[str, tuple[Spec, dict, list[float]]] = {}
    for spec in SPECS:
        rec, values = make_record(spec, results)
        if spec.status == "ok" and (spec.key not in shown or shown[spec.key][0].finished_at < spec.finished_at):
            shown[spec.key] = (spec, rec, values)
    return Fixture(results, shown)


def groups_of(fx: Fixture) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for key, (spec, _, _) in fx.shown.items():
        out.setdefault((spec.suite, spec.profile), []).append(key)
    return out


# --- a small DOM from html.parser ----------------------------------------------------------

VOID = {"meta", "br", "wbr", "img", "input", "link", "hr", "col", "source"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list = field(default_factory=list)
    parent: Node | None = None

    def text(self) -> str:
        return "".join(ch if isinstance(ch, str) else ch.text() for ch in self.children)

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        out = []
        for ch in self.children:
            if isinstance(ch, Node):
                if (tag is None or ch.tag == tag) and (cls is None or cls in ch.attrs.get("class", "").split()) and all(
                    ch.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()
                ):
                    out.append(ch)
                out.extend(ch.find_all(tag, cls, **attrs))
        return out


class DomBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, parent=self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.cur.children.append(Node(tag, {k: v or "" for k, v in attrs}, parent=self.cur))

    def handle_endtag(self, tag: str) -> None:
        node = self.cur
        while node is not self.root and node.tag != tag:
            node = node.parent  # type: ignore[assignment]
        assert node is not self.root, f"unmatched </{tag}>"
        self.cur = node.parent  # type: ignore[assignment]

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(html: str) -> Node:
    b = DomBuilder()
    b.feed(html)
    b.close()
    assert b.cur is b.root, "unclosed elements"
    return b.root


def render_pages(results: Path, **options) -> dict[str, str]:
    return render_site(build_site(build_report(results, ReportOptions(**options))))


def render(results: Path, **options) -> tuple[str, Node]:
    """Every page of the site: their concatenated HTML, and one tree holding each page's tree."""
    pages = render_pages(results, **options)
    root = Node("#site", {})
    for rel, html in sorted(pages.items()):
        page = parse(html)
        page.tag, page.attrs = "#page", {"path": rel}
        page.parent = root
        root.children.append(page)
    return "".join(pages[k] for k in sorted(pages)), root


def resolve(page: str, href: str) -> tuple[str, str]:
    """(page path, fragment) a link on `page` points at, relative to the site root."""
    target, _, frag = href.partition("#")
    if not target:
        return page, frag
    parts = page.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts), frag


def sections(dom: Node) -> dict[tuple[str, str], Node]:
    return {(s.attrs["data-suite"], s.attrs["data-profile"]): s for s in dom.find_all("section", "group")}


# --- independent computations --------------------------------------------------------------

def brute_force_frontier(points: dict[str, tuple[float, float | None]], direction: str) -> set[str]:
    """O(n^2): keys whose (quality, cost) no other point weakly beats on both and strictly on one."""
    sign = 1.0 if direction == "lower" else -1.0
    pts = {k: (q, sign * cost) for k, (q, cost) in points.items() if cost is not None}
    front = set()
    for k, (q, cst) in pts.items():
        dominated = any(q2 >= q and c2 <= cst and (q2 > q or c2 < cst) for k2, (q2, c2) in pts.items() if k2 != k)
        if not dominated:
            front.add(k)
    return front


def loop_bootstrap(values: list[float], n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    means = []
    for row in idx:
        total = 0.0
        for i in row:
            total += values[i]
        means.append(total / len(values))
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


# --- tests ---------------------------------------------------------------------------------

def test_groups_are_separate_sections_and_say_why(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    secs = sections(dom)
    expected = groups_of(fixture)
    assert set(secs) == set(expected) == {("retrieval@1", "cpu-2core"), ("retrieval@1", "h100-x1"), ("retrieval@2", "cpu-2core")}
    for gk, section in secs.items():
        board = section.find_all("table", "leaderboard")[0]
        shown = {tr.attrs["data-key"] for tr in board.find_all("tr") if "data-key" in tr.attrs}
        assert shown == {"rec-" + k for k in expected[gk]}, gk
    sep = dom.find_all("p", "separation")[0].text()
    assert "shown separately" in sep and "suite version" in sep and "profile" in sep
    assert "costs are only comparable within a profile" in sep


def test_latest_ok_record_per_key_is_shown_with_its_count(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    section = sections(dom)[("retrieval@1", "cpu-2core")]
    minilm = next(k for k, (s, _, _) in fixture.shown.items() if s.method == "minilm" and s.profile == "cpu-2core" and s.suite == "retrieval@1")
    row = next(tr for tr in section.find_all("table", "leaderboard")[0].find_all("tr") if tr.attrs.get("data-key") == "rec-" + minilm)
    cells = row.find_all("td")
    assert cells[3].text() == "2"  # runs: the old ok record and the new one
    main = float(row.find_all("td", "main")[0].attrs["data-v"])
    assert main == pytest.approx(fixture.shown[minilm][1]["metrics"]["nDCG@10"]["value"], abs=1e-15)


def test_frontier_shown_equals_brute_force(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    secs = sections(dom)
    checked = 0
    for gk, keys in groups_of(fixture).items():
        tables = {t.attrs["data-axis"]: t for t in secs[gk].find_all("table", "frontier-table")}
        axes = {n for k in keys for n in fixture.shown[k][1]["costs"]}
        assert set(tables) == axes
        for axis, table in tables.items():
            points = {}
            for k in keys:
                rec = fixture.shown[k][1]
                cost = rec["costs"].get(axis, {}).get("value")
                points["rec-" + k] = (rec["metrics"]["nDCG@10"]["value"], cost)
            want = brute_force_frontier(points, DIRECTIONS[axis])
            got = {tr.attrs["data-key"] for tr in table.find_all("tr") if tr.attrs.get("data-frontier") == "yes"}
            assert got == want, (gk, axis)
            # the plot draws the same points filled
            figure = table.parent
            filled = [a.attrs["href"][1:] for a in figure.find_all("a") if a.find_all("circle", "front")]
            assert set(filled) == want, (gk, axis)
            checked += 1
    assert checked >= 14


def test_main_metric_interval_equals_direct_bootstrap(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    rows = [tr for s in sections(dom).values() for tr in s.find_all("table", "leaderboard")[0].find_all("tr") if "data-key" in tr.attrs]
    assert len(rows) == len(fixture.shown)
    for tr in rows:
        values = fixture.shown[tr.attrs["data-key"][4:]][2]
        ci = tr.find_all("td", "ci")[0]
        lo, hi = loop_bootstrap(values)
        assert float(ci.attrs["data-lo"]) == pytest.approx(lo, abs=1e-9)
        assert float(ci.attrs["data-hi"]) == pytest.approx(hi, abs=1e-9)
        assert lo <= float(tr.find_all("td", "main")[0].attrs["data-v"]) <= hi


def test_untrusted_text_is_escaped_everywhere(fixture: Fixture) -> None:
    pages = render_pages(fixture.results)
    html, dom = render(fixture.results)
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    for rel, page in pages.items():
        assert page.count("<script") == 1, rel  # the page's own script, nothing else
    # the malicious id appears, escaped, on its group's page, the index's best-of lines are safe,
    # and its method card (a page named by a digest, never by the id) shows it as text
    assert sum("&lt;script&gt;alert(1)" in page for page in pages.values()) >= 2
    assert all(name.startswith(("suites/", "methods/")) or "/" not in name for name in pages)
    assert all(all(ch.isalnum() or ch in "-_./" for ch in name) for name in pages)
    # the parsed page holds the malicious strings as text, in the leaderboard and in the failures
    section = sections(dom)[("retrieval@1", "cpu-2core")]
    assert EVIL_METHOD in [td.find_all("a")[0].text() for td in section.find_all("td", "method")]
    errors = [code.text() for code in section.find_all("table", "failures")[0].find_all("code")]
    assert EVIL_ERROR in errors
    details = [pre.text() for pre in section.find_all("pre", "error")]
    assert EVIL_ERROR in details


def test_every_number_links_to_an_existing_record_anchor(fixture: Fixture) -> None:
    _, site = render(fixture.results)
    pages = {p.attrs["path"]: p for p in site.children}
    ids = {rel: {n.attrs["id"] for n in page.find_all() if "id" in n.attrs} for rel, page in pages.items()}
    record_ids = {(rel, i) for rel, found in ids.items() for i in found if i.startswith("rec-")}
    assert len(record_ids) == len(fixture.shown) + 2  # the shown records and the two failures, each once in the site
    assert all(rel.startswith("suites/") for rel, _ in record_ids)  # records live on their group's page
    for _, rid in record_ids:
        assert all(ch in "0123456789abcdef-" for ch in rid[4:]), rid
    checked = {"suites": 0, "methods": 0, "index.html": 0, "profiles.html": 0}
    for rel, page in pages.items():
        for td in page.find_all("td", "num"):
            links = td.find_all("a")
            assert links, (rel, td.text())
            assert resolve(rel, links[0].attrs["href"]) in record_ids, (rel, links[0].attrs["href"])
            checked[rel.split("/")[0]] += 1
        for a in page.find_all("a"):
            target, frag = resolve(rel, a.attrs["href"])
            assert target in pages, (rel, a.attrs["href"])
            assert not frag or frag in ids[target], (rel, a.attrs["href"])
    # numbers on every kind of page: leaderboards, method cards, the index and the cross-profile ratios
    assert checked["suites"] > 200 and checked["methods"] >= len(fixture.shown)
    assert checked["index.html"] == 3 and checked["profiles.html"] > 10


def test_null_cost_shows_dash_with_note(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    section = sections(dom)[("retrieval@1", "cpu-2core")]
    key = next(k for k, (s, _, _) in fixture.shown.items() if s.method == "bm25(b=0.4)")
    row = next(tr for tr in section.find_all("table", "leaderboard")[0].find_all("tr") if tr.attrs.get("data-key") == "rec-" + key)
    dashes = [td for td in row.find_all("td", "num") if td.text() == "\u2014"]
    assert len(dashes) == 2  # latency_p99_ms (null) and search_flops_per_query (absent)
    assert any("660 needed" in td.attrs.get("title", "") for td in dashes)


def test_baseline_ratios_and_budgets(fixture: Fixture) -> None:
    _, dom = render(fixture.results, baseline="minilm", budgets=(("latency_p50_ms", 10.0),))
    section = sections(dom)[("retrieval@1", "cpu-2core")]
    keys = groups_of(fixture)[("retrieval@1", "cpu-2core")]
    recs = {"rec-" + k: fixture.shown[k][1] for k in keys}
    base = next(r for r in recs.values() if r["method"] == "minilm")
    table = section.find_all("table", "baseline")[0]
    heads = [th.text() for th in table.find_all("th")]
    i_p50 = heads.index("latency_p50_msratio")
    for tr in table.find_all("tr"):
        if "data-key" not in tr.attrs:
            continue
        rec, cells = recs[tr.attrs["data-key"]], tr.find_all("td")
        assert float(cells[1].attrs["data-v"]) == pytest.approx(rec["metrics"]["nDCG@10"]["value"] - base["metrics"]["nDCG@10"]["value"])
        assert float(cells[i_p50].attrs["data-v"]) == pytest.approx(rec["costs"]["latency_p50_ms"]["value"] / base["costs"]["latency_p50_ms"]["value"])
    budget_rows = [tr for tr in section.find_all("table", "budgets")[0].find_all("tr") if tr.attrs.get("data-axis") == "latency_p50_ms"]
    by_budget = {float(tr.find_all("td", "budget")[0].attrs["data-v"]): tr for tr in budget_rows}
    assert set(by_budget) == {10.0, base["costs"]["latency_p50_ms"]["value"]}
    for budget, tr in by_budget.items():
        within = [(r["metrics"]["nDCG@10"]["value"], k) for k, r in recs.items() if r["costs"]["latency_p50_ms"]["value"] <= budget]
        assert tr.find_all("td", "method")[0].find_all("a")[0].attrs["href"] == "#" + max(within)[1]
    # a group without the requested baseline says so instead of showing ratios against something else
    _, dom = render(fixture.results, baseline="colbert")
    v2 = sections(dom)[("retrieval@2", "cpu-2core")]
    assert not v2.find_all("table", "baseline")
    assert "baseline colbert has no ok record in this group" in [p.text() for p in v2.find_all("p", "note")]
    assert sections(dom)[("retrieval@1", "h100-x1")].find_all("table", "baseline")


def test_default_baseline_is_bm25(fixture: Fixture) -> None:
    _, dom = render(fixture.results)
    for section in sections(dom).values():
        assert [h.text() for h in section.find_all("h3") if h.text().startswith("Relative")] == ["Relative to baseline bm25"]


def test_output_is_deterministic_and_cli_writes_index(fixture: Fixture, tmp_path: Path) -> None:
    assert render_pages(fixture.results) == render_pages(fixture.results)
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "site"
    args = parser.parse_args(["report", "--results", str(fixture.results), "--out", str(out), "--budget", "latency_p50_ms=5", "--generated-at", "CI run 7"])
    before = sorted((p, p.stat().st_mtime_ns) for p in fixture.results.rglob("*"))
    (out / "suites").mkdir(parents=True)
    (out / "suites" / "gone.html").write_text("a page of a group no longer in the results")
    assert command.run(args) == 0
    html = (out / "index.html").read_text()
    assert "generated CI run 7" in html
    assert not (out / "suites" / "gone.html").exists()
    assert len(list((out / "suites").glob("*.html"))) == 3
    # the method cards come from the registry through the command: bm25's names its paper
    assert "Robertson" in (out / "methods" / "bm25.html").read_text()
    assert sorted((p, p.stat().st_mtime_ns) for p in fixture.results.rglob("*")) == before  # results untouched
    with pytest.raises(BenchError, match="--baseline nope"):
        command.run(parser.parse_args(["report", "--results", str(fixture.results), "--out", str(out), "--baseline", "nope"]))
    with pytest.raises(BenchError, match="--budget"):
        command.run(parser.parse_args(["report", "--results", str(fixture.results), "--out", str(out), "--budget", "latency=fast"]))
    with pytest.raises(BenchError, match="inside the results directory"):
        command.run(parser.parse_args(["report", "--results", str(fixture.results), "--out", str(fixture.results / "x")]))
    with pytest.raises(BenchError, match="does not exist"):
        command.run(parser.parse_args(["report", "--results", str(tmp_path / "none"), "--out", str(out)]))


def test_corrupt_results_file_is_a_one_line_error(fixture: Fixture, tmp_path: Path) -> None:
    with (fixture.results / "retrieval.jsonl").open("a") as f:
        f.write('{"schema": 1, "key": \n')
    with pytest.raises(ResultsError, match=r"retrieval.jsonl:\d+: corrupt record"):
        write_report(fixture.results, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tampered_sidecar_is_an_error(fixture: Fixture, tmp_path: Path) -> None:
    sidecar = next((fixture.results / "per-query").rglob("*.json"))
    sidecar.write_text(sidecar.read_text().replace("0", "1", 1))
    with pytest.raises(ResultsError, match="does not match the digest"):
        write_report(fixture.results, tmp_path / "out")


def test_renders_the_real_sample_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, results, ignore=shutil.ignore_patterns(".locks"))
    path = write_report(results, tmp_path / "reports")
    [page] = (tmp_path / "reports" / "suites").glob("*.html")
    html = page.read_text()
    dom = parse(html)
    assert page.name in path.read_text()  # the index links the group's page
    methods = {td.find_all("a")[0].text() for td in dom.find_all("table", "leaderboard")[0].find_all("td", "method")}
    assert methods == {"bm25", "bm25(k1=0.9)", "bm25(b=0.4)", "bm25(k1=0.9,b=0.4)", "minilm"}
    assert len(sections(dom)) == 1
    assert "Relative to baseline bm25" in html
    assert dom.find_all("svg", "plot")


def test_contended_records_are_marked_in_their_leaderboard_row(tmp_path: Path) -> None:
    from sparsebench.cli import main

    results = tmp_path / "results"
    busy = {"contention": {"detected": True, "max_other_runs": 3, "samples": 40}}
    quiet = {"contention": {"detected": False, "max_other_runs": 0, "samples": 40}}
    specs = [Spec("bm25", costs=c(0.9, 1.4, 3.6e6, 2600, 102), extra=busy),
             Spec("bm25(k1=0.9)", costs=c(0.8, 1.6, 3.6e6, 2700, 102), extra=quiet),
             Spec("minilm", family="dense-encoder", quality=0.7, costs=c(15.8, 21.7, 4.9e6, 160, 1275))]  # schema 1: no field
    for spec in specs:
        make_record(spec, results)
    out = tmp_path / "site"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    [page] = (out / "suites").glob("*.html")
    dom = parse(page.read_text())
    rows = {tr.attrs["data-key"]: tr for tr in dom.find_all("table", "leaderboard")[0].find_all("tr") if "data-key" in tr.attrs}
    badges = {key: tr.find_all("span", "contended") for key, tr in rows.items()}
    assert {key for key, found in badges.items() if found} == {"rec-" + specs[0].key}
    [badge] = badges["rec-" + specs[0].key]
    assert badge.text() == "contended" and "3 other sparsebench run(s)" in badge.attrs["title"]
    notes = [p.text() for p in dom.find_all("p", "note")]
    assert any(n.startswith("1 shown record(s) were measured while other sparsebench runs") for n in notes)
    # a malformed contention field is refused by every reader, as validate refuses it
    with (results / "retrieval.jsonl").open("a") as f:
        f.write(json.dumps({**records.read(results / "retrieval.jsonl")[0], "contention": {"detected": 1}}) + "\n")
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2


def test_hostile_method_names_and_parameters_stay_text_on_every_page(tmp_path: Path) -> None:
    results = tmp_path / "results"
    evil_name = '<script>alert(3)</script>'
    specs = [Spec("bm25", costs=c(0.9, 1.4, 3.6e6, 2600, 102)),
             Spec(evil_name, costs=c(0.5, 1.0, 1.0e6, 3000, 90), extra={"method_name": evil_name, "params": {"x": '"]><b>q'}}),
             Spec(EVIL_METHOD, costs=c(5.0, 6.0, 1.0e6, 500, 300))]
    for spec in specs:
        make_record(spec, results)
    out = tmp_path / "site"
    write_report(results, out)
    pages = {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.html")}
    assert all(all(ch.isalnum() or ch in "-_./" for ch in name) for name in pages)  # no record text in a file name
    for rel, html in pages.items():
        assert "<script>alert" not in html and "<b>q" not in html, rel
        assert html.count("<script") == 1, rel
    # the hostile name has its own card, titled with the name as text
    cards = [parse(html) for rel, html in pages.items() if rel.startswith("methods/")]
    titled = [d for d in cards if d.find_all("h1", "method-name") and d.find_all("h1", "method-name")[0].text().startswith(evil_name)]
    assert len(titled) == 1
    # and every suite page shows both hostile ids as text, with the parameter intact in data-params
    [suite] = [parse(html) for rel, html in pages.items() if rel.startswith("suites/")]
    rows = suite.find_all("table", "leaderboard")[0].find_all("tr")
    methods = {tr.attrs["data-method"]: tr for tr in rows if "data-key" in tr.attrs}
    assert {evil_name, EVIL_METHOD} <= set(methods)
    assert 'x="]><b>q' in json.loads(methods[evil_name].attrs["data-params"])


def test_cross_profile_view_shows_only_ratios_to_the_baseline_of_each_profile(fixture: Fixture) -> None:
    _, site = render(fixture.results)
    [page] = [p for p in site.children if p.attrs["path"] == "profiles.html"]
    [view] = page.find_all("section", "cross")
    assert view.attrs["data-suite"] == "retrieval@1"  # the only suite and dataset on two profiles
    table = view.find_all("table", "cross-table")[0]
    heads = [th.attrs.get("title", "") for th in table.find_all("th")][1:]
    recs = {(s.profile, s.method): rec for s, rec, _ in fixture.shown.values() if s.suite == "retrieval@1"}
    seen = 0
    for tr in table.find_all("tr")[1:]:
        method = tr.find_all("td", "method")[0].find_all("a")[0].text()
        for head, td in zip(heads, tr.find_all("td")[1:]):
            profile = head.split(" on ")[1].split(";")[0]
            rec, base = recs.get((profile, method)), recs[(profile, "bm25")]
            if rec is None:
                assert td.text() == "\u2014"
                continue
            v = float(td.attrs["data-v"]) if td.attrs.get("data-v") else None
            if head.startswith("nDCG@10 minus"):
                assert v == pytest.approx(rec["metrics"]["nDCG@10"]["value"] - base["metrics"]["nDCG@10"]["value"])
            else:
                axis = head.split(" divided")[0]
                a, b = rec["costs"].get(axis, {}).get("value"), base["costs"].get(axis, {}).get("value")
                assert v == (pytest.approx(a / b) if a is not None and b else None), (method, profile, axis)
            seen += 1
    assert seen > 30
    # the profiles without a baseline in the group say so, and no absolute cost appears: every
    # number is a ratio (×) or a signed difference
    nums = [td.text() for td in table.find_all("td", "num")]
    assert nums and all(t.endswith("\u00d7") or t[0] in "+-\u2014" for t in nums)


def test_registry_catalogue_is_plain_data_for_every_method() -> None:
    from sparsebench import registry

    cat = registry.catalogue()
    assert sorted(cat) == registry.names()
    assert json.loads(json.dumps(cat)) == cat  # JSON types only: the reporter never sees a class
    int8 = cat["int8"]
    assert int8["family"] == "compressor" and int8["example"] == "int8(minilm)"
    assert int8["parameters"][0] == {"name": "base", "type": "VectorMethod", "default": "", "method": True}
    bm25 = {p["name"]: p for p in cat["bm25"]["parameters"]}
    assert bm25["k1"]["default"] == "1.2" and not bm25["k1"]["method"]
    assert {"name": "postings", "unit": "count"} in cat["bm25"]["cost_model"]["proxies"]


def test_perplexity_interval_resamples_the_window_nlls_then_exponentiates(tmp_path: Path) -> None:
    """A perplexity is exp(mean NLL): its interval is the bootstrap of the windows' NLLs, mapped
    through exp, not a bootstrap of per-window perplexities; the cell's note says so."""
    results = tmp_path / "results"
    rng = np.random.default_rng(5)
    nlls = rng.normal(3.2, 0.4, 24).round(6).tolist()
    windows = {f"w{i:02d}": {"nll": v} for i, v in enumerate(nlls)}
    key = hashlib.sha256(b"lm|dense").hexdigest()
    rec = {
        "schema": 1, "key": key, "run_id": "r0", "suite": "lm@2", "task": "lm", "method": "dense",
        "method_name": "dense", "family": "dense-lm", "params": {}, "settings": {},
        "dataset": {"id": "austen+wiki", "checksum": "d" * 64, "counts": {"windows": len(nlls)}},
        "main_metric": "perplexity",
        "metrics": {"perplexity": {"value": float(np.exp(np.mean(nlls))), "unit": "", "n": len(nlls), "direction": "lower",
                                   "aggregation": "exp(mean NLL over windows)"}},
        "costs": {}, "profile": {"id": "cpu-2core", "fingerprint": "fp", "matched": True},
        "provenance": {"git_commit": "abc123", "git_dirty": False, "packages": {}},
        "started_at": "2026-01-01T00:00:05+00:00", "finished_at": "2026-01-01T00:00:10+00:00",
        "status": "ok", "error": None, "duration_s": 5.0,
    }
    rec["per_query"] = sidecars.write_sidecar(results, "lm", key, "r0", windows)
    records.append(results / "lm.jsonl", rec)
    _, dom = render(results)
    [ci] = [td for tr in dom.find_all("tr") if tr.attrs.get("data-key", "")[4:] == key for td in tr.find_all("td", "ci")]
    lo, hi = loop_bootstrap([windows[w]["nll"] for w in sorted(windows)])
    assert float(ci.attrs["data-lo"]) == pytest.approx(np.exp(lo), rel=1e-12)
    assert float(ci.attrs["data-hi"]) == pytest.approx(np.exp(hi), rel=1e-12)
    assert "windows (of the mean NLL, then exp)" in ci.attrs["title"]
