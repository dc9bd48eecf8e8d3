import numpy as np
import pytest
import torch

from sparsebench.kernels.topk import topk_reference, topk_torch


@pytest.mark.parametrize("n_docs, k", [(50, 10), (7, 10), (300, 1)])
def test_torch_topk_matches_reference(n_docs: int, k: int) -> None:
    rng = np.random.default_rng(n_docs)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    d = rng.standard_normal((n_docs, 16)).astype(np.float32)
    ref_s, ref_i = topk_reference(q, d, k)
    s, i = topk_torch(torch.from_numpy(q), torch.from_numpy(d), k)
    assert s.shape == ref_s.shape == (5, min(k, n_docs))
    np.testing.assert_allclose(s.numpy(), ref_s, rtol=1e-5, atol=1e-5)  # float32 vs float64 accumulation
    np.testing.assert_array_equal(i.numpy(), ref_i)  # random scores: no ties


def test_reference_breaks_ties_by_document_order() -> None:
    q = np.ones((1, 2), dtype=np.float32)
    d = np.array([[1, 0], [0, 1], [2, 0]], dtype=np.float32)
    _, idx = topk_reference(q, d, 3)
    assert idx.tolist() == [[2, 0, 1]]
