"""Late interaction: the MaxSim kernel, token pooling and MUVERA (issue: late interaction)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.cli import main
from sparsebench.datasets.beir import load_beir
from sparsebench.datasets.types import Document
from sparsebench.errors import BenchError
from sparsebench.kernels.fde import Fde, fde_reference, pack
from sparsebench.kernels.maxsim import gather_docs, maxsim_reference, maxsim_scores
from sparsebench.methods.base import IndexReport, RunContext
from sparsebench.methods.dense import SentenceTransformerEncoder
from sparsebench.methods.multivector import MultiVectorRetriever
from sparsebench.methods.muvera import _MuveraRetriever
from sparsebench.methods.token_pooling import _Pooled, pool_document

from .conftest import records_in


def _unit(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _corpus(n_docs: int, dim: int, seed: int = 0, max_len: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return pack([_unit(int(rng.integers(1, max_len)), dim, rng) for _ in range(n_docs)])


class _Fixed(MultiVectorRetriever):
    """Given token vectors as a multi-vector source; a query is named by its index."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray]) -> None:
        super().__init__()
        self._tokens, self._offsets, self._queries = tokens, offsets, queries
        self.doc_ids = [f"d{i}" for i in range(len(offsets) - 1)]
        self.released = False

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        return IndexReport()

    def doc_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        return self._tokens, self._offsets

    def query_tokens(self, queries: Sequence[str]) -> list[np.ndarray]:
        return [self._queries[int(q)] for q in queries]

    def release(self) -> None:
        self.released = True


def _fixed(n_docs: int = 40, dim: int = 24, n_queries: int = 6, seed: int = 0) -> _Fixed:
    tokens, offsets = _corpus(n_docs, dim, seed)
    rng = np.random.default_rng(seed + 1)
    return _Fixed(tokens, offsets, [_unit(int(rng.integers(1, 9)), dim, rng) for _ in range(n_queries)])


def test_the_maxsim_fast_path_equals_the_float64_reference() -> None:
    tokens, offsets = _corpus(57, 32)
    rng = np.random.default_rng(3)
    queries = [_unit(n, 32, rng) for n in (1, 5, 12)]
    ref = maxsim_reference(queries, tokens, offsets)
    np.testing.assert_allclose(maxsim_scores(queries, tokens, offsets), ref, rtol=1e-5, atol=1e-5)
    chosen = np.array([40, 3, 3, 56, 0])  # any order, repeats allowed
    np.testing.assert_allclose(maxsim_scores(queries, tokens, offsets, chosen),
                               maxsim_reference(queries, tokens, offsets, chosen), rtol=1e-5, atol=1e-5)
    # by hand: one query token, two documents
    t = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    assert maxsim_scores([np.array([[0.6, 0.8], [1, 0]], np.float32)], t, np.array([0, 2, 3]))[0].tolist() == \
        pytest.approx([1.8, 1.6])


def test_the_maxsim_fast_path_splits_documents_across_blocks(monkeypatch) -> None:
    import sparsebench.kernels.maxsim as k

    tokens, offsets = _corpus(30, 16, seed=5)
    queries = [_unit(4, 16, np.random.default_rng(2))]
    whole = maxsim_scores(queries, tokens, offsets)
    monkeypatch.setattr(k, "_BLOCK_ELEMENTS", 4 * 7)  # 7 tokens a block: most blocks hold one document
    np.testing.assert_allclose(maxsim_scores(queries, tokens, offsets), whole, rtol=1e-6)


def test_the_kernel_refuses_empty_documents_and_queries() -> None:
    tokens = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="at least one token"):
        maxsim_scores([tokens[:1]], tokens, np.array([0, 2, 2, 3]))
    with pytest.raises(ValueError, match="every query needs"):
        maxsim_scores([tokens[:0]], tokens, np.array([0, 3]))
    t, o = gather_docs(np.arange(10, dtype=np.float32)[:, None], np.array([0, 2, 5, 10]), np.array([2, 0]))
    assert t.ravel().tolist() == [5, 6, 7, 8, 9, 0, 1] and o.tolist() == [0, 5, 7]


@pytest.mark.parametrize("ksim,dproj", [(3, 8), (2, 64), (0, 4), (5, 6)])
def test_the_vectorised_fde_equals_the_definition(ksim, dproj) -> None:
    tokens, offsets = _corpus(12, 24, seed=ksim, max_len=9)  # short sets: empty partitions get filled
    fde = Fde(24, ksim, dproj, reps=3, seed=1)
    for kind in ("document", "query"):
        fast = fde.encode(tokens, offsets, kind)
        assert fast.shape == (12, 3 * (1 << ksim) * min(dproj, 24))
        for i in range(12):
            np.testing.assert_allclose(fast[i], fde_reference(tokens[offsets[i]: offsets[i + 1]], fde, kind),
                                       rtol=1e-5, atol=1e-6)
    filled = fde.encode(tokens, offsets, "document")
    if ksim:
        # a document's encoding has no zero block: every partition holds a mean or the nearest token
        assert (np.abs(filled.reshape(12, 3, 1 << ksim, -1)).sum(axis=3) > 0).all()


def test_fde_inner_products_track_maxsim() -> None:
    """The encodings' ranking agrees with exact MaxSim far more than chance (the point of MUVERA)."""
    tokens, offsets = _corpus(200, 32, seed=9)
    rng = np.random.default_rng(4)
    queries = [tokens[offsets[i]: offsets[i] + 4] + 0.3 * _unit(4, 32, rng) for i in range(0, 200, 10)]
    fde = Fde(32, 4, 32, reps=10, seed=0)
    approx = fde.encode(*pack(queries), "query") @ fde.encode(tokens, offsets, "document").T
    exact = maxsim_scores(queries, tokens, offsets)
    hits = np.mean([np.argmax(exact[i]) in np.argsort(-approx[i])[:10] for i in range(len(queries))])
    assert hits >= 0.8


def test_muvera_reranking_every_candidate_is_exact_maxsim() -> None:
    base = _fixed()
    method = registry.build("muvera(maxsim(minilm),candidates=40,reps=2)")
    queries = [str(i) for i in range(6)]
    exact = base.search(queries, 10)
    r = _MuveraRetriever(base, method)
    r.index([])
    got = r.search(queries, 10)
    assert [[d for d, _ in row] for row in got] == [[d for d, _ in row] for row in exact]
    for row, ref in zip(got, exact):
        assert [s for _, s in row] == pytest.approx([s for _, s in ref], abs=1e-6)
    assert r.proxies()["maxsim_docs_per_query"] == 40
    # fewer candidates: fewer MaxSim evaluations, and the scores it returns are still exact MaxSim
    few = _MuveraRetriever(base, registry.build("muvera(maxsim(minilm),candidates=5,reps=2)"))
    few.index([])
    rows = few.search(queries, 10)
    assert all(len(row) == 5 for row in rows) and few.proxies()["maxsim_docs_per_query"] == 5
    full = {d: s for d, s in base.search(queries[:1], 40)[0]}
    assert all(s == pytest.approx(full[d], abs=1e-6) for d, s in rows[0])


def test_pool_factor_one_is_the_unpooled_method_and_pooling_keeps_exact_duplicates() -> None:
    base = _fixed()
    queries = [str(i) for i in range(6)]
    one = _Pooled(base, factor=1, protected=1)
    one.index([])
    assert one.search(queries, 10) == base.search(queries, 10)
    assert not base.released
    # a document made of repeated vectors pools to the distinct ones: its MaxSim does not change
    rng = np.random.default_rng(0)
    distinct = _unit(4, 8, rng)
    doc = np.concatenate([distinct[:1], np.repeat(distinct[1:], 4, axis=0)])
    pooled = pool_document(doc, factor=4, protected=1)
    assert len(pooled) == 4  # the protected vector and one mean per distinct vector
    q = [_unit(3, 8, rng)]
    assert maxsim_scores(q, pooled, np.array([0, 4])) == pytest.approx(maxsim_scores(q, doc, np.array([0, 13])))
    two = _Pooled(base, factor=2, protected=1)
    two.index([])
    assert base.released
    lens, pooled_lens = np.diff(base.doc_tokens()[1]), np.diff(two.doc_tokens()[1])
    assert (pooled_lens == np.where(lens > 2, 1 + np.maximum((lens - 1) // 2, 1), lens)).all()
    assert two.proxies()["vectors_per_doc"] < base.proxies()["vectors_per_doc"]


def test_late_interaction_refuses_what_it_cannot_wrap() -> None:
    for bad, words in [("maxsim(bm25)", "maxsim accepts"), ("pool(minilm)", "pool accepts token vectors"),
                       ("muvera(minilm)", "muvera accepts token vectors"),
                       ("pool(maxsim(minilm),factor=0)", "factor=0 is out of range"),
                       ("muvera(maxsim(minilm),ksim=13)", "ksim=13 is out of range")]:
        with pytest.raises(BenchError) as e:
            registry.build(bad)
        assert words in str(e.value), (bad, str(e.value))


def test_a_wrapper_runs_in_the_environment_its_innermost_method_needs() -> None:
    from sparsebench import envs

    assert envs.env_of(registry.build("muvera(pool(colbert,factor=2))")) == "late"
    assert envs.env_of(registry.build("muvera(pool(maxsim(minilm)))")) is None


def _ctx(tmp_path) -> RunContext:
    return RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False)


def test_maxsim_over_minilm_token_states_reuses_its_cache(tiny_beir, tmp_path, monkeypatch) -> None:
    data = load_beir(tiny_beir)
    calls: list[str] = []
    real = SentenceTransformerEncoder.encode_tokens

    def counting(self, texts, kind, batch_size, progress):
        calls.append(kind)
        return real(self, texts, kind, batch_size, progress)

    monkeypatch.setattr(SentenceTransformerEncoder, "encode_tokens", counting)
    opened = []
    for mid in ("maxsim(minilm)", "pool(maxsim(minilm),factor=3)", "muvera(maxsim(minilm),reps=4,candidates=2)"):
        r = registry.build(mid).open(_ctx(tmp_path))
        r.index(data.corpus)
        opened.append(r)
    assert calls.count("document") == 1
    tokens, offsets = opened[0].doc_tokens()
    assert np.allclose(np.linalg.norm(tokens, axis=1), 1, atol=2e-3)  # unit rows, stored as float16
    assert len(offsets) == len(data.corpus) + 1
    hits = opened[0].search(["what is python"], 3)[0]
    assert len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1]
    ref = opened[2].exact_search(["what is python"], 3)[0]  # MUVERA's reference is exact MaxSim
    assert [d for d, _ in ref] == [d for d, _ in hits]
    assert [s for _, s in ref] == pytest.approx([s for _, s in hits], abs=1e-5)


def test_a_run_records_multi_vector_costs(tiny_beir, results_dir) -> None:
    methods = "maxsim(minilm),pool(maxsim(minilm),factor=1),pool(maxsim(minilm),factor=2),muvera(maxsim(minilm),reps=4,candidates=100)"
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--in-process", "--method", methods])
    assert rc == 0
    recs = {r["method"]: r for r in records_in(results_dir / "retrieval.jsonl")}
    exact = recs["maxsim(minilm)"]
    n_docs = exact["extra"]["documents"]
    assert exact["family"] == "multi-vector" and exact["metrics"]["recall_vs_exact@10"]["value"] == 1.0
    assert exact["costs"]["maxsim_docs_per_query"]["value"] == n_docs
    per_doc = exact["costs"]["vectors_per_doc"]["value"]
    assert exact["costs"]["bytes_per_vector"]["value"] == pytest.approx(per_doc * 384 * 2 + 8)
    # the identity points: pool factor 1 and MUVERA over every document are exact MaxSim
    for same in ("pool(maxsim(minilm),factor=1)", "muvera(maxsim(minilm),reps=4)"):
        assert recs[same]["metrics"]["nDCG@10"]["value"] == pytest.approx(exact["metrics"]["nDCG@10"]["value"])
        assert recs[same]["metrics"]["recall_vs_exact@10"]["value"] == 1.0
    pooled = recs["pool(maxsim(minilm))"]
    assert pooled["costs"]["vectors_per_doc"]["value"] < per_doc and pooled["costs"]["fit_s"]["value"] > 0
    assert recs["muvera(maxsim(minilm),reps=4)"]["costs"]["fde_dim"]["value"] == 4 * 16 * 16
    assert main(["validate", str(results_dir)]) == 0
