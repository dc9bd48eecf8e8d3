"""Composed method ids (methods taking methods) and the fusion methods built on them."""

import json

import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.cli import main
from sparsebench.errors import BenchError
from sparsebench.methodid import MethodIdError, parse_method_id
from sparsebench.methods.base import RunContext
from sparsebench.datasets.beir import load_beir
from sparsebench.runner import plan_methods
from sparsebench.suites.spec import load_suite

from .conftest import records_in


@pytest.mark.parametrize(
    "text, canonical",
    [("rrf(bm25,minilm)", "rrf(bm25,minilm)"),
     ("rrf( bm25 , minilm , k=60 )", "rrf(bm25,minilm)"),  # spaces and defaults vanish
     ("interp(bm25(k1=0.9,b=0.4),minilm(max_length=128),alpha=0.3)", "interp(bm25(k1=0.9,b=0.4),minilm(max_length=128),alpha=0.3)"),
     ("interp(bm25,minilm,norm=zscore,alpha=1)", "interp(bm25,minilm,alpha=1.0,norm=zscore)"),  # field order, float
     ('rrf(minilm(model="a, (b)"),bm25)', 'rrf(minilm(model="a, (b)"),bm25)'),
     ("rrf(rrf(bm25,bm25(k1=0.9)),interp(bm25,minilm),k=10)", "rrf(rrf(bm25,bm25(k1=0.9)),interp(bm25,minilm),k=10)"),
     ("rrf(first=bm25,second=minilm)", "rrf(bm25,minilm)")],
)
def test_nested_ids_print_canonically_and_round_trip(text: str, canonical: str) -> None:
    method = registry.build(text)
    assert str(method) == canonical
    assert registry.build(canonical) == method
    assert str(parse_method_id(canonical)) == canonical


def test_params_name_nested_methods_by_their_ids_and_are_json() -> None:
    method = registry.build("interp(bm25(k1=0.9),minilm,alpha=0.3)")
    params = registry.params_of(method)
    assert params == {"first": "bm25(k1=0.9)", "second": "minilm", "depth": 100, "alpha": 0.3, "norm": "minmax"}
    json.dumps(params)
    assert registry.method_names(method) == ["interp", "bm25", "minilm"]


@pytest.mark.parametrize(
    "text, message",
    [("rrf(bm25,minilm", "unbalanced parentheses: the '(' of rrf at character 4 is never closed"),
     ("rrf(bm25,minilm))", "unbalanced parentheses: ')' closes nothing"),
     ("rrf(bm25,minilm(max_length=128)", "unbalanced parentheses"),
     ("interp(bm25,minilm,alpha=bm25(k1=1))", "interp.alpha: expected float, got method id 'bm25(k1=1)' (a method where a scalar is expected)"),
     ("interp(bm25,minilm,alpha=bm25)", "a method where a scalar is expected"),
     ("rrf(bm25,0.5)", "rrf.second: expected a method id, got 0.5 (a scalar where a method is expected)"),
     ("rrf(bm26,minilm)", "method id 'rrf(bm26,minilm)': unknown method 'bm26'; did you mean bm25?"),
     ("rrf(bm25,interp(bm25,minilmm))", "unknown method 'minilmm'; did you mean minilm?"),
     ("rrf(bm25,minilm(max_lenght=3))", "no parameter 'max_lenght'; did you mean max_length?"),
     ("rrf(bm25)", "rrf needs 2 method argument(s) (first, second), missing second"),
     ("rrf(bm25,minilm,bm25)", "takes 2 method argument(s)"),
     ("rrf(k=3,bm25,minilm)", "comes after a key=value one"),
     ("bm25(minilm)", "bm25 takes no method arguments"),
     ("rrf(bm25,minilm(max_length=0))", "max_length=0 is out of range"),
     ("rrf(bm25,minilm,depth=0)", "depth=0 is out of range")],
)
def test_malformed_composed_ids_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(BenchError) as err:
        registry.build(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_parser_refuses_text_after_an_id() -> None:
    with pytest.raises(MethodIdError, match="one id ends at its closing parenthesis"):
        parse_method_id("rrf(bm25,minilm)x")


@pytest.mark.parametrize("bad", ["rrf(bm25,minilm", "interp(bm25,minilm,alpha=bm25(k1=1))", "rrf(bm26,minilm)"])
def test_cli_refuses_malformed_composed_ids_with_one_line_and_writes_nothing(bad, tiny_beir, results_dir, caplog) -> None:
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--in-process", "--method", bad])
    assert rc == 2
    [err] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in err and bad in err
    assert not results_dir.exists() or not any(results_dir.rglob("*"))


def test_set_reaches_nested_methods_and_refuses_names_not_in_the_run() -> None:
    suite = load_suite("retrieval")
    got = plan_methods(suite, ["rrf(bm25,minilm)", "minilm"], [("minilm.max_length", 128), ("rrf.k", 10)])
    assert got.method_ids == ["rrf(bm25,minilm(max_length=128),k=10)", "minilm(max_length=128)"]
    with pytest.raises(BenchError, match="method 'interp' is not part of this run"):
        plan_methods(suite, ["rrf(bm25,minilm)"], [("interp.alpha", 0.2)])


def test_bench_list_shows_which_parameters_take_methods(capsys) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "first=<method>, second=<method>, depth=100, k=60" in out
    assert "e.g. rrf(bm25,minilm)" in out


def test_a_method_parameter_must_lead_and_have_no_default() -> None:
    from dataclasses import dataclass

    from sparsebench.methods.base import RetrievalMethod
    from sparsebench.registry import MethodInfo, register

    @dataclass(frozen=True)
    class Late(RetrievalMethod):
        k: int = 1
        inner: RetrievalMethod = None  # type: ignore[assignment]

        def open(self, ctx):  # pragma: no cover - never opened
            raise AssertionError

    with pytest.raises(TypeError):
        register(MethodInfo(name="late_test", family="hybrid", version="1", summary="x"))(Late)


# --- fusion ------------------------------------------------------------------------------------


def _open(method_id: str, corpus, tmp_path):
    r = registry.build(method_id).open(RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False))
    r.index(corpus)
    return r


def test_rrf_is_the_sum_of_reciprocal_ranks() -> None:
    rrf = registry.build("rrf(bm25,bm25(k1=0.9),k=1)")
    first = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    second = [("c", 0.9), ("a", 0.5), ("d", 0.1)]
    got = rrf.fuse(first, second, 10)
    # a: 1/2 + 1/3, c: 1/4 + 1/2, b: 1/3, d: 1/4; c and a tie: the first part's ranking decides.
    assert [d for d, _ in got] == ["a", "c", "b", "d"]
    assert got[0][1] == pytest.approx(1 / 2 + 1 / 3) and got[1][1] == pytest.approx(1 / 4 + 1 / 2)
    assert [d for d, _ in rrf.fuse(first, second, 2)] == ["a", "c"]


def test_interp_normalises_and_mixes() -> None:
    interp = registry.build("interp(bm25,bm25(k1=0.9),alpha=0.25)")
    first = [("a", 10.0), ("b", 6.0), ("c", 2.0)]
    second = [("b", 0.8), ("d", 0.4), ("a", 0.2)]
    got = dict(interp.fuse(first, second, 10))
    # min-max: first a=1, b=0.5, c=0; second b=1, d=1/3, a=0; a missing doc gets the floor 0.
    assert got == pytest.approx({"a": 0.25, "b": 0.25 * 0.5 + 0.75, "c": 0.0, "d": 0.75 / 3})


def test_fusion_identity_points_reproduce_a_part(tiny_beir, tmp_path) -> None:
    data = load_beir(tiny_beir)
    queries = [q.text for q in data.queries]
    bm25 = _open("bm25", data.corpus, tmp_path).search(queries, 3)
    other = _open("bm25(k1=0.5,b=0.2)", data.corpus, tmp_path).search(queries, 3)
    ids = lambda runs: [[d for d, _ in hits] for hits in runs]  # noqa: E731
    assert ids(_open("interp(bm25,bm25(k1=0.5,b=0.2),alpha=1)", data.corpus, tmp_path).search(queries, 3)) == ids(bm25)
    assert ids(_open("interp(bm25,bm25(k1=0.5,b=0.2),alpha=0)", data.corpus, tmp_path).search(queries, 3)) == ids(other)
    assert ids(_open("rrf(bm25,bm25)", data.corpus, tmp_path).search(queries, 3)) == ids(bm25)


def test_fusion_reports_both_parts_costs_and_saves_both_indexes(tiny_beir, tmp_path) -> None:
    data = load_beir(tiny_beir)
    method = registry.build("rrf(bm25,bm25_engine)")
    r = _open(str(method), data.corpus, tmp_path)
    proxies = r.proxies()
    assert {"first.postings", "second.postings", "second.blocks"} <= set(proxies)
    assert method.cost_units()["second.blocks"] == "count"
    out = tmp_path / "index"
    out.mkdir()
    r.save(out)
    assert (out / "first").is_dir() and any((out / "second").iterdir())


def test_fused_run_records_nested_params(tiny_beir, results_dir) -> None:
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--in-process", "--method", "rrf(bm25,bm25(k1=0.9),k=10)"])
    assert rc == 0
    [rec] = records_in(results_dir / "retrieval.jsonl")
    assert rec["status"] == "ok" and rec["family"] == "hybrid"
    assert rec["params"]["second"] == "bm25(k1=0.9)"
    assert rec["costs"]["first.postings"]["unit"] == "count"
    assert main(["validate", str(results_dir)]) == 0
