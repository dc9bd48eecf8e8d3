"""Any ColBERT checkpoint (a Hugging Face id or a local folder in PyLate's format) through PyLate.

`colbert(model=ID_OR_DIR)` encodes queries and passages with the checkpoint's own query and
document settings (PyLate's [Q]/[D] markers, query padding with [MASK] to `query_length`,
punctuation skipped on the document side, the projection to the checkpoint's dimension) and
scores them by exhaustive exact MaxSim like `maxsim(minilm)`; `pool(...)` and `muvera(...)` wrap
it the same way. PyLate pins sentence-transformers 5.3.0, so this method's worker runs in the
`late` environment (`scripts/setup.sh --env late`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cache import content_key
from ..models import model_fingerprint, offline_model_error, resolve_model
from ..registry import MethodInfo, register
from .base import RunContext
from .multivector import _COSTS, MultiVectorMethod, MultiVectorRetriever, TokenStatesRetriever


class PyLateEncoder:
    """PyLate's ColBERT as a token encoder: one float32 [n_tokens, dim] matrix per text, L2-normalised."""

    def __init__(self, model: str, query_length: int | None, document_length: int | None, device: str) -> None:
        from pylate import models

        resolved = resolve_model(model)
        kwargs = {k: v for k, v in (("query_length", query_length), ("document_length", document_length)) if v is not None}
        try:
            self._model = models.ColBERT(model_name_or_path=resolved, device=device, **kwargs)
        except OSError as e:
            raise offline_model_error(model, e) from e
        probe = self._model.encode(["a"], is_query=False, show_progress_bar=False)[0]
        self.dim = int(np.asarray(probe).shape[-1])
        self.params = sum(p.numel() for p in self._model.parameters())
        self.fingerprint = content_key(model_fingerprint(resolved), "pylate", query_length, document_length)

    def encode_tokens(self, texts: Sequence[str], kind: str, batch_size: int, progress: bool) -> list[np.ndarray]:
        out = self._model.encode(list(texts), is_query=kind == "query", batch_size=batch_size,
                                 show_progress_bar=progress)
        vectors = []
        for v in out:
            v = np.asarray(v, dtype=np.float32)
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            vectors.append(v / np.where(norms > 0, norms, 1.0))
        return vectors


@register(
    MethodInfo(
        name="colbert",
        family="multi-vector",
        version="1",
        summary="a ColBERT checkpoint (Hugging Face id or local folder) through PyLate, exhaustive exact MaxSim",
        paper="Khattab & Zaharia 2020, ColBERT (SIGIR); Santhanam et al. 2022, ColBERTv2 (NAACL); "
              "Chaffin & Sourty 2025, PyLate",
        licence="Apache-2.0 (sparsebench); PyLate MIT; the checkpoint's own",
        requires=("pylate",),
        cost_model=_COSTS,
    )
)
@dataclass(frozen=True)
class ColBERT(MultiVectorMethod):
    model: str = "lightonai/GTE-ModernColBERT-v1"
    # Query tokens (padded with [MASK]: ColBERT's query augmentation) and passage tokens kept;
    # None: the checkpoint's own settings (PyLate's defaults, 32 and 180, where it has none).
    query_length: int | None = None
    document_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("query_length", "document_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} is out of range (at least 1 token, or unset for the checkpoint's own)")

    def worker_env(self) -> str | None:
        return "late"

    def open(self, ctx: RunContext) -> MultiVectorRetriever:
        return TokenStatesRetriever(str(self), PyLateEncoder(self.model, self.query_length, self.document_length,
                                                             ctx.device), ctx)
