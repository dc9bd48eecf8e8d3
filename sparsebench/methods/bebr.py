"""BEBR: recurrent multi-bit binarization of any dense encoder, searched by popcount.

After Gan et al. 2023, "Binary Embedding-based Retrieval at Tencent" (KDD; arXiv 2302.08714).
`bebr(minilm,bits=2)` turns each float vector x (d dimensions) into `bits` binary vectors
b_0 .. b_{u-1} in {-1,+1}^m (u = bits, m = `dim`, by default d) with the paper's recurrent
scheme, written here as recalled from the paper:

    b_0     = sign(phi_0(x))                      binarization block (residual MLP), sign with
    x^_0    = psi_0(b_0)                          a straight-through estimator in training;
    r_t     = x - x^_t                            reconstruction block (residual MLP) and residual
    b_{t+1} = sign(phi_{t+1}(r_t))
    x^_{t+1}= x^_t + psi_{t+1}(b_{t+1})

The recurrent binary embedding is the composition z = sum_t w_t b_t (one learned scalar w_t
per level), so a document costs bits * m / 8 bytes (np.packbits, level after level). Queries
are binarized by the same model (symmetric) and scored against documents as the paper's
Symmetric Distance Calculation does: the inner product of the two compositions,

    <z_q, z_d> = sum_i sum_j w_i w_j <b_i^q, b_j^d>,   <b, b'> = m - 2 * hamming(b, b'),

every level pair counted with popcount over XORed packed bytes (`popcount_search`, exact
over the whole corpus; `reference_search` is the same with float +-1 vectors and matrix
products, for the tests).

What differs from the paper (said precisely, since the paper's model cannot be reproduced here):

* Training data and objective. The paper trains the binarization model alone on float
  embeddings ("embedding-to-embedding", task-agnostic) with an NCE-form contrastive loss and
  hard-negative mining, using query/document pairs of its products. A benchmark run has no
  training pairs, only the corpus, so the model is fitted on the corpus' own document vectors
  (at most 20,000, a seeded sample) with an embedding-similarity-preserving listwise loss:
  within a batch, KL(softmax(X X^T / tau) || softmax(Z Z^T / tau)), tau = 0.05, which asks the
  binary scores <z_i, z_j> to rank the batch as the float inner products do (the diagonal
  term is the paper's self-discrimination: a vector's own code should score highest against
  its float self's neighbours), plus 0.1 x the reconstruction loss ||x - x^_{u-1}||^2 of the
  residual chain. Hard negatives: a batch is 32 random anchors, each with its 7 nearest
  documents by float inner product. No backward-compatible training (one encoder version).
* Blocks. phi_t is a linear map (d -> m, with bias) followed by one residual MLP (m -> m -> m,
  GELU, last layer zero-initialised); psi_t a linear map (m -> d) plus one residual MLP in d.
  The residual fed to phi_t is first scaled to unit RMS per vector (sign does not care; the
  MLP and the straight-through window then see the same scale at every level). The paper's
  exact widths and depths are not reproduced. Initialisation is greedy residual sign
  quantization in a shared random rotation (w_t and psi_t's scale: the mean |coordinate| of
  each level's residual), then training refines it.
* Weights w_t are learned free scalars per level (the paper's per-level scaling of the
  recurrent embedding); SDC's SIMD lookup tables are replaced by numpy popcount over uint64
  (or uint8) words, which gives the same scores.
* Fixed seed (0), plain torch on CPU, bounded epochs (`epochs`, each ceil(n / 256) steps of
  256 vectors), Adam at a small learning rate (3e-5); epochs=0 keeps the greedy initialisation.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..datasets.types import Document
from ..errors import BenchError
from ..registry import CostModel, MethodInfo, register
from .base import Hit, IndexReport, RetrievalMethod, Retriever, RunContext
from .vectors import VectorMethod, VectorRetriever

MAX_BITS = 16
SEED = 0
BATCH = 256
TAU = 0.05
LR = 3e-5  # the greedy initialisation is already good: training refines it
REC_WEIGHT = 0.1  # reconstruction loss weight beside the listwise similarity loss (weight 1)
NEIGHBOURS = 7  # nearest documents added to each anchor of a training batch
MAX_TRAIN = 20000  # training vectors at most (a seeded sample of a larger corpus)
QUERY_BLOCK = 64  # queries scored together by the popcount search (bounds its memory)

_COSTS = CostModel(
    proxies=(("bits", "bits"), ("dim", "dims"), ("model_bytes", "B"), ("popcount_words_per_query", "count"),
             ("encoder_params", "count")),
    notes="bytes_per_vector is measured from the serialized packed codes (bits * dim / 8 per document); "
          "model_bytes is the serialized binarization model a query needs (it does not grow with the corpus); "
          "a query costs one encoder pass, the model's forward pass and bits^2 * n_docs * dim / 64 popcounts of 64-bit words",
)


@register(
    MethodInfo(
        name="bebr",
        family="compressor",
        version="1",
        summary="recurrent binarization (BEBR): bits binary vectors per embedding from residual MLP blocks, "
                "learned on the corpus; symmetric popcount search over the weighted level pairs",
        paper="Gan et al. 2023, Binary Embedding-based Retrieval at Tencent (KDD)",
        licence="Apache-2.0 (sparsebench)",
        cost_model=_COSTS,
        example="bebr(minilm,bits=2)",
    )
)
@dataclass(frozen=True)
class Bebr(RetrievalMethod):
    base: VectorMethod
    bits: int = 2  # binary levels per dimension (u); bytes per document = bits * dim / 8
    dim: int = 0  # binary dimensions m per level; 0: the encoder's dimension. A multiple of 8
    epochs: int = 10  # passes over the corpus vectors when fitting the binarization model

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits={self.bits} is out of range (1 to {MAX_BITS} binary levels per dimension)")
        if self.dim < 0 or self.dim % 8:
            raise ValueError(f"dim={self.dim} is out of range (0: the encoder's dimension, or a positive multiple of 8)")
        if not 0 <= self.epochs <= 1000:
            raise ValueError(f"epochs={self.epochs} is out of range (0 to 1000 passes; 0: the greedy initialisation)")

    def open(self, ctx: RunContext) -> Retriever:
        return BebrRetriever(self.base.open(ctx), ctx, self.bits, self.dim, self.epochs, what=str(self))

    def cost_units(self) -> dict[str, str]:
        return dict(self.info.cost_model.proxies)


# --- the binarization model ----------------------------------------------------------------------


def _nearest(x: Any, k: int) -> Any:
    """Indices of each row's k largest inner products with the other rows (torch long [n, k])."""
    import torch

    out = []
    for start in range(0, len(x), 1024):
        block = x[start:start + 1024] @ x.T
        rows = torch.arange(start, start + len(block))
        block[torch.arange(len(block)), rows] = -float("inf")  # not itself
        out.append(block.topk(k, dim=1).indices)
    return torch.cat(out) if out else torch.zeros((0, k), dtype=torch.long)


def _model_class() -> Any:
    """torch is imported only when a model is built (bench list stays fast)."""
    import torch
    from torch import nn

    def ste_sign(a: torch.Tensor) -> torch.Tensor:
        # Forward: sign with sign(0) = +1 (as the packed codes store it). Backward: the identity
        # inside [-1, 1], zero outside (the usual clipped straight-through estimator).
        hard = torch.where(a >= 0, 1.0, -1.0).to(a.dtype)
        soft = a.clamp(-1.0, 1.0)
        return soft + (hard - soft).detach()

    class ResidualMlp(nn.Module):
        def __init__(self, width: int, gen: torch.Generator) -> None:
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(width, width, generator=gen) / width ** 0.5)
            self.b1 = nn.Parameter(torch.zeros(width))
            self.w2 = nn.Parameter(torch.zeros(width, width))  # starts as the identity block
            self.b2 = nn.Parameter(torch.zeros(width))

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return h + nn.functional.gelu(h @ self.w1.T + self.b1) @ self.w2.T + self.b2

    class Recurrent(nn.Module):
        def __init__(self, d: int, m: int, u: int, rotation: torch.Tensor, gen: torch.Generator) -> None:
            super().__init__()
            self.d, self.m, self.u = d, m, u
            # binarization blocks phi_t: d -> m
            self.enc = nn.ParameterList([nn.Parameter(rotation.clone()) for _ in range(u)])
            self.enc_b = nn.ParameterList([nn.Parameter(torch.zeros(m)) for _ in range(u)])
            self.enc_mlp = nn.ModuleList([ResidualMlp(m, gen) for _ in range(u)])
            # reconstruction blocks psi_t: m -> d, times a per-level scale (matrices stay O(1))
            self.dec = nn.ParameterList([nn.Parameter(rotation.T.clone()) for _ in range(u)])
            self.dec_mlp = nn.ModuleList([ResidualMlp(d, gen) for _ in range(u)])
            self.dec_scale = nn.Parameter(torch.ones(u))
            # per-level weights of the recurrent binary embedding z = sum_t w_t b_t
            self.w = nn.Parameter(torch.ones(u))

        def binarize(self, t: int, v: torch.Tensor) -> torch.Tensor:
            v = v / v.pow(2).mean(dim=1, keepdim=True).add(1e-12).sqrt()  # unit RMS per vector
            a = self.enc_mlp[t](v @ self.enc[t].T + self.enc_b[t])
            return ste_sign(a)

        def reconstruct(self, t: int, b: torch.Tensor) -> torch.Tensor:
            return self.dec_scale[t] * self.dec_mlp[t](b @ self.dec[t].T)

        def forward(self, x: torch.Tensor, levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            """(codes [n, levels, m] in {-1, +1}, reconstruction [n, d] after the last level)."""
            levels = self.u if levels is None else levels
            codes = []
            recon = torch.zeros_like(x)
            residual = x
            for t in range(levels):
                b = self.binarize(t, residual)
                codes.append(b)
                if t < levels - 1 or self.training:
                    recon = recon + self.reconstruct(t, b)
                    residual = x - recon
            return torch.stack(codes, dim=1), recon

    return Recurrent


class BebrModel:
    """The fitted recurrent binarizer: float vectors in, per-level +-1 codes out."""

    def __init__(self, d: int, m: int, bits: int) -> None:
        import torch

        self.d, self.m, self.bits = d, m, bits
        gen = torch.Generator().manual_seed(SEED)
        # a shared random rotation (orthonormal rows if m <= d, orthonormal columns if m > d)
        g = torch.randn(max(d, m), min(d, m), generator=gen, dtype=torch.float64)
        q, _ = torch.linalg.qr(g)
        rotation = (q if m >= d else q.T)[:m, :d].to(torch.float32).contiguous()
        self.net = _model_class()(d, m, bits, rotation, gen)
        self._gen = gen
        self.fit_s = 0.0

    def fit(self, docs: np.ndarray, epochs: int, threads: int) -> None:
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads))
        try:
            x = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
            if len(x) > MAX_TRAIN:  # a seeded sample bounds the time (and the neighbour search)
                x = x[torch.randperm(len(x), generator=self._gen)[:MAX_TRAIN]]
            self._greedy_init(x)
            if len(x) > 1 and epochs > 0:
                self._train(x, epochs)
        finally:
            torch.set_num_threads(old_threads)

    def _greedy_init(self, x: torch.Tensor) -> None:  # noqa: F821 - torch imported lazily
        """psi_t's scale and w_t: each level's mean |coordinate| of its residual in the rotated
        space, so that the untrained model is greedy residual sign quantization."""
        import torch

        net = self.net
        net.eval()
        with torch.no_grad():
            residual = x
            recon = torch.zeros_like(x)
            for t in range(net.u):
                b = net.binarize(t, residual)
                proj = residual @ net.enc[t].T  # the residual's coordinates along phi_t's rows
                scale = float(proj.abs().mean()) if len(x) else 1.0
                scale = scale if scale > 0 else 1.0
                net.dec_scale[t] = scale
                net.w[t] = scale
                recon = recon + net.reconstruct(t, b)
                residual = x - recon

    def _train(self, x: torch.Tensor, epochs: int) -> None:  # noqa: F821
        """Each step: GROUP_ANCHORS random documents and each one's NEIGHBOURS nearest documents
        (by the float inner product: the hard negatives the listwise loss must order), then
        reconstruction + listwise similarity loss, Adam."""
        import torch
        import torch.nn.functional as F

        net = self.net
        n = len(x)
        neighbours = _nearest(x, min(NEIGHBOURS, n - 1))  # [n, k] long
        group = neighbours.shape[1] + 1
        anchors_per_step = max(1, BATCH // group)
        steps = max(1, -(-n // BATCH))
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        net.train()
        for _ in range(epochs):
            for _ in range(steps):
                anchors = torch.randint(n, (anchors_per_step,), generator=self._gen)
                idx = torch.cat([anchors[:, None], neighbours[anchors]], dim=1).reshape(-1)
                batch = x[idx]
                codes, recon = net(batch)
                z = (codes * net.w[None, :, None]).sum(dim=1)
                rec = (batch - recon).pow(2).sum(dim=1).mean()
                teacher = F.softmax(batch @ batch.T / TAU, dim=1)
                student = F.log_softmax(z @ z.T / TAU, dim=1)
                sim = F.kl_div(student, teacher, reduction="batchmean")
                loss = REC_WEIGHT * rec + sim
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """int8 [n, bits, m] in {-1, +1}."""
        import torch

        if len(vectors) == 0:
            return np.zeros((0, self.bits, self.m), dtype=np.int8)
        self.net.eval()
        with torch.no_grad():
            codes, _ = self.net(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
        return codes.numpy().astype(np.int8)

    def reconstruct(self, vectors: np.ndarray) -> np.ndarray:
        """The float vectors the codes decode to (x^ after the last level), float32 [n, d]."""
        import torch

        self.net.eval()
        with torch.no_grad():
            net = self.net
            x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
            codes, _ = net(x)
            recon = sum(net.reconstruct(t, codes[:, t]) for t in range(net.u))
        return recon.numpy()

    def weights(self) -> np.ndarray:
        return self.net.w.detach().numpy().astype(np.float64)

    def query_arrays(self) -> dict[str, np.ndarray]:
        """What encoding a query needs: every binarization block, the reconstruction blocks of
        all levels but the last (they form the residuals), and the level weights."""
        out: dict[str, np.ndarray] = {"w": self.net.w.detach().numpy()}
        for name, value in self.net.state_dict().items():
            parts = name.split(".")
            if parts[0] == "w" or parts[0] in ("dec", "dec_mlp") and int(parts[1]) == self.bits - 1:
                continue
            out[name] = value.numpy()[: self.bits - 1] if name == "dec_scale" else value.numpy()
        return out


# --- codes and search ----------------------------------------------------------------------------


def pack(codes: np.ndarray) -> np.ndarray:
    """+-1 codes [n, u, m] -> uint8 [n, u * m / 8]: bit set where +1, level after level."""
    n, u, m = codes.shape
    return np.packbits(codes > 0, axis=2).reshape(n, u * (m // 8))


def unpack(packed: np.ndarray, bits: int, m: int) -> np.ndarray:
    """uint8 [n, u * m / 8] -> float64 +-1 [n, u, m]."""
    n = len(packed)
    b = np.unpackbits(packed.reshape(n, bits, m // 8), axis=2, count=m)
    return b.astype(np.float64) * 2.0 - 1.0


def level_pair_weights(w: np.ndarray) -> np.ndarray:
    """W[i, j] = w_i w_j: the weight of <b_i^q, b_j^d> in <sum_i w_i b_i^q, sum_j w_j b_j^d>."""
    w = np.asarray(w, dtype=np.float64)
    return np.outer(w, w)


def _topk(scores: np.ndarray, doc_ids: Sequence[str], k: int) -> list[list[Hit]]:
    # best first, equal scores by lower document position (stable sort of the negated scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(doc_ids[int(i)], float(row[i])) for i in idx] for row, idx in zip(scores, order)]


def popcount_search(q_packed: np.ndarray, d_packed: np.ndarray, w: np.ndarray, bits: int, m: int,
                    doc_ids: Sequence[str], k: int) -> list[list[Hit]]:
    """Exact top k over every document: sum_ij W_ij (m - 2 popcount(q_i XOR d_j))."""
    nq, n = len(q_packed), len(d_packed)
    if n == 0 or k <= 0:
        return [[] for _ in range(nq)]
    pair = level_pair_weights(w)
    word = np.uint64 if (m // 8) % 8 == 0 else np.uint8  # 64-bit words where a level fills them
    q = np.ascontiguousarray(q_packed).view(word).reshape(nq, bits, -1)
    d = np.ascontiguousarray(d_packed).view(word).reshape(n, bits, -1)
    out: list[list[Hit]] = []
    for start in range(0, nq, QUERY_BLOCK):
        qb = q[start:start + QUERY_BLOCK]
        scores = np.zeros((len(qb), n), dtype=np.float64)
        for i in range(bits):
            for j in range(bits):
                ham = np.bitwise_count(qb[:, None, i, :] ^ d[None, :, j, :]).sum(axis=2, dtype=np.int64)
                scores += pair[i, j] * (m - 2 * ham).astype(np.float64)
        out.extend(_topk(scores, doc_ids, k))
    return out


def reference_search(q_packed: np.ndarray, d_packed: np.ndarray, w: np.ndarray, bits: int, m: int,
                     doc_ids: Sequence[str], k: int) -> list[list[Hit]]:
    """The same scores from float +-1 vectors and dot products (slow; for tests)."""
    nq, n = len(q_packed), len(d_packed)
    if n == 0 or k <= 0:
        return [[] for _ in range(nq)]
    pair = level_pair_weights(w)
    qv, dv = unpack(q_packed, bits, m), unpack(d_packed, bits, m)
    scores = np.zeros((nq, n), dtype=np.float64)
    for i in range(bits):
        for j in range(bits):
            scores += pair[i, j] * (qv[:, i, :] @ dv[:, j, :].T)
    return _topk(scores, doc_ids, k)


def _npy_bytes(array: np.ndarray) -> int:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getbuffer().nbytes


def _npz_bytes(arrays: dict[str, np.ndarray]) -> int:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getbuffer().nbytes


# --- the retriever -------------------------------------------------------------------------------


class BebrRetriever(Retriever):
    def __init__(self, source: VectorRetriever, ctx: RunContext, bits: int, dim: int, epochs: int, what: str) -> None:
        self._source = source
        self._ctx = ctx
        self._bits = bits
        self._dim_asked = dim
        self._epochs = epochs
        self._what = what
        self.model: BebrModel | None = None
        self.codes = np.zeros((0, 0), dtype=np.uint8)  # packed, [n_docs, bits * m / 8]
        self.m = 0
        self.doc_ids: list[str] = []

    def index(self, corpus: Sequence[Document]) -> IndexReport:
        report = self._source.index(corpus)
        self.doc_ids = list(self._source.doc_ids)
        docs = np.ascontiguousarray(self._source.doc_vectors(), dtype=np.float32)
        d = docs.shape[1]
        self.m = self._dim_asked or d
        if self.m % 8:
            raise BenchError(f"{self._what}: the encoder's {d} dimensions are not a multiple of 8, so codes would not "
                             f"pack into whole bytes; set dim= to a multiple of 8")
        t0 = time.perf_counter()
        self.model = BebrModel(d, self.m, self._bits)
        self.model.fit(docs, self._epochs, self._ctx.threads)
        fit_s = time.perf_counter() - t0
        self.codes = pack(self.model.encode(docs))
        build_s = time.perf_counter() - t0
        self._source.release()
        report.fit_s = (report.fit_s or 0.0) + fit_s
        if report.cache_hit and report.cached_build_s is not None:
            report.cached_build_s += build_s
        report.extra = {**report.extra, "bebr_encode_s": build_s - fit_s}
        return report

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        assert self.model is not None, "search() before index()"
        return pack(self.model.encode(self._source.query_vectors(queries)))

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        if not self.doc_ids:
            return [[] for _ in queries]
        assert self.model is not None
        return popcount_search(self.encode_queries(queries), self.codes, self.model.weights(), self._bits, self.m,
                               self.doc_ids, k)

    def exact_search(self, queries: Sequence[str], k: int) -> list[list[Hit]] | None:
        return self._source.exact_search(queries, k)

    def save(self, directory: Path) -> None:
        np.save(directory / "codes.npy", self.codes, allow_pickle=False)
        if self.model is not None:
            np.savez(directory / "bebr_model.npz", **self.model.query_arrays())
        (directory / "doc_ids.txt").write_text("\n".join(self.doc_ids))

    def model_bytes(self) -> int:
        return _npz_bytes(self.model.query_arrays()) if self.model is not None else 0

    def vector_bytes(self) -> tuple[float, float] | None:
        n = len(self.doc_ids)
        if n == 0:
            return None
        per_doc = (_npy_bytes(self.codes) - _npy_bytes(self.codes[:0])) / n
        return per_doc, float(self.model_bytes())

    def proxies(self) -> dict[str, float]:
        words = self._bits * self._bits * len(self.doc_ids) * self.m / 64
        out = {"bits": float(self._bits), "dim": float(self.m), "model_bytes": float(self.model_bytes()),
               "popcount_words_per_query": float(words)}
        base = self._source.proxies()
        if "encoder_params" in base:
            out["encoder_params"] = base["encoder_params"]
        return out
