"""ColBERT checkpoints through PyLate, in the `late` worker environment, on the real runner path.

No ColBERT checkpoint ships in any package registry, so the test makes one the way PyLate makes
any: MiniLM's local folder plus a new 384 -> 128 projection (seeded), saved in PyLate's format and
loaded back by path. Its quality means nothing; what is tested is the loader, the worker
environment and that every multi-vector wrapper composes over it.

`make test` creates that environment (scripts/setup.sh --env late); outside CI a missing one
skips these tests, in CI it fails them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sparsebench import envs, registry
from sparsebench.cli import main
from sparsebench.models import resolve_model

from .conftest import records_in

if not envs.python_of("late").exists() and not envs.here_has("late"):
    if os.environ.get("CI"):
        raise RuntimeError("CI: the late worker environment is missing; `make test` runs scripts/setup.sh --env late")
    pytest.skip("no .venvs/late (scripts/setup.sh --env late)", allow_module_level=True)

_MAKE = """
import sys, torch
from pylate import models
torch.manual_seed(0)
m = models.ColBERT(model_name_or_path=sys.argv[1], device="cpu", embedding_size=128)
m.save(sys.argv[2])
"""


@pytest.fixture(scope="module")
def colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("colbert") / "minilm-colbert"
    minilm = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    python = str(envs.python_of("late")) if envs.python_of("late").exists() else "python"
    subprocess.run([python, "-c", _MAKE, minilm, str(out)], check=True, timeout=600,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
    return out


def test_a_colbert_folder_runs_in_the_late_environment_under_every_wrapper(colbert_dir, tiny_beir, results_dir) -> None:
    cb = f'colbert(model="{colbert_dir}")'
    ids = [cb, f"pool({cb},factor=1)", f"muvera({cb},reps=2,candidates=1000)", f"pool({cb},factor=2)"]
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{tiny_beir}",
               "--results", str(results_dir), "--method", ",".join(ids)])
    assert rc == 0
    recs = {r["method"]: r for r in records_in(results_dir / "retrieval.jsonl")}
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    exact = next(r for m, r in recs.items() if m.startswith("colbert("))
    assert exact["family"] == "multi-vector"
    assert exact["extra"]["worker"]["pylate"] and exact["extra"]["worker"]["sentence-transformers"] == "5.3.0"
    per_doc = exact["costs"]["vectors_per_doc"]["value"]
    assert exact["costs"]["bytes_per_vector"]["value"] == pytest.approx(per_doc * 128 * 2 + 8)  # 128-d projection
    # queries are padded to 32 tokens: every query scores 32 x the corpus' vectors
    assert exact["costs"]["token_sims_per_query"]["value"] == pytest.approx(32 * per_doc * exact["extra"]["documents"])
    for m, r in recs.items():
        if m == str(registry.build(f"pool({cb},factor=2)")):
            assert r["costs"]["vectors_per_doc"]["value"] < per_doc
        elif m != exact["method"]:  # the identity points: exact MaxSim's ranking
            assert r["metrics"]["nDCG@10"]["value"] == pytest.approx(exact["metrics"]["nDCG@10"]["value"])
            assert r["metrics"]["recall_vs_exact@10"]["value"] == 1.0


@pytest.fixture(scope="module")
def faq_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 FAQ passages and 20 of their questions: enough token vectors for PLAID's k-means."""
    import json

    from sparsebench.datasets.resolve import load_source

    ds = load_source("embedded:faq")
    queries = ds.judged_queries()[:20]
    wanted = {d for q in queries for d in ds.qrels[q.id]}
    docs = [d for d in ds.corpus if d.id in wanted] + [d for d in ds.corpus if d.id not in wanted][: 200 - len(wanted)]
    root = tmp_path_factory.mktemp("faq-slice")
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                               for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q.id, "text": q.text}) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q.id}\t{d}\t{g}\n" for q in queries for d, g in ds.qrels[q.id].items()))
    return root


def test_plaid_indexes_and_searches_through_pylate(faq_slice, results_dir, monkeypatch) -> None:
    # PLAID's C++ kernels are compiled once (about two minutes) into the user's sparsebench cache,
    # where `bench run` compiles them too, and shared by every checkout and test session.
    ext = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparsebench" / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(ext))
    # what a run killed mid-build leaves: torch's own loader would wait on it forever
    (ext / "decompress_residuals_cpp").mkdir(parents=True, exist_ok=True)
    (ext / "decompress_residuals_cpp" / "lock").touch()
    ids = ["maxsim(minilm)", "plaid(maxsim(minilm),nbits=2)", "plaid(maxsim(minilm),nbits=4,ndocs=4096,ncells=8)"]
    rc = main(["run", "--suite", "retrieval", "--no-progress", "--dataset", f"beir:{faq_slice}",
               "--results", str(results_dir), "--method", ",".join(ids)])
    assert rc == 0
    recs = {r["method"]: r for r in records_in(results_dir / "retrieval.jsonl")}
    exact = recs["maxsim(minilm)"]
    assert exact["extra"]["worker"].get("pylate") is None  # exact MaxSim needs no PyLate: the main environment
    two, four = recs["plaid(maxsim(minilm))"], recs[str(registry.build(ids[2]))]
    assert two["family"] == "multi-vector" and two["extra"]["worker"]["pylate"]
    assert two["costs"]["fit_s"]["value"] > 0  # the index build (k-means, residuals), beyond the cached encodings
    # compressed residuals: far fewer bytes per passage than the float16 vectors, more with more bits
    assert two["costs"]["bytes_per_vector"]["value"] < four["costs"]["bytes_per_vector"]["value"] \
        < exact["costs"]["bytes_per_vector"]["value"] / 2
    # set against exact MaxSim: PLAID's approximation keeps most of its top 10 on these passages
    assert 0.5 < two["metrics"]["recall_vs_exact@10"]["value"] <= four["metrics"]["recall_vs_exact@10"]["value"] + 0.05
    assert four["metrics"]["nDCG@10"]["value"] >= 0.9 * exact["metrics"]["nDCG@10"]["value"]
