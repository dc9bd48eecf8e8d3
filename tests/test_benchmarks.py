"""pytest-benchmark timings of the query paths (run with --benchmark-enable; the default run
executes each once as a correctness check)."""

import pytest

from sparsebench import registry
from sparsebench.cache import ArtifactCache
from sparsebench.datasets.resolve import load_source
from sparsebench.kernels.topk import topk_torch
from sparsebench.methods.base import RunContext


@pytest.fixture(scope="module")
def faq():
    return load_source("embedded:faq", "faq")


@pytest.mark.parametrize("method_id", ["bm25", "bm25(k1=0.9,b=0.4)"])
def test_bm25_single_query(benchmark, faq, method_id, tmp_path) -> None:
    retriever = registry.build(method_id).open(RunContext(cache=ArtifactCache(tmp_path), threads=1, progress=False))
    retriever.index(faq.corpus)
    query = faq.queries[0].text
    hits = benchmark(retriever.search, [query], 100)
    assert hits[0] and hits[0][0][1] >= hits[0][-1][1]


def test_exact_dense_topk(benchmark) -> None:
    import torch

    torch.manual_seed(0)
    docs = torch.nn.functional.normalize(torch.randn(3127, 384), dim=1)
    query = docs[:1] + 0.01 * torch.randn(1, 384)
    scores, idx = benchmark(topk_torch, query, docs, 100)
    assert idx[0, 0].item() == 0
