"""Contrastive Sparse Representation (CSR): a TopK sparse autoencoder over a dense encoder's
vectors, served as learned sparse codes from sparsebench's inverted index.

Wen et al. 2025 ("Beyond Matryoshka: Revisiting Sparse Coding for Adaptive Representation")
make any dense embedding adaptive by coding it sparsely: a TopK sparse autoencoder (Gao et al.
2024, "Scaling and evaluating sparse autoencoders") maps a d-dimensional vector x to
`hidden` latents of which exactly k are kept,

    z = ReLU(TopK_k(W_enc (x - b_pre) + b_enc)),    x_hat = W_dec z + b_pre,

and retrieval is the inner product of the query's and the document's codes z. Here the codes
of the corpus are the postings of an inverted index (`sparsebench.kernels.inverted`, block-max
pruning by default, safe at alpha 1): a query costs one pass of the base encoder, one
hidden x d product for the SAE encoder and the postings of its k latents; no dense product over
the corpus is ever computed at search time. The knob is k, the number of active latents.

Training follows Gao et al.: normalised MSE reconstruction loss with the TopK activation,
decoder columns kept at unit norm (the gradient's component along each column is removed
before every step, and the columns normalised again after it), the encoder initialised as the
decoder's transpose, the pre-encoder bias initialised to the data mean (not the geometric
median), and the auxiliary loss AuxK (coefficient 1/32) that reconstructs the residual from the
aux_k strongest latents that have been dead, not fired for a whole epoch's worth of vectors.
It is plain torch on the CPU with a fixed seed, on the base encoder's corpus vectors (its cached
encodings: the corpus is not encoded twice), and is timed as the index's fit_s.

Left out: the paper's contrastive term (an InfoNCE loss over query-document pairs of the
codes) needs training pairs, which a retrieval corpus alone does not give; only the
reconstruction objective (plus AuxK) is trained, so this is CSR's unsupervised part, the
TopK-SAE over frozen embeddings. The trained SAE is not cached: every run fits it again.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ..datasets.types import Document
from ..errors import BenchError
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext
from .vectors import VectorMethod, VectorRetriever

AUXK_COEF = 1.0 / 32.0  # Gao et al.'s weight of the auxiliary loss
_ENCODE_BATCH = 1024  # rows per SAE encoder pass when coding the corpus


@register(
    MethodInfo(
        name="csr",
        family="compressor",
        version="1",
        summary="Contrastive Sparse Representation without its contrastive term: a TopK sparse autoencoder "
                "(k active of hidden latents, AuxK) trained on the base encoder's corpus vectors; codes "
                "answered by sparsebench's inverted index",
        paper="Wen et al. 2025, Beyond Matryoshka: Revisiting Sparse Coding for Adaptive Representation (ICML); "
              "Gao et al. 2024, Scaling and evaluating sparse autoencoders (arXiv:2406.04093)",
        licence="Apache-2.0 (sparsebench)",
        requires=("torch", "scipy", "numba"),
        cost_model=CostModel(
            proxies=(("active_units", "latents"), ("hidden", "latents"), ("postings", "count"),
                     ("sae_params", "count"), ("encoder_params", "count")),
            notes="k active latents per document and query: the index holds about k postings per document; a "
                  "query costs one base-encoder pass, one hidden x dim SAE encoder product and the postings of "
                  "its k latents. bytes_per_vector is the serialized inverted index with the corpus minus the "
                  "same index over no documents, over the documents; fit_s is the SAE's training",
        ),
        example="csr(minilm,k=32)",
    )
)
@dataclass(frozen=True)
class Csr(RetrievalMethod):
    base: VectorMethod
    k: int = 32  # active latents per document and per query (TopK)
    hidden: int | None = None  # latents of the SAE; none: 4 x the base's dimension (1536 for minilm)
    epochs: int = 30  # passes over the corpus vectors (3,127 x 384 at hidden 1536: about 10 s on one thread)
    batch_size: int = 256
    lr: float = 2e-3  # Adam (5e-4 converged too slowly in 30 epochs on MiniLM vectors)
    aux_k: int = 256  # dead latents AuxK reconstructs the residual from (0: no auxiliary loss)
    seed: int = 0
    pruning: Literal["blockmax", "exhaustive"] = "blockmax"
    block_size: int = 64

    def __post_init__(self) -> None:
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden={self.hidden} is out of range (at least 1 latent, and at least k={self.k})")
        if self.k < 1:
            raise ValueError(f"k={self.k} is out of range (at least 1 active latent, at most hidden)")
        if self.hidden is not None and self.k > self.hidden:
            raise ValueError(f"k={self.k} is out of range (at most hidden={self.hidden} active latents)")
        if self.epochs < 1:
            raise ValueError(f"epochs={self.epochs} is out of range (at least 1 pass)")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} is out of range (at least 1 vector)")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr} is out of range (a finite learning rate > 0)")
        if self.aux_k < 0:
            raise ValueError(f"aux_k={self.aux_k} is out of range (0: no auxiliary loss, else at least 1 latent)")
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size} is out of range (at least 1 document)")

    def open(self, ctx: RunContext) -> Retriever:
        return _CsrRetriever(self, self.base.open(ctx), ctx)

    def cost_units(self) -> dict[str, str]:
        return dict(self.info.cost_model.proxies)


# --- the sparse autoencoder --------------------------------------------------------------------


def _torch_module() -> Any:
    import torch

    class TopKSAE(torch.nn.Module):
        """z = ReLU(TopK_k(W_enc (x - b_pre) + b_enc)), x_hat = W_dec z + b_pre. W_enc is
        [hidden, dim], W_dec [dim, hidden] with unit-norm columns (one per latent)."""

        def __init__(self, dim: int, hidden: int, k: int, generator: Any, b_pre: Any = None) -> None:
            super().__init__()
            w_dec = torch.randn(dim, hidden, generator=generator, dtype=torch.float32)
            w_dec /= w_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)
            self.k = k
            self.w_dec = torch.nn.Parameter(w_dec)
            self.w_enc = torch.nn.Parameter(w_dec.t().clone())
            self.b_enc = torch.nn.Parameter(torch.zeros(hidden))
            self.b_pre = torch.nn.Parameter(torch.zeros(dim) if b_pre is None else b_pre.clone())

        def pre_activations(self, x: Any) -> Any:
            return (x - self.b_pre) @ self.w_enc.t() + self.b_enc

        def encode(self, x: Any) -> tuple[Any, Any, Any]:
            """(values >= 0 [n, k], latent ids [n, k], pre-activations [n, hidden])."""
            pre = self.pre_activations(x)
            values, ids = pre.topk(self.k, dim=1)
            return torch.relu(values), ids, pre

        def decode(self, values: Any, ids: Any, bias: bool = True) -> Any:
            z = torch.zeros(values.shape[0], self.w_dec.shape[1], dtype=values.dtype).scatter(1, ids, values)
            out = z @ self.w_dec.t()
            return out + self.b_pre if bias else out

        @torch.no_grad()
        def normalise_decoder(self) -> None:
            self.w_dec /= self.w_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)

        @torch.no_grad()
        def project_decoder_grad(self) -> None:
            # Remove the part of each column's gradient along the column: a step then moves it
            # on the unit sphere (to first order), as Gao et al. do before renormalising.
            if self.w_dec.grad is not None:
                w = self.w_dec
                self.w_dec.grad -= w * (self.w_dec.grad * w).sum(dim=0, keepdim=True)

    return TopKSAE


def normalized_mse(recon: Any, target: Any) -> Any:
    """Mean squared error over the error of predicting the target's batch mean (Gao et al.)."""
    return ((recon - target) ** 2).mean() / ((target - target.mean(dim=0, keepdim=True)) ** 2).mean()


def sae_loss(sae: Any, x: Any, dead: Any | None, aux_k: int) -> tuple[Any, Any, Any, Any]:
    """(total, reconstruction nmse, AuxK nmse, latent ids [n, k]) of one batch. `dead`: bool
    [hidden], the latents AuxK may use (none dead, or aux_k 0: AuxK is 0)."""
    import torch

    values, ids, pre = sae.encode(x)
    recon = sae.decode(values, ids)
    recon_loss = normalized_mse(recon, x)
    aux_loss = torch.zeros((), dtype=x.dtype)
    n_dead = int(dead.sum()) if dead is not None else 0
    if aux_k > 0 and n_dead > 0:
        masked = pre.masked_fill(~dead, float("-inf"))
        aux_values, aux_ids = masked.topk(min(aux_k, n_dead), dim=1)
        residual = x - recon.detach()
        # Gao et al.: the dead latents' reconstruction of the residual (both shifted by b_pre,
        # which leaves the normalised MSE unchanged); NaN (a zero residual) counts as 0.
        aux_loss = normalized_mse(sae.decode(torch.relu(aux_values), aux_ids, bias=False), residual).nan_to_num(0.0)
    return recon_loss + AUXK_COEF * aux_loss, recon_loss, aux_loss, ids


@dataclass
class FitStats:
    seconds: float
    final_nmse: float  # reconstruction nmse over the whole training set after training
    dead_latents: int  # latents that fired on no training vector after training
    steps: int


def train_sae(x: np.ndarray, hidden: int, k: int, epochs: int, batch_size: int, lr: float, aux_k: int, seed: int,
              threads: int = 1) -> tuple[Any, FitStats]:
    """A TopK SAE fitted to the rows of x (float32 [n, dim]); deterministic for a seed and thread count."""
    import torch

    n, dim = x.shape
    if n < 1:
        raise BenchError("csr: the SAE is trained on the corpus vectors, and there are none")
    if k > hidden:
        raise BenchError(f"csr: k={k} is more than hidden={hidden} latents; use k<={hidden}")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    t0 = time.perf_counter()
    try:
        gen = torch.Generator().manual_seed(seed)
        data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        sae = _torch_module()(dim, hidden, k, gen, b_pre=data.mean(dim=0))
        opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=6.25e-10)
        # Vectors seen since each latent last fired; dead after a whole epoch's worth.
        since_fired = torch.zeros(hidden, dtype=torch.long)
        steps = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                batch = data[order[start : start + batch_size]]
                dead = since_fired >= n
                loss, _, _, ids = sae_loss(sae, batch, dead, aux_k)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                sae.project_decoder_grad()
                opt.step()
                sae.normalise_decoder()
                steps += 1
                fired = torch.zeros(hidden, dtype=torch.bool)
                fired[ids.flatten()] = True
                since_fired += len(batch)
                since_fired[fired] = 0
        sae.eval()
        with torch.no_grad():
            counts = torch.zeros(hidden, dtype=torch.long)
            err = 0.0
            for start in range(0, n, _ENCODE_BATCH):
                batch = data[start : start + _ENCODE_BATCH]
                values, ids, _ = sae.encode(batch)
                err += float(((sae.decode(values, ids) - batch) ** 2).sum())
                counts += torch.bincount(ids[values > 0], minlength=hidden)
            var = float(((data - data.mean(dim=0)) ** 2).sum())
        stats = FitStats(time.perf_counter() - t0, err / var if var > 0 else 0.0, int((counts == 0).sum()), steps)
    finally:
        torch.set_num_threads(old_threads)
    return sae, stats


def encode_codes(sae: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(latent ids int64 [n, k], values float32 [n, k] >= 0) of the rows of x."""
    import torch

    ids_out = np.zeros((len(x), sae.k), dtype=np.int64)
    vals_out = np.zeros((len(x), sae.k), dtype=np.float32)
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        for start in range(0, len(x), _ENCODE_BATCH):
            values, ids, _ = sae.encode(data[start : start + _ENCODE_BATCH])
            ids_out[start : start + len(ids)] = ids.numpy()
            vals_out[start : start + len(ids)] = values.numpy()
    return ids_out, vals_out


def codes_matrix(ids: np.ndarray, values: np.ndarray, hidden: int) -> Any:
    """scipy CSR [n, hidden] of the codes (zeros, latents that the ReLU closed, dropped)."""
    import scipy.sparse as sp

    n, k = ids.shape
    m = sp.csr_matrix((values.ravel(), ids.ravel(), np.arange(0, n * k + 1, k, dtype=np.int64)), shape=(n, hidden))
    m.eliminate_zeros()
    m.sort_indices()
    return m


def sae_arrays(sae: Any) -> dict[str, np.ndarray]:
    """What encoding a query needs: the encoder and both biases (the decoder is for training only)."""
    return {"w_enc": sae.w_enc.detach().numpy(), "b_enc": sae.b_enc.detach().numpy(),
            "b_pre": sae.b_pre.detach().numpy()}


# --- the retriever -----------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> int:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getbuffer().nbytes


def _npy_bytes(array: np.ndarray) -> int:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getbuffer().nbytes


class _CsrRetriever(Retriever):
    def __init__(self, method: Csr, base: VectorRetriever, ctx: RunContext) -> None:
        self._method = method
        self._base = base
        self._ctx = ctx
        self.doc_ids: list[str] = []
        self._sae: Any = None
        self._hidden = 0
        self._index: Any = None
        self._empty_bytes = 0  # the index over no documents: its per-latent pointers
        self.fit_stats: FitStats | None = None

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        from ..kernels.inverted import from_csr

        m = self._method
        report = self._base.index(corpus)  # the base's cached encodings, when it has them
        self.doc_ids = list(self._base.doc_ids)
        docs = np.ascontiguousarray(self._base.doc_vectors(), dtype=np.float32)
        self._hidden = m.hidden if m.hidden is not None else 4 * docs.shape[1]
        if m.k > self._hidden:
            raise BenchError(f"{m}: k={m.k} is more than the SAE's {self._hidden} latents (4 x the base's "
                             f"{docs.shape[1]} dimensions); use k<={self._hidden} or set hidden")
        self._sae, self.fit_stats = train_sae(docs, self._hidden, m.k, m.epochs, m.batch_size, m.lr, m.aux_k, m.seed,
                                              self._ctx.threads)
        fit_s = self.fit_stats.seconds
        t0 = time.perf_counter()
        codes = codes_matrix(*encode_codes(self._sae, docs), self._hidden)
        self._index = from_csr(codes, m.block_size)
        build_s = time.perf_counter() - t0
        self._empty_bytes = _npz_bytes(from_csr(codes[:0], m.block_size).arrays())
        self._base.release()
        report.fit_s = (report.fit_s or 0.0) + fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += fit_s + build_s
        report.extra = {**report.extra, "sae_fit_s": fit_s, "index_construct_s": build_s,
                        "sae_nmse": self.fit_stats.final_nmse, "sae_dead_latents": float(self.fit_stats.dead_latents)}
        return report

    def encode_queries(self, queries: Sequence[str]) -> list[dict[int, float]]:
        """Each query's code as {latent: weight}, its positive entries only (at most k)."""
        if len(queries) == 0:
            return []
        ids, values = encode_codes(self._sae, self._base.query_vectors(queries))
        return [{int(t): float(w) for t, w in zip(row_t, row_w) if w > 0} for row_t, row_w in zip(ids, values)]

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        from ..kernels.inverted import search_batch

        if self._index is None:
            raise RuntimeError(f"{self._method}: search() before index()")
        threads = self._ctx.threads if len(queries) > 1 else 1
        hits = search_batch(self._index, self.encode_queries(queries), k, self._method.pruning, 1.0, max(1, threads))
        return [[(self.doc_ids[d], float(s)) for d, s in row] for row in hits]

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        # recall_vs_exact is against the dense encoder's own exact top k.
        return self._base.exact_search(queries, k)

    def save(self, directory: Path) -> None:
        np.savez(directory / "index.npz", **self._index.arrays())
        for name, array in sae_arrays(self._sae).items():
            np.save(directory / f"sae_{name}.npy", array, allow_pickle=False)
        (directory / "doc_ids.txt").write_text("\n".join(self.doc_ids))

    def vector_bytes(self) -> tuple[float, float] | None:
        # Per vector: the serialized index (index.npz as save() writes it) minus the same index
        # over no documents (whose per-latent pointers do not grow with the corpus), over the
        # documents. Fixed: that empty index plus the SAE encoder's .npy files, which a query needs.
        n = len(self.doc_ids)
        if n == 0 or self._index is None:
            return None
        per_vector = (_npz_bytes(self._index.arrays()) - self._empty_bytes) / n
        fixed = self._empty_bytes + sum(_npy_bytes(a) for a in sae_arrays(self._sae).values())
        return per_vector, float(fixed)

    def proxies(self) -> dict[str, float]:
        out = {
            "active_units": float(self._method.k),
            "hidden": float(self._hidden),
            "postings": float(len(self._index.docs)) if self._index is not None else 0.0,
            "sae_params": float(sum(a.size for a in sae_arrays(self._sae).values())) if self._sae is not None else 0.0,
        }
        base = self._base.proxies()
        if "encoder_params" in base:
            out["encoder_params"] = base["encoder_params"]
        return out
