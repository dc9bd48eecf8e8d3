"""Embedding compressors and approximate-search engines over a dense encoder (issue: compressors)."""

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
from sparsebench.methods.base import IndexReport, RunContext
from sparsebench.methods.dense import SentenceTransformerEncoder
from sparsebench.methods.faiss_index import FaissPlan, FaissRetriever
from sparsebench.methods.vectors import VectorRetriever

from .conftest import records_in


def _ctx(tmp_path) -> RunContext:
    return RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False)


def _open(method_id: str, corpus, tmp_path):
    r = registry.build(method_id).open(_ctx(tmp_path))
    r.index(corpus)
    return r


class _Fixed(VectorRetriever):
    """Given vectors as a vector source: the faiss layer is exercised on controlled inputs."""

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:
        self._all, self._queries = docs.astype(np.float32), queries.astype(np.float32)
        self._docs: np.ndarray | None = None
        self.doc_ids = [str(i) for i in range(len(docs))]

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        self._docs = self._all
        return IndexReport()

    def doc_vectors(self) -> np.ndarray:
        return self._all if self._docs is None else self._docs

    def query_vectors(self, queries: Sequence[str]) -> np.ndarray:
        return self._queries[[int(q) for q in queries]]

    def release(self) -> None:
        self._docs = None


def _vectors(n: int, dim: int, seed: int = 0, normalise: bool = True) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if normalise else x


def _faiss(plan: FaissPlan, docs: np.ndarray, queries: np.ndarray, tmp_path) -> FaissRetriever:
    r = FaissRetriever(plan, _Fixed(docs, queries), _ctx(tmp_path))
    r.index([])
    return r


@pytest.mark.parametrize("m, nbits", [(16, 8), (8, 4), (32, 4)])
def test_pq_serialized_bytes_are_m_times_nbits_over_8_per_vector_plus_the_codebooks(m, nbits, tmp_path) -> None:
    dim, n = 64, 600
    r = _faiss(FaissPlan(f"PQ{m}x{nbits}", min_train=2 ** nbits, sub_vectors=m, what="pq"), _vectors(n, dim), _vectors(3, dim, 1), tmp_path)
    per_vector, fixed = r.vector_bytes()
    assert per_vector == m * nbits / 8
    assert r.serialized_bytes() == n * m * nbits // 8 + fixed
    # the codebooks: 2^nbits centroids of dim/m floats for each of the m sub-vectors, plus a header
    codebooks = m * 2 ** nbits * (dim // m) * 4
    assert codebooks <= fixed < codebooks + 200
    out = tmp_path / "saved"
    out.mkdir()
    r.save(out)
    assert (out / "index.faiss").stat().st_size == r.serialized_bytes()


def test_opq_rotates_then_codes_at_the_same_bytes_as_pq(tmp_path) -> None:
    docs, queries = _vectors(600, 32), _vectors(5, 32, 1)
    plan = registry.build("opq(minilm,m=8,nbits=4)").plan()
    assert plan.factory() == "OPQ8,PQ8x4" and plan.min_train == 256
    r = _faiss(plan, docs, queries, tmp_path)
    assert r.vector_bytes()[0] == 8 * 4 / 8
    assert r.vector_bytes()[1] > 32 * 32 * 4  # the rotation matrix is part of the trained state
    hits = r.search([str(i) for i in range(5)], 10)
    assert all([s for _, s in row] == sorted((s for _, s in row), reverse=True) for row in hits)


def test_engines_score_by_inner_product_even_for_vectors_of_any_norm(tmp_path) -> None:
    docs, queries = _vectors(500, 32, normalise=False), _vectors(5, 32, 1, normalise=False)
    exact = np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :10]
    for plan in (FaissPlan("Flat", engine="IVF8", search={"nprobe": 8}, min_train=8),
                 FaissPlan("Flat", engine="HNSW16", search={"efSearch": 500}),
                 FaissPlan("PQ8x4", engine="HNSW16", search={"efSearch": 500}, min_train=16, sub_vectors=8),
                 FaissPlan("SQ8", engine="HNSW16", search={"efSearch": 500})):
        r = _faiss(plan, docs, queries, tmp_path)
        hits = r.search([str(i) for i in range(5)], 10)
        for row in hits:
            scores = [s for _, s in row]
            assert scores == sorted(scores, reverse=True), plan.factory()
        if plan.storage == "Flat":  # every cell probed / a list wider than the corpus: the exact answer
            assert [[int(d) for d, _ in row] for row in hits] == exact.tolist(), plan.factory()
        else:  # the graph over codes finds about what a scan of the same codes finds (same training and
            # seed); with L2 instead of inner product, unnormalised vectors would rank differently
            flat = _faiss(FaissPlan(plan.storage, min_train=plan.min_train, sub_vectors=plan.sub_vectors), docs, queries, tmp_path)
            want = flat.search([str(i) for i in range(5)], 10)
            overlap = np.mean([len({d for d, _ in a} & {d for d, _ in b}) / 10 for a, b in zip(hits, want)])
            assert overlap >= 0.9, plan.factory()


def test_binary_rescoring_over_the_whole_corpus_equals_float_search(tmp_path) -> None:
    docs, queries = _vectors(300, 48), _vectors(6, 48, 1)
    r = _faiss(FaissPlan("binary", rescore=30), docs, queries, tmp_path)  # 30 x k=10 covers 300 documents
    got = r.search([str(i) for i in range(6)], 10)
    scores = queries @ docs.T
    for i, row in enumerate(got):
        assert [int(d) for d, _ in row] == np.argsort(-scores[i], kind="stable")[:10].tolist()
        assert [s for _, s in row] == pytest.approx(np.sort(scores[i])[::-1][:10], abs=1e-5)
    assert r.vector_bytes()[0] == 48 / 8  # 1 bit per dimension in the Hamming index
    plain = _faiss(FaissPlan("binary"), docs, queries, tmp_path)
    for row in plain.search(["0"], 10):  # no rescoring: d - 2 * Hamming distance, best first
        assert all(s % 2 == 0 and -48 <= s <= 48 for _, s in row)


def test_int8_codes_are_sentence_transformers_calibrated_int8(tmp_path) -> None:
    from sentence_transformers.quantization import quantize_embeddings

    docs = _vectors(400, 32)
    r = _faiss(FaissPlan("SQ8"), docs, docs[:2], tmp_path)
    ours = r._index.sa_encode(docs).astype(np.int16) - 128
    theirs = quantize_embeddings(docs, precision="int8", calibration_embeddings=docs).astype(np.int16)
    # the same per-dimension min/max ranges and 255 steps; truncation of the same value may land
    # one step apart where float rounding differs
    assert np.abs(ours - theirs).max() <= 1
    assert np.mean(ours == theirs) > 0.98
    assert r.vector_bytes()[0] == 32


def test_training_needs_enough_documents_and_m_must_divide_the_dimension(tmp_path) -> None:
    with pytest.raises(BenchError, match="at least 256 documents"):
        _faiss(FaissPlan("PQ8x8", min_train=256, sub_vectors=8, what="pq(x)"), _vectors(100, 32), _vectors(1, 32), tmp_path)
    with pytest.raises(BenchError, match="m=5 does not divide the vectors' 32 dimensions"):
        _faiss(FaissPlan("PQ5x4", min_train=16, sub_vectors=5, what="pq(x,m=5)"), _vectors(100, 32), _vectors(1, 32), tmp_path)


@pytest.mark.parametrize(
    "text, canonical, factory",
    [("int8(minilm)", "int8(minilm)", "SQ8"),
     ("pq(minilm,m=48,nbits=8)", "pq(minilm)", "PQ48x8"),
     ("opq(minilm,m=24)", "opq(minilm,m=24)", "OPQ24,PQ24x8"),
     ("hnsw(pq(minilm,m=48),ef=64)", "hnsw(pq(minilm))", "HNSW32_PQ48x8"),
     ("ivf(int8(pca(minilm,dim=192)),nprobe=4)", "ivf(int8(pca(minilm,dim=192)),nprobe=4)", "IVF64,SQ8"),
     ("hnsw(binary(minilm,rescore=4),M=16)", "hnsw(binary(minilm,rescore=4),M=16)", "BHNSW16"),
     ("ivf(opq(minilm),nlist=128,nprobe=16)", "ivf(opq(minilm),nlist=128,nprobe=16)", "OPQ48,IVF128,PQ48x8")],
)
def test_composed_ids_round_trip_and_name_their_faiss_index(text, canonical, factory) -> None:
    method = registry.build(text)
    assert str(method) == canonical and registry.build(canonical) == method
    plan = method.engine_plan() if hasattr(method, "engine_plan") else method.plan()
    assert plan.factory() == factory


@pytest.mark.parametrize(
    "bad, words",
    [("int8(bm25)", "int8.base: 'bm25' is a sparse-encoder method, which cannot serve here; int8 accepts dense float vectors"),
     ("pq(rrf(bm25,minilm))", "'rrf(bm25,minilm)' is a hybrid method"),
     ("hnsw(hnsw(minilm))", "hnsw accepts dense vectors"),
     ("int8(pq(minilm))", "int8 accepts dense float vectors"),
     ("ivf(minilm,nlist=4,nprobe=8)", "nprobe=8 is more than nlist=4"),
     ("pq(minilm,nbits=0)", "nbits=0 is out of range")],
)
def test_a_compressor_refuses_what_it_cannot_wrap_in_one_line(bad, words, tiny_beir, results_dir, caplog) -> None:
    with pytest.raises(BenchError, match=None) as e:
        registry.build(bad)
    assert words in str(e.value) and "\n" not in str(e.value)
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--in-process", "--method", bad])
    assert rc == 2 and not (results_dir / "retrieval.jsonl").exists()


def test_full_dimension_truncation_and_pca_are_the_base_encoder(tiny_beir, tmp_path) -> None:
    data = load_beir(tiny_beir)
    queries = [q.text for q in data.queries]
    base = _open("minilm", data.corpus, tmp_path).search(queries, 5)
    for wrapped in ("truncate(minilm,dim=384)", "truncate(minilm,dim=1000)", "pca(minilm,dim=384)"):
        got = _open(wrapped, data.corpus, tmp_path).search(queries, 5)
        assert [[d for d, _ in row] for row in got] == [[d for d, _ in row] for row in base], wrapped
        for row, ref in zip(got, base):
            assert [s for _, s in row] == pytest.approx([s for _, s in ref], abs=1e-5)
    smaller = _open("pca(minilm,dim=4)", data.corpus, tmp_path)
    assert smaller.doc_vectors().shape[1] == 5  # 4 components and the mean's term
    with pytest.raises(ValueError, match="dim=385 is more than the encoder's 384"):
        _open("pca(minilm,dim=385)", data.corpus, tmp_path)


def test_wrappers_reuse_the_encoders_cached_corpus_encodings(tiny_beir, tmp_path, monkeypatch) -> None:
    data = load_beir(tiny_beir)
    calls: list[str] = []
    real = SentenceTransformerEncoder.encode

    def counting(self, texts, kind, batch_size, progress):
        calls.append(kind)
        return real(self, texts, kind, batch_size, progress)

    monkeypatch.setattr(SentenceTransformerEncoder, "encode", counting)
    _open("minilm", data.corpus, tmp_path)
    assert calls == ["document"]
    for wrapped in ("int8(minilm)", "binary(minilm,rescore=2)", "pca(minilm,dim=8)", "truncate(minilm,dim=64)",
                    "hnsw(int8(pca(minilm,dim=16)))", "pq(minilm,m=4,nbits=2)"):
        r = _open(wrapped, data.corpus, tmp_path)
        r.search(["what is python"], 3)
        r.exact_search(["what is python"], 3)  # the reference loads the released vectors from the cache
    assert calls.count("document") == 1


def test_a_run_records_recall_vs_exact_bytes_per_vector_and_fit_time(tiny_beir, results_dir) -> None:
    methods = "minilm,binary(minilm),pca(minilm,dim=8),hnsw(minilm,ef=1,M=2),bm25"
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--in-process", "--method", methods])
    assert rc == 0
    recs = {r["method"]: r for r in records_in(results_dir / "retrieval.jsonl")}
    assert recs["minilm"]["metrics"]["recall_vs_exact@10"]["value"] == 1.0
    assert recs["minilm"]["costs"]["bytes_per_vector"]["value"] == 384 * 4
    assert "fit_s" not in recs["minilm"]["costs"]
    assert recs["binary(minilm)"]["costs"]["bytes_per_vector"]["value"] == 48
    assert 0 <= recs["binary(minilm)"]["metrics"]["recall_vs_exact@10"]["value"] <= 1
    assert recs["pca(minilm,dim=8)"]["costs"]["fit_s"]["value"] > 0
    assert recs["pca(minilm,dim=8)"]["costs"]["bytes_per_vector"]["value"] == 9 * 4
    assert recs["hnsw(minilm,M=2,ef=1)"]["family"] == "ann"
    assert "recall_vs_exact@10" not in recs["bm25"]["metrics"]  # bm25s has no exact reference of its own
    assert main(["validate", str(results_dir)]) == 0
