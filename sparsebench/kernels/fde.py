"""MUVERA fixed dimensional encodings (Dhulipala et al. 2024, "MUVERA: Multi-Vector Retrieval via
Fixed Dimensional Encodings"): one vector per multi-vector set whose inner products approximate
Chamfer (MaxSim) similarity.

Per repetition, `ksim` random Gaussian hyperplanes (SimHash) split the space into 2^ksim
partitions; a token falls in the partition its sign bits name. Each partition's block holds the
sum of the query's tokens in it, or the mean of the document's tokens in it; a document's empty
partition takes the token whose sign bits are nearest in Hamming distance to the partition's
(the paper's fill-empty rule, documents only). Each token is first reduced to `dproj` dimensions
by a random +-1/sqrt(dproj) projection (identity when dproj is at least the token dimension).
The encoding is the concatenation over repetitions: reps * 2^ksim * dproj dimensions.

`fde_reference` follows that definition one vector at a time; `Fde.encode` is the vectorized
form the method runs, tested equal to it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class Fde:
    def __init__(self, dim: int, ksim: int, dproj: int, reps: int, seed: int) -> None:
        if not 0 <= ksim <= 12:
            raise ValueError(f"ksim={ksim} is out of range (0 to 12 SimHash bits: 1 to 4,096 partitions)")
        if dproj < 1 or reps < 1:
            raise ValueError(f"dproj={dproj} and reps={reps} must each be at least 1")
        rng = np.random.default_rng(seed)
        self.dim, self.ksim, self.reps = dim, ksim, reps
        self.partitions = 1 << ksim
        self.gauss = rng.standard_normal((reps, dim, ksim)).astype(np.float32)
        if dproj >= dim:
            self.proj: np.ndarray | None = None
            self.dproj = dim
        else:
            signs = rng.integers(0, 2, size=(reps, dim, dproj)).astype(np.float32) * 2 - 1
            self.proj = signs / np.float32(np.sqrt(dproj))
            self.dproj = dproj
        self.out_dim = reps * self.partitions * self.dproj
        # popcount of every partition id, for Hamming distances between sign patterns
        self._popcount = np.array([bin(i).count("1") for i in range(self.partitions)], dtype=np.int64)

    def partition_of(self, vectors: np.ndarray, rep: int) -> np.ndarray:
        bits = (vectors @ self.gauss[rep]) > 0  # [n, ksim]
        return (bits.astype(np.int64) << np.arange(self.ksim)).sum(axis=1) if self.ksim else np.zeros(len(vectors), np.int64)

    def project(self, vectors: np.ndarray, rep: int) -> np.ndarray:
        return vectors if self.proj is None else vectors @ self.proj[rep]

    def encode(self, tokens: np.ndarray, offsets: np.ndarray, kind: str) -> np.ndarray:
        """float32 [n_sets, out_dim] for packed sets (rows offsets[i]:offsets[i+1]); kind
        "query" sums a partition's tokens, "document" averages them and fills empty ones."""
        import torch

        if kind not in ("query", "document"):
            raise ValueError(f"kind must be query or document, not {kind!r}")
        tokens = np.ascontiguousarray(tokens, dtype=np.float32)
        n = len(offsets) - 1
        lens = np.diff(offsets)
        owner = np.repeat(np.arange(n), lens)
        parts = self.partitions
        out = np.zeros((n, self.reps, parts, self.dproj), dtype=np.float32)
        for rep in range(self.reps):
            part = self.partition_of(tokens, rep)
            proj = np.ascontiguousarray(self.project(tokens, rep), dtype=np.float32)
            slot = torch.from_numpy(owner * parts + part)
            sums = torch.zeros((n * parts, self.dproj), dtype=torch.float32)
            sums.index_add_(0, slot, torch.from_numpy(proj))
            block = sums.numpy().reshape(n, parts, self.dproj)
            if kind == "document":
                counts = np.bincount(owner * parts + part, minlength=n * parts).reshape(n, parts)
                block /= np.maximum(counts, 1)[:, :, None]
                self._fill_empty(block, counts, part, proj, offsets)
            out[:, rep] = block
        return out.reshape(n, self.out_dim)

    def _fill_empty(self, block: np.ndarray, counts: np.ndarray, part: np.ndarray, proj: np.ndarray,
                    offsets: np.ndarray) -> None:
        """Each empty partition of a document takes the document's token nearest in Hamming
        distance to it (the first such token on ties)."""
        docs = np.flatnonzero((counts == 0).any(axis=1))
        if not len(docs) or self.ksim == 0:
            return
        starts, ends = offsets[docs], offsets[docs + 1]
        lens = ends - starts
        rows = np.repeat(starts, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
        position = rows - np.repeat(starts, lens)
        # [tokens of those documents, partitions]: distance * L + position; its min is the nearest,
        # first on ties
        span = int(lens.max()) + 1
        hamming = self._popcount[part[rows][:, None] ^ np.arange(self.partitions)[None, :]]
        keyed = hamming * span + position[:, None]
        local = np.cumsum(lens) - lens
        best = np.minimum.reduceat(keyed, local, axis=0) % span  # [docs, partitions]
        empty_d, empty_p = np.nonzero(counts[docs] == 0)
        block[docs[empty_d], empty_p] = proj[starts[empty_d] + best[empty_d, empty_p]]


def fde_reference(vectors: np.ndarray, fde: Fde, kind: str) -> np.ndarray:
    """One set's encoding, token by token, from the definition (float64 accumulation)."""
    out = []
    for rep in range(fde.reps):
        acc = np.zeros((fde.partitions, fde.dproj))
        count = np.zeros(fde.partitions, dtype=np.int64)
        parts, projected = [], []
        for v in vectors:
            bits = [float(v @ fde.gauss[rep][:, j]) > 0 for j in range(fde.ksim)]
            p = sum(1 << j for j, b in enumerate(bits) if b)
            x = v.astype(np.float64) if fde.proj is None else v.astype(np.float64) @ fde.proj[rep].astype(np.float64)
            acc[p] += x
            count[p] += 1
            parts.append(p)
            projected.append(x)
        if kind == "document":
            for p in range(fde.partitions):
                if count[p]:
                    acc[p] /= count[p]
                elif fde.ksim:
                    distances = [bin(q ^ p).count("1") for q in parts]
                    acc[p] = projected[int(np.argmin(distances))]
        out.append(acc.ravel())
    return np.concatenate(out)


def pack(sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sets of vectors as one matrix and offsets."""
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    return np.concatenate(sets) if len(sets) else np.zeros((0, 0), np.float32), offsets
