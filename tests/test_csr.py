"""csr: a TopK sparse autoencoder over a dense encoder's vectors, served from the inverted index."""

from __future__ import annotations

import numpy as np
import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.datasets.beir import load_beir
from sparsebench.errors import BenchError
from sparsebench.kernels.inverted import from_csr, search_batch
from sparsebench.methods.base import RunContext
from sparsebench.methods.csr import (AUXK_COEF, Csr, codes_matrix, encode_codes, sae_arrays, sae_loss,
                                     train_sae)

torch = pytest.importorskip("torch")


def _unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(sae, x: np.ndarray, dead: np.ndarray, aux_k: int) -> tuple[np.ndarray, float, float]:
    """Plain numpy: the dense codes z [n, hidden] and the two normalised MSE losses."""
    w_enc, b_enc, b_pre = (a.astype(np.float64) for a in sae_arrays(sae).values())
    w_dec = sae.w_dec.detach().numpy().astype(np.float64)
    x = x.astype(np.float64)
    pre = (x - b_pre) @ w_enc.T + b_enc
    z = np.zeros_like(pre)
    for i, row in enumerate(pre):
        top = np.argsort(-row)[: sae.k]
        z[i, top] = np.maximum(row[top], 0)
    recon = z @ w_dec.T + b_pre

    def nmse(r: np.ndarray, t: np.ndarray) -> float:
        return float(((r - t) ** 2).mean() / ((t - t.mean(axis=0)) ** 2).mean())

    residual = x - recon
    za = np.zeros_like(pre)
    masked = np.where(dead, pre, -np.inf)
    for i, row in enumerate(masked):
        top = np.argsort(-row)[: min(aux_k, int(dead.sum()))]
        za[i, top] = np.maximum(row[top], 0)
    return z, nmse(recon, x), nmse(za @ w_dec.T, residual)


def test_topk_codes_have_k_nonzeros_and_the_loss_matches_a_reference() -> None:
    x = _unit_rows(300, 16, 0)
    sae, stats = train_sae(x, hidden=64, k=4, epochs=2, batch_size=64, lr=1e-3, aux_k=8, seed=0)
    assert stats.steps == 2 * 5 and stats.seconds > 0
    # decoder columns stay unit norm; the encoder was initialised as the decoder's transpose
    assert np.allclose(np.linalg.norm(sae.w_dec.detach().numpy(), axis=0), 1.0, atol=1e-5)
    ids, values = encode_codes(sae, x)
    assert ids.shape == values.shape == (300, 4) and np.all(values >= 0)
    codes = codes_matrix(ids, values, 64)
    z, recon_ref, aux_ref = _reference(sae, x, np.arange(64) % 3 == 0, aux_k=8)
    assert np.count_nonzero(z, axis=1).tolist() == np.diff(codes.indptr).tolist()
    assert np.all(np.diff(codes.indptr) == 4)  # exactly k active: the top 4 of 64 are positive here
    assert np.allclose(codes.toarray(), z, atol=1e-5)

    dead = torch.from_numpy(np.arange(64) % 3 == 0)
    with torch.no_grad():
        total, recon, aux, _ = sae_loss(sae, torch.from_numpy(x), dead, aux_k=8)
    assert float(recon) == pytest.approx(recon_ref, rel=1e-4)
    assert float(aux) == pytest.approx(aux_ref, rel=1e-4)
    assert float(total) == pytest.approx(recon_ref + AUXK_COEF * aux_ref, rel=1e-4)
    with torch.no_grad():  # no dead latent: no auxiliary loss
        _, _, aux0, _ = sae_loss(sae, torch.from_numpy(x), torch.zeros(64, dtype=torch.bool), aux_k=8)
    assert float(aux0) == 0.0


def test_training_is_deterministic_and_reduces_the_loss() -> None:
    x = _unit_rows(256, 16, 1)
    a, sa = train_sae(x, 48, 4, 1, 64, 1e-3, 8, seed=3)
    b, sb = train_sae(x, 48, 4, 1, 64, 1e-3, 8, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(sae_arrays(a).values(), sae_arrays(b).values()))
    _, longer = train_sae(x, 48, 4, 8, 64, 1e-3, 8, seed=3)
    assert longer.final_nmse < sa.final_nmse


def test_inverted_index_answers_as_the_dense_product_of_the_codes() -> None:
    docs, queries = _unit_rows(400, 16, 2), _unit_rows(20, 16, 3)
    sae, _ = train_sae(docs, 64, 6, 2, 128, 1e-3, 8, seed=0)
    d_codes = codes_matrix(*encode_codes(sae, docs), 64)
    q_codes = codes_matrix(*encode_codes(sae, queries), 64)
    index = from_csr(d_codes, block_size=16)
    asked = [dict(zip(q_codes.indices[q_codes.indptr[i]:q_codes.indptr[i + 1]].tolist(),
                      q_codes.data[q_codes.indptr[i]:q_codes.indptr[i + 1]].tolist())) for i in range(20)]
    dense = q_codes.toarray().astype(np.float64) @ d_codes.toarray().astype(np.float64).T
    for pruning in ("exhaustive", "blockmax"):
        got = search_batch(index, asked, 10, pruning)
        for row, hits in zip(dense, got):
            want = [(int(d), float(row[d])) for d in sorted(np.flatnonzero(row > 0), key=lambda d: (-row[d], d))[:10]]
            assert [d for d, _ in hits] == [d for d, _ in want]
            assert np.allclose([s for _, s in hits], [s for _, s in want], atol=1e-5)


def test_csr_over_minilm_reuses_its_encodings_end_to_end(tiny_beir, tmp_path, monkeypatch) -> None:
    from sparsebench.methods.dense import SentenceTransformerEncoder

    calls: list[int] = []
    real = SentenceTransformerEncoder.encode

    def counting(self, texts, kind, batch_size, progress):
        if kind == "document":
            calls.append(len(texts))
        return real(self, texts, kind, batch_size, progress)

    monkeypatch.setattr(SentenceTransformerEncoder, "encode", counting)
    data = load_beir(tiny_beir)
    queries = [q.text for q in data.queries]
    ctx = RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False)
    minilm = registry.build("minilm").open(ctx)
    minilm.index(data.corpus)
    assert calls == [len(data.corpus)]

    method = registry.build("csr(minilm,k=4,hidden=32,epochs=3,batch_size=8)")
    assert str(method) == "csr(minilm,k=4,hidden=32,epochs=3,batch_size=8)"
    r = method.open(ctx)
    report = r.index(data.corpus)
    assert calls == [len(data.corpus)]  # the wrapper took minilm's cached encodings
    assert report.cache_hit and report.fit_s is not None and report.fit_s > 0
    hits = r.search(queries, 3)
    assert len(hits) == len(queries) and all(0 < len(h) <= 3 for h in hits)
    assert all(d in {doc.id for doc in data.corpus} and s > 0 for h in hits for d, s in h)
    assert all([s for _, s in h] == sorted((s for _, s in h), reverse=True) for h in hits)
    # each query alone gets the same answer as in the batch (up to the encoder's batching noise)
    alone = [r.search([q], 3)[0] for q in queries]
    assert [[d for d, _ in h] for h in alone] == [[d for d, _ in h] for h in hits]
    assert np.allclose([s for h in alone for _, s in h], [s for h in hits for _, s in h], atol=1e-5)
    assert r.exact_search(queries, 3) == minilm.exact_search(queries, 3)

    proxies = r.proxies()
    assert proxies["active_units"] == 4 and proxies["hidden"] == 32
    assert 0 < proxies["postings"] <= 4 * len(data.corpus)
    assert set(proxies) <= set(method.cost_units())
    per_vector, fixed = r.vector_bytes()
    assert per_vector > 0 and fixed > 32 * 384 * 4
    out = tmp_path / "index"
    out.mkdir()
    r.save(out)
    assert {p.name for p in out.iterdir()} == {"index.npz", "sae_w_enc.npy", "sae_b_enc.npy", "sae_b_pre.npy",
                                               "doc_ids.txt"}
    assert np.load(out / "sae_w_enc.npy").shape == (32, 384)
    assert calls == [len(data.corpus)]


def test_csr_takes_only_dense_vectors() -> None:
    with pytest.raises(BenchError, match="accepts"):
        registry.build("csr(bm25)")
    assert isinstance(registry.build("csr(pca(minilm,dim=64),k=8)"), Csr)


@pytest.mark.parametrize("text, message", [
    ("csr(minilm,k=0)", "k=0 is out of range"),
    ("csr(minilm,k=64,hidden=32)", "k=64 is out of range (at most hidden=32"),
    ("csr(minilm,hidden=0)", "hidden=0 is out of range"),
    ("csr(minilm,epochs=0)", "epochs=0 is out of range"),
    ("csr(minilm,lr=0)", "lr=0.0 is out of range"),
    ("csr(minilm,aux_k=-1)", "aux_k=-1 is out of range"),
])
def test_bad_parameters_are_refused(text: str, message: str) -> None:
    with pytest.raises(BenchError) as err:
        registry.build(text)
    assert message in str(err.value)


def test_k_above_four_times_the_dimension_is_refused_at_index_time(tiny_beir, tmp_path) -> None:
    data = load_beir(tiny_beir)
    ctx = RunContext(cache=ArtifactCache(tmp_path / "cache"), threads=1, progress=False)
    r = registry.build("csr(truncate(minilm,dim=4),k=17,epochs=1)").open(ctx)
    with pytest.raises(BenchError, match="k=17 is more than the SAE's 16 latents"):
        r.index(data.corpus)
