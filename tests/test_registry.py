"""The contract every registered method meets, parametrised over the registry."""

import dataclasses

import pytest

from sparsebench import envs, registry
from sparsebench.cache import ArtifactCache
from sparsebench.datasets.beir import load_beir
from sparsebench.methods.base import RetrievalMethod, RunContext

from .conftest import QUERIES


@pytest.mark.parametrize("name", registry.names())
def test_metadata_is_complete(name: str) -> None:
    cls, info = registry.lookup(name)
    assert info.family in registry.FAMILIES
    assert info.version and info.summary and info.paper and info.licence
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    default = registry.build(info.example_id)
    assert str(default) == str(registry.build(str(default))) and default.info is info
    if not registry.method_fields(cls):
        assert str(cls()) == name
    fields = registry.param_fields(cls)  # the lm suite's `dense` baseline has none
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(default, fields[0].name if fields else "anything", None)


# Examples whose training needs more documents than the tiny corpus has (k-means centroids):
# the same method at a size 12 documents can train.
_SMALL = {"ivf": "ivf(minilm,nlist=4,nprobe=4)", "pq": "pq(minilm,m=32,nbits=3)"}


@pytest.mark.parametrize("name", [n for n in registry.names() if "retrieval" in registry.lookup(n)[1].tasks])
def test_retrieval_methods_find_the_relevant_passage(name: str, tiny_beir, tmp_path) -> None:
    if name == "opq":
        pytest.skip("OPQ's rotation trains 256 centroids per sub-vector: test_compressors runs it on 600 vectors")
    method = registry.build(_SMALL.get(name, registry.lookup(name)[1].example_id))
    env = envs.env_of(method)
    if env and not envs.here_has(env):
        pytest.skip(f"{name} runs in the {env} worker environment: tests/test_colbert_pylate.py runs it there")
    assert isinstance(method, RetrievalMethod)
    ds = load_beir(tiny_beir)
    retriever = method.open(RunContext(cache=ArtifactCache(tmp_path / "c"), threads=1, progress=False))
    retriever.index(ds.corpus)
    texts = [q.text for q in ds.queries]
    runs = retriever.search(texts, k=5)
    assert len(runs) == len(texts)
    for q, hits in zip(ds.queries, runs):
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True) and len(hits) <= 5
        assert hits[0][0] == QUERIES[q.id][1], f"{name} ranked {hits[0][0]} first for {q.text!r}"
    # one query at a time gives the same ranking as the batch
    assert [d for d, _ in retriever.search([texts[0]], k=5)[0]] == [d for d, _ in runs[0]]
    (tmp_path / "idx").mkdir()
    retriever.save(tmp_path / "idx")
    assert any(p.stat().st_size > 0 for p in (tmp_path / "idx").iterdir())
    proxies = retriever.proxies()
    declared = set(method.cost_units())
    assert set(proxies) == declared


def test_dense_encodings_are_cached_by_content(tiny_beir, tmp_path) -> None:
    ds = load_beir(tiny_beir)
    ctx = RunContext(cache=ArtifactCache(tmp_path / "c"), threads=1, progress=False, fingerprint="fp")
    method = registry.build("minilm")
    first = method.open(ctx)
    assert not first.index(ds.corpus).cache_hit
    second = method.open(ctx)
    report = second.index(ds.corpus)
    assert report.cache_hit and report.cached_build_s is not None
    assert second.search(["dictionary key"], 3) == first.search(["dictionary key"], 3)
    # a different corpus is a different key
    assert not method.open(ctx).index(ds.corpus[:5]).cache_hit
    # a time measured on another machine is not reported as this machine's
    other = RunContext(cache=ctx.cache, threads=1, progress=False, fingerprint="elsewhere")
    assert method.open(other).index(ds.corpus).cached_build_s is None
