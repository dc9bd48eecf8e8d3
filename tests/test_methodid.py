import pytest

from sparsebench import registry
from sparsebench.errors import BenchError
from sparsebench.methodid import MethodIdError, format_method_id, parse_method_id, parse_scalar


@pytest.mark.parametrize(
    "text",
    ["bm25", "bm25(k1=0.9)", "bm25(k1=0.9,b=0.4)", "bm25(variant=bm25+)", "bm25(stemmer=none)",
     "minilm(model=/tmp/some/model_dir)", 'minilm(model="name with, comma")', "minilm(max_length=128)"],
)
def test_ids_round_trip_through_objects(text: str) -> None:
    method = registry.build(text)
    assert str(method) == text
    assert registry.build(str(method)) == method


def test_defaults_are_omitted_and_order_is_canonical() -> None:
    assert str(registry.build("bm25(k1=1.2,b=0.75)")) == "bm25"
    assert str(registry.build("bm25(b=0.4, k1=0.9)")) == "bm25(k1=0.9,b=0.4)"
    # An int where a float is declared is the same value, hence the same method and id.
    assert registry.build("bm25(k1=2)") == registry.build("bm25(k1=2.0)")
    assert str(registry.build("bm25(k1=2)")) == "bm25(k1=2.0)"


def test_overrides_apply_on_top_of_the_id() -> None:
    assert str(registry.build("bm25(k1=0.9)", {"b": 0.4})) == "bm25(k1=0.9,b=0.4)"


@pytest.mark.parametrize(
    "text, message",
    [("bm26", "did you mean bm25"), ("bm25(k2=1)", "no parameter 'k2'"), ("bm25(k1=fast)", "expected float"),
     ("bm25(variant=okapi)", "is not one of"), ("bm25(k1)", "key=value"), ("bm25(k1=1,k1=2)", "given twice"),
     ("bm25(k1=0.9", "parentheses"), ("", "expected a name")],
)
def test_bad_ids_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(BenchError, match=message.replace("(", r"\(")):
        registry.build(text)


def test_scalars() -> None:
    assert parse_scalar("true") is True and parse_scalar("none") is None
    assert parse_scalar("3") == 3 and isinstance(parse_scalar("3.0"), float)
    assert parse_scalar('"a=b"') == "a=b"
    with pytest.raises(MethodIdError):
        parse_scalar("a=b")
    assert parse_method_id(format_method_id("x", (("s", "a,b"), ("f", 1e-5)))).params == (("s", "a,b"), ("f", 1e-5))


def test_split_method_ids_respects_parentheses_and_quotes() -> None:
    from sparsebench.methodid import split_method_ids

    assert split_method_ids("bm25(k1=0.9,b=0.4), minilm") == ["bm25(k1=0.9,b=0.4)", "minilm"]
    assert split_method_ids('minilm(model="a,(b"),bm25') == ['minilm(model="a,(b")', "bm25"]
    assert split_method_ids(" , bm25,") == ["bm25"]
