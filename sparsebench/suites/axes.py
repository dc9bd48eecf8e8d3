"""Cost axes each task declares: unit, which way is better, what is timed.

Data only, with no method or model imports, so the reporter and the validator can read it
without importing anything that runs code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    unit: str
    direction: str  # "lower" or "higher" is better
    description: str


TASK_COST_AXES: dict[str, dict[str, Axis]] = {
    "retrieval": {
        "model_load_s": Axis("s", "lower", "loading models and tokenizers"),
        "index_build_s": Axis("s", "lower", "encoding and indexing the whole corpus"),
        "encode_throughput": Axis("docs/s", "higher", "documents indexed per second"),
        "index_bytes": Axis("B", "lower", "size of the serialized index on disk"),
        "latency_p50_ms": Axis("ms", "lower", "single-query latency (encode + search), median"),
        "latency_p95_ms": Axis("ms", "lower", "single-query latency, 95th percentile"),
        "latency_p99_ms": Axis("ms", "lower", "single-query latency, 99th percentile"),
        "batch_throughput": Axis("queries/s", "higher", "all queries in batches of batch_size"),
        "peak_rss_mb": Axis("MiB", "lower", "the method's own peak resident memory: above the worker's RSS once the data was loaded"),
        "process_peak_rss_mb": Axis("MiB", "lower", "peak resident memory of the whole worker process (interpreter, data and method)"),
        "bytes_per_vector": Axis("B", "lower", "a vector index's bytes per document: the serialized index with the corpus "
                                               "minus the trained index without it, over the documents"),
        "fit_s": Axis("s", "lower", "training or fitting a compressor on the corpus vectors (PCA, k-means codebooks and "
                                    "cells, OPQ's rotation); part of index_build_s (an HNSW graph is built, not fitted)"),
    },
    "lm": {
        "model_load_s": Axis("s", "lower", "loading the model and tokenizer"),
        "calibration_s": Axis("s", "lower", "applying the method: calibration passes, pruning, threshold fitting"),
        "prefill_ms": Axis("ms", "lower", "one forward pass over prefill_tokens tokens (batch 1), median"),
        "decode_ms_per_token": Axis("ms", "lower", "one greedy decode step with the KV cache after the prefill, median"),
        "eval_tokens_per_s": Axis("tokens/s", "higher", "tokens scored per second over the evaluation windows"),
        "model_bytes": Axis("B", "lower", "the model's weights as stored: safetensors, or the sparse format where smaller"),
        "kv_bytes": Axis("B", "lower", "bytes the KV cache holds after the timed prefill (quantized tensors: packed storage)"),
        "kv_bytes_decode": Axis("B", "lower", "bytes the KV cache holds after the prefill and the timed decode steps"),
        "peak_rss_mb": Axis("MiB", "lower", "the method's own peak resident memory (model included): above the worker's RSS once the data was loaded"),
        "process_peak_rss_mb": Axis("MiB", "lower", "peak resident memory of the whole worker process"),
    },
    "long-context": {
        "model_load_s": Axis("s", "lower", "loading the model and tokenizer"),
        "calibration_s": Axis("s", "lower", "applying the method (Loki: fitting the key projections on calibration text)"),
        "prefill_ms": Axis("ms", "lower", "prefill of one prompt at the longest context length (batch 1), median over its cases"),
        "decode_ms_per_token": Axis("ms", "lower", "one greedy decode step after a longest-context prefill, median"),
        "kv_bytes": Axis("B", "lower", "bytes the KV cache holds after a longest-context prefill (quantized: packed storage)"),
        "kv_bytes_decode": Axis("B", "lower", "bytes the KV cache holds after that prefill and the answer's decode steps"),
        "peak_rss_mb": Axis("MiB", "lower", "the method's own peak resident memory (model included)"),
        "process_peak_rss_mb": Axis("MiB", "lower", "peak resident memory of the whole worker process"),
    },
    "sae": {
        "model_load_s": Axis("s", "lower", "loading the model and tokenizer"),
        "train_s": Axis("s", "lower", "training the SAE on the cached activations (extraction is cached, not counted)"),
        "sae_parameters": Axis("parameters", "lower", "parameters the trained SAE holds for inference"),
        "sae_bytes": Axis("B", "lower", "bytes of those parameters as held (float32)"),
        "encode_us_per_token": Axis("us", "lower", "encoding a batch of 1024 tokens, per token, median"),
        "peak_rss_mb": Axis("MiB", "lower", "the method's own peak resident memory (model included)"),
        "process_peak_rss_mb": Axis("MiB", "lower", "peak resident memory of the whole worker process"),
    },
}

# The row every other is set against where a group has it (`bench report --baseline` overrides).
TASK_BASELINE: dict[str, str] = {"retrieval": "bm25", "lm": "dense", "long-context": "dense", "sae": "identity_sae"}

# The few costs `bench run` prints in its closing table: (axis, header, format).
Column = tuple[str, str, str]
SUMMARY_COLUMNS: dict[str, tuple[Column, ...]] = {
    "retrieval": (
        ("latency_p50_ms", "p50 ms", "{:.2f}"),
        ("latency_p95_ms", "p95 ms", "{:.2f}"),
        ("latency_p99_ms", "p99 ms", "{:.2f}"),
        ("batch_throughput", "batch q/s", "{:.0f}"),
        ("index_build_s", "build s", "{:.2f}"),
        ("index_bytes", "index MiB", "{:.2f}"),
        ("peak_rss_mb", "RSS MiB", "{:.0f}"),
    ),
    "lm": (
        ("prefill_ms", "prefill ms", "{:.1f}"),
        ("decode_ms_per_token", "decode ms/tok", "{:.2f}"),
        ("eval_tokens_per_s", "tok/s", "{:.0f}"),
        ("model_bytes", "model MiB", "{:.1f}"),
        ("calibration_s", "apply s", "{:.1f}"),
        ("peak_rss_mb", "RSS MiB", "{:.0f}"),
    ),
    "long-context": (
        ("prefill_ms", "prefill ms", "{:.0f}"),
        ("decode_ms_per_token", "decode ms/tok", "{:.1f}"),
        ("attention_density", "density", "{:.3f}"),
        ("calibration_s", "apply s", "{:.1f}"),
        ("peak_rss_mb", "RSS MiB", "{:.0f}"),
    ),
    "sae": (
        ("train_s", "train s", "{:.1f}"),
        ("sae_bytes", "SAE MiB", "{:.1f}"),
        ("encode_us_per_token", "encode us/tok", "{:.2f}"),
        ("peak_rss_mb", "RSS MiB", "{:.0f}"),
    ),
}
