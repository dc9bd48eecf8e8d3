"""Long-context recall cases: a passkey or several keyed needles hidden in real prose.

Each case is a prompt of exactly `length` tokens: an instruction, a stretch of the evaluation
text (the haystack, from a seeded offset), the needle inserted at `depth` (the fraction of the
haystack before it) and a question whose answer is the needle's number. The model answers by
greedy decoding; a case scores 1 when the first number it writes is the needle's.

- passkey: "The pass key is: N. Remember it. N is the pass key." (Mohtashami and Jaggi 2023,
  Landmark Attention; the colon, as in the question "The pass key is:", is what lets the suite's
  135M model answer at all lengths), N a 5-digit number.
- multikey: `keys` needles "The special magic number for WORD is: N." (RULER's multi-key
  needle-in-a-haystack, Hsieh et al. 2024) at distinct depths; the question asks for the one at
  the case's depth, the others sit at seeded depths and must not be confused with it.

Everything is drawn from a generator seeded by the suite seed and the case's coordinates, so a
case is the same in every run and for every method.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

INTRO = "There is an important piece of information hidden inside a lot of irrelevant text. Find it and memorize it. " \
        "I will quiz you about it.\n\n"
WORDS = ("apple", "river", "lantern", "violet", "harbor", "meadow", "falcon", "copper", "willow", "orchid",
         "thunder", "marble", "saffron", "glacier", "ember", "juniper")


@dataclass(frozen=True)
class Case:
    id: str  # "<kind>/<length>/<depth>"
    kind: str  # passkey | multikey
    length: int
    depth: float
    ids: tuple[int, ...]  # the prompt, exactly `length` tokens
    answer: str
    needle_position: int  # token index where the asked needle starts


def _rng(seed: int, *coords: Any) -> np.random.Generator:
    h = hashlib.sha256(repr((seed, *coords)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_cases(tokenizer: Any, haystack_text: str, kinds: Sequence[str], lengths: Sequence[int], depths: Sequence[float],
               keys: int, seed: int) -> list[Case]:
    hay = _encode(tokenizer, haystack_text)
    intro = _encode(tokenizer, INTRO)
    cases = []
    for kind in kinds:
        for length in lengths:
            for depth in depths:
                rng = _rng(seed, kind, length, depth)
                if kind == "passkey":
                    n = str(int(rng.integers(10000, 100000)))
                    needles = [(depth, f" The pass key is: {n}. Remember it. {n} is the pass key. ")]
                    question = "\n\nWhat is the pass key? The pass key is:"
                elif kind == "multikey":
                    words = rng.choice(len(WORDS), size=keys, replace=False)
                    numbers = [str(int(x)) for x in rng.integers(1_000_000, 10_000_000, size=keys)]
                    others = _other_depths(rng, depth, keys - 1)
                    needles = [(d, f" The special magic number for {WORDS[w]} is: {num}. ")
                               for d, w, num in zip([depth, *others], words, numbers)]
                    n, asked = numbers[0], WORDS[words[0]]
                    question = f"\n\nWhat is the special magic number for {asked}? The special magic number for {asked} is:"
                else:
                    raise ConfigError(f"long-context: unknown case kind {kind!r} (passkey, multikey)")
                cases.append(_assemble(kind, length, depth, intro, hay, needles, _encode(tokenizer, question), n, rng, tokenizer))
    return cases


def _other_depths(rng: np.random.Generator, depth: float, n: int) -> list[float]:
    """Depths for the distractor needles, at least 0.1 from the asked one and from each other."""
    out: list[float] = []
    for _ in range(1000):
        if len(out) == n:
            break
        d = float(rng.uniform(0.02, 0.98))
        if all(abs(d - x) >= 0.1 for x in [depth, *out]):
            out.append(round(d, 3))
    if len(out) < n:
        raise ConfigError(f"long-context: cannot place {n + 1} needles 0.1 apart; lower keys")
    return out


def _assemble(kind: str, length: int, depth: float, intro: list[int], hay: list[int], needles: list[tuple[float, str]],
              question: list[int], answer: str, rng: np.random.Generator, tokenizer: Any) -> Case:
    encoded = [(d, _encode(tokenizer, text)) for d, text in needles]
    fill = length - len(intro) - len(question) - sum(len(t) for _, t in encoded)
    if fill < 16:
        raise ConfigError(f"long-context: length {length} leaves {fill} tokens of haystack; use lengths of at least 256")
    if fill > len(hay):
        raise ConfigError(f"long-context: length {length} needs {fill} haystack tokens; the text has {len(hay)}")
    start = int(rng.integers(0, len(hay) - fill + 1))
    stack = hay[start : start + fill]
    # Insert deepest first so that earlier insertion points keep their offsets.
    cut = {id(t): int(round(d * fill)) for d, t in encoded}
    ids = list(stack)
    for d, t in sorted(encoded, key=lambda x: -x[0]):
        ids[cut[id(t)] : cut[id(t)]] = t
    asked = encoded[0][1]
    shift = sum(len(t) for d, t in encoded if cut[id(t)] < cut[id(asked)] or (cut[id(t)] == cut[id(asked)] and t is not asked and d > depth))
    prompt = intro + ids + question
    assert len(prompt) == length
    return Case(f"{kind}/{length}/{depth:g}", kind, length, depth, tuple(prompt), answer, len(intro) + cut[id(asked)] + shift)


_NUMBER = re.compile(r"\d+")


def exact_match(generated: str, answer: str) -> bool:
    """The first number in the generated text is the answer."""
    m = _NUMBER.search(generated)
    return bool(m) and m.group(0) == answer
