"""bebr: recurrent binarization (Gan et al. 2023) over a dense encoder, popcount search."""

from __future__ import annotations

import numpy as np
import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.datasets.beir import load_beir
from sparsebench.errors import BenchError
from sparsebench.methods.base import RunContext
from sparsebench.methods.bebr import BebrModel, pack, popcount_search, reference_search


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("bits, m", [(1, 64), (2, 128), (3, 24), (4, 64)])  # 64-bit words and bytes
def test_popcount_search_equals_the_float_reference(bits: int, m: int) -> None:
    rng = np.random.default_rng(bits * 100 + m)
    docs = pack(rng.choice(np.array([-1, 1], dtype=np.int8), size=(300, bits, m)))
    # Duplicated documents make exact ties: both paths must order them by document position.
    docs = np.concatenate([docs, docs[:20]])
    queries = pack(rng.choice(np.array([-1, 1], dtype=np.int8), size=(70, bits, m)))
    w = rng.uniform(0.1, 1.0, size=bits)
    ids = [f"d{i}" for i in range(len(docs))]
    fast = popcount_search(queries, docs, w, bits, m, ids, 15)
    ref = reference_search(queries, docs, w, bits, m, ids, 15)
    assert [[d for d, _ in row] for row in fast] == [[d for d, _ in row] for row in ref]
    assert [[s for _, s in row] for row in fast] == [[s for _, s in row] for row in ref]
    # and the reference is the inner product of the composed +-1 embeddings z = sum_t w_t b_t
    unpacked_q = np.unpackbits(queries.reshape(70, bits, m // 8), axis=2).astype(float) * 2 - 1
    unpacked_d = np.unpackbits(docs.reshape(len(docs), bits, m // 8), axis=2).astype(float) * 2 - 1
    z_q, z_d = np.einsum("t,ntm->nm", w, unpacked_q), np.einsum("t,ntm->nm", w, unpacked_d)
    assert fast[0][0][1] == pytest.approx(float(z_q[0] @ z_d[int(fast[0][0][0][1:])]))
    assert all(row[i][1] >= row[i + 1][1] for row in fast for i in range(len(row) - 1))


def test_more_bits_reconstruct_the_training_vectors_better() -> None:
    x = _unit(np.random.default_rng(0), 400, 64)
    errors = {}
    for bits in (1, 2, 4):
        model = BebrModel(64, 64, bits)
        model.fit(x, epochs=2, threads=1)
        errors[bits] = float(((x - model.reconstruct(x)) ** 2).sum(axis=1).mean())
        codes = model.encode(x)
        assert codes.shape == (400, bits, 64) and set(np.unique(codes)) <= {-1, 1}
    assert errors[4] < errors[2] < errors[1] < 1.0


def test_fit_is_deterministic() -> None:
    x = _unit(np.random.default_rng(1), 200, 32)
    a, b = BebrModel(32, 32, 2), BebrModel(32, 32, 2)
    a.fit(x, epochs=2, threads=1)
    b.fit(x, epochs=2, threads=1)
    assert np.array_equal(a.encode(x), b.encode(x)) and np.array_equal(a.weights(), b.weights())


def _ctx(tmp_path) -> RunContext:
    return RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False)


def _count_document_encodes(monkeypatch) -> list[int]:
    from sparsebench.methods import dense

    calls: list[int] = []
    original = dense.SentenceTransformerEncoder.encode

    def counting(self, texts, kind, batch_size, progress):
        if kind == "document":
            calls.append(len(texts))
        return original(self, texts, kind, batch_size, progress)

    monkeypatch.setattr(dense.SentenceTransformerEncoder, "encode", counting)
    return calls


@pytest.mark.parametrize("bits, dim", [(2, 0), (1, 128), (4, 64)])
def test_bebr_over_minilm_end_to_end_without_a_second_corpus_encoding(bits, dim, tiny_beir, tmp_path, monkeypatch) -> None:
    calls = _count_document_encodes(monkeypatch)
    data = load_beir(tiny_beir)
    queries = [q.text for q in data.queries]
    minilm = registry.build("minilm").open(_ctx(tmp_path))
    minilm.index(data.corpus)
    assert len(calls) == 1

    method = registry.build(f"bebr(minilm,bits={bits},dim={dim})")
    r = method.open(_ctx(tmp_path))
    report = r.index(data.corpus)
    assert len(calls) == 1  # minilm's cached encodings, not a second pass
    assert report.cache_hit and report.fit_s is not None and report.fit_s > 0
    m = dim or 384

    hits = r.search(queries, 5)
    assert [len(h) for h in hits] == [5] * len(queries)
    assert all(h[i][1] >= h[i + 1][1] for h in hits for i in range(4))
    # the fast path is the reference over the same codes
    q_codes = r.encode_queries(queries)
    ref = reference_search(q_codes, r.codes, r.model.weights(), bits, m, r.doc_ids, 5)
    assert hits == ref
    assert len(r.exact_search(queries, 5)) == len(queries)

    # bytes per document, measured from the serialized codes, is bits * m / 8
    per_doc, fixed = r.vector_bytes()
    assert per_doc == bits * m / 8 and fixed > 0
    out = tmp_path / f"index-{bits}-{dim}"
    out.mkdir()
    r.save(out)
    codes = np.load(out / "codes.npy", allow_pickle=False)
    assert codes.dtype == np.uint8 and codes.shape == (len(data.corpus), bits * m // 8)
    empty = out / "empty.npy"
    np.save(empty, codes[:0], allow_pickle=False)
    assert ((out / "codes.npy").stat().st_size - empty.stat().st_size) / len(codes) == bits * m / 8
    assert (out / "bebr_model.npz").stat().st_size > 0
    assert (out / "doc_ids.txt").read_text().split("\n") == [d.id for d in data.corpus]
    proxies = r.proxies()
    assert proxies["bits"] == bits and proxies["dim"] == m and proxies["encoder_params"] > 0
    assert set(proxies) <= set(method.cost_units())


def test_bebr_alone_encodes_the_corpus_once(tiny_beir, tmp_path, monkeypatch) -> None:
    calls = _count_document_encodes(monkeypatch)
    data = load_beir(tiny_beir)
    r = registry.build("bebr(minilm,bits=2)").open(_ctx(tmp_path))
    r.index(data.corpus)
    r.search([q.text for q in data.queries], 3)
    assert len(calls) == 1


def test_bebr_takes_only_dense_vectors() -> None:
    with pytest.raises(BenchError, match="accepts"):
        registry.build("bebr(bm25)")


@pytest.mark.parametrize("bad, message", [("bits=0", "bits=0 is out of range"), ("bits=17", "bits=17 is out of range"),
                                          ("dim=12", "dim=12 is out of range"), ("epochs=-1", "epochs=-1 is out of range")])
def test_bebr_refuses_bad_parameters(bad: str, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        registry.build(f"bebr(minilm,{bad})")
