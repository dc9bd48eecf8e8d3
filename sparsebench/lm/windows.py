"""Fixed-length token windows for evaluation and seeded calibration samples.

Evaluation windows are non-overlapping chunks of `context_length` tokens of each text's
evaluation part, `windows_per_text` of them evenly spaced over the text (deterministic); every
method is scored on the same windows, which is what makes paired tests over windows valid.
Calibration samples are drawn from the calibration parts (disjoint from evaluation text) at
offsets from a seeded generator, alternating between texts; the offsets are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class Window:
    id: str  # "<text>/<token offset>"
    text: str
    start: int
    ids: tuple[int, ...]


def tokenize(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eval_windows(tokenizer: Any, texts: Sequence[Any], context_length: int, per_text: int) -> list[Window]:
    out: list[Window] = []
    for t in texts:
        ids = tokenize(tokenizer, t.eval_text)
        chunks = len(ids) // context_length
        if chunks < per_text:
            raise ConfigError(f"text {t.name!r}: {len(ids)} evaluation tokens make {chunks} windows of {context_length}; "
                              f"windows_per_text={per_text} needs more: lower it or context_length")
        picks = np.linspace(0, chunks - 1, per_text).round().astype(int) if per_text > 1 else np.array([0])
        for c in picks.tolist():
            start = c * context_length
            out.append(Window(f"{t.name}/{start}", t.name, start, tuple(ids[start : start + context_length])))
    return out


def calibration_samples(tokenizer: Any, texts: Sequence[Any], n: int, length: int, seed: int) -> tuple[Any, list[dict]]:
    """(LongTensor [n, length], [{"text", "start", "length"}]): sample i from text i mod len(texts)."""
    import torch

    rng = np.random.default_rng(seed)
    tokens = {t.name: tokenize(tokenizer, t.calib_text) for t in texts}
    rows, samples = [], []
    for i in range(n):
        t = texts[i % len(texts)]
        ids = tokens[t.name]
        if len(ids) < length + 1:
            raise ConfigError(f"text {t.name!r}: {len(ids)} calibration tokens, fewer than calibration_length={length}")
        start = int(rng.integers(0, len(ids) - length))
        rows.append(ids[start : start + length])
        samples.append({"text": t.name, "start": start, "length": length})
    return torch.tensor(rows, dtype=torch.long), samples
