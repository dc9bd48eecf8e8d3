"""The retrieval task: index a corpus, answer judged queries, score with ir-measures.

Everything a method's numbers depend on happens here, identically for every method: model load,
indexing, serialization for index bytes, warm-up, single-query latency, batch throughput and
evaluation. Methods only implement `open`, `index`, `search` and `save`.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import memory
from ..datasets.types import RetrievalDataset
from ..errors import ConfigError
from ..methods.base import Hit, RetrievalMethod, RunContext
from ..timing import min_samples, quantile_ms, time_each
from ..typedload import from_data
from .axes import TASK_COST_AXES
from .tasks import Task, TaskResult

log = logging.getLogger(__name__)

# The task's own metric next to ir-measures' ones: the share of the exact top K of the same
# representation (the dense encoder's brute-force search, an engine's exhaustive scoring) that
# the method's top K holds, per query (ann-benchmarks' k-NN recall). Methods with no exact
# reference (bm25s, fusions) do not report it.
RECALL_VS_EXACT = re.compile(r"recall_vs_exact@([1-9][0-9]*)")


@dataclass(frozen=True)
class RetrievalSettings:
    top_k: int = 100
    warmup_queries: int = 8
    # Each query is timed this many times: 2 x ~480 FAQ queries gives enough samples for p99.
    latency_repeats: int = 2
    batch_size: int = 64
    timeout_s: int = 3600


class RetrievalTask(Task):
    name = "retrieval"
    cost_axes = TASK_COST_AXES["retrieval"]
    method_type = RetrievalMethod
    capability = "retrieval methods (open, index, search)"

    def load_data(self, suite: Any, ref: str | None, name: str | None = None) -> RetrievalDataset:
        from ..datasets.resolve import load_dataset

        return load_dataset(suite, ref, name)

    def write_snapshot(self, cache_dir: Path, data: RetrievalDataset) -> Path:  # type: ignore[override]
        from ..datasets.snapshot import write_snapshot

        return write_snapshot(cache_dir, data)

    def read_snapshot(self, path: Path) -> RetrievalDataset:
        from ..datasets.snapshot import read_snapshot

        return read_snapshot(path)

    def describe(self, data: RetrievalDataset) -> str:  # type: ignore[override]
        return f"dataset {data.id}: {len(data.corpus)} documents, {len(data.judged_queries())} queries"

    def check_metrics(self, metrics: tuple[str, ...], file: str) -> None:
        import ir_measures

        for i, name in enumerate(metrics):
            if RECALL_VS_EXACT.fullmatch(name):
                continue
            try:
                canonical = str(ir_measures.parse_measure(name))
            except Exception as e:
                raise ConfigError(f"{file}: metrics[{i}]: {name!r} is not an ir-measures measure ({e})") from e
            if canonical != name:
                raise ConfigError(f"{file}: metrics[{i}]: write {name!r} as its canonical name {canonical!r}")

    def settings_from(self, data: dict[str, Any], file: str) -> RetrievalSettings:
        settings = from_data(RetrievalSettings, data, file, "settings")
        for key, value in asdict(settings).items():
            if value < 0 or (value == 0 and key in ("top_k", "batch_size", "latency_repeats", "timeout_s")):
                raise ConfigError(f"{file}: settings.{key}: {value} is out of range")
        return settings

    def run(  # type: ignore[override]
        self,
        method: RetrievalMethod,
        dataset: RetrievalDataset,
        metrics: tuple[str, ...],
        settings: RetrievalSettings,
        ctx: RunContext,
        run_file: Path | None = None,
    ) -> TaskResult:
        queries = dataset.judged_queries()
        if not queries:
            raise ValueError(f"dataset {dataset.id} has no query with a positive judgment")
        texts = [q.text for q in queries]
        k = settings.top_k
        # The data is loaded: from here on, memory is the method's (see sparsebench.memory).
        mem_base = memory.start()

        t0 = time.perf_counter()
        retriever = method.open(ctx)
        model_load_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        report = retriever.index(dataset.corpus)
        measured_build_s = time.perf_counter() - t0
        build_s = report.cached_build_s if report.cache_hit else measured_build_s

        with tempfile.TemporaryDirectory(prefix="sparsebench-index-") as tmp:
            retriever.save(Path(tmp))
            index_bytes = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        vector_bytes = retriever.vector_bytes()

        # Warm-up: first calls pay for lazy initialisation and allocator growth; discarded.
        for text in texts[: settings.warmup_queries]:
            retriever.search([text], k)

        run: dict[str, list[Hit]] = {}
        latencies: dict[str, list[int]] = {q.id: [] for q in queries}
        from tqdm.auto import tqdm

        bar = tqdm(total=len(queries) * settings.latency_repeats, desc=f"{method} queries", disable=not ctx.progress, leave=False)
        for _ in range(settings.latency_repeats):
            for q in queries:
                t = time.perf_counter_ns()
                hits = retriever.search([q.text], k)[0]
                latencies[q.id].append(time.perf_counter_ns() - t)
                run.setdefault(q.id, hits)
                bar.update()
        bar.close()
        all_ns = [ns for q in queries for ns in latencies[q.id]]

        batches = [texts[i : i + settings.batch_size] for i in range(0, len(texts), settings.batch_size)]
        batch_ns = time_each(lambda i: retriever.search(batches[i], k), len(batches))
        batch_s = sum(batch_ns) / 1e9

        if dataset.ignore_identical_ids:  # before the run file too, so trec_eval on it agrees with the record
            run = {qid: [(doc, score) for doc, score in hits if doc != qid] for qid, hits in run.items()}
        if run_file is not None:
            write_trec_run(run_file, run, str(method))
        own = [m for m in metrics if RECALL_VS_EXACT.fullmatch(m)]
        per_query, metric_values = evaluate(dataset, run, tuple(m for m in metrics if m not in own), queries)
        for q in queries:
            per_query[q.id]["latency_ms"] = min(latencies[q.id]) / 1e6

        peak_rss_mb, peak_note = memory.method_peak_mib(mem_base)
        process_peak = memory.process_peak_mib()
        # After every cost is measured: the reference search may load vectors the method let go.
        for name in own:
            recall = recall_vs_exact(retriever, queries, run, int(RECALL_VS_EXACT.fullmatch(name).group(1)),
                                     dataset.ignore_identical_ids)
            if recall is None:
                break
            for qid, value in recall.items():
                per_query[qid][name] = value
            metric_values[name] = {**_mean_with_stderr(list(recall.values())),
                                   "aggregation": "mean over judged queries of |top K ∩ exact top K| / |exact top K|"}
        n_q = len(all_ns)
        costs: dict[str, dict[str, Any]] = {
            "model_load_s": {"value": model_load_s, "unit": "s", "n": 1},
            "index_build_s": {"value": build_s, "unit": "s", "n": 1},
            "encode_throughput": {"value": len(dataset.corpus) / build_s if build_s else None, "unit": "docs/s", "n": len(dataset.corpus)},
            "index_bytes": {"value": index_bytes, "unit": "B", "n": 1},
            "batch_throughput": {"value": len(texts) / batch_s, "unit": "queries/s", "n": len(texts), "batch_size": settings.batch_size},
            "peak_rss_mb": {"value": peak_rss_mb, "unit": "MiB", "n": 1, **({"note": peak_note} if peak_note else {})},
            "process_peak_rss_mb": {"value": process_peak, "unit": "MiB", "n": 1},
        }
        if vector_bytes is not None:
            costs["bytes_per_vector"] = {"value": vector_bytes[0], "unit": "B", "n": len(dataset.corpus),
                                         "note": "serialized index with the corpus minus the trained index without it, "
                                                 "over the documents"}
        if report.fit_s is not None:
            costs["fit_s"] = {"value": report.fit_s, "unit": "s", "n": 1}
        for q_, name in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"), (0.99, "latency_p99_ms")):
            value = quantile_ms(all_ns, q_)
            costs[name] = {"value": value, "unit": "ms", "n": n_q}
            if value is None:
                costs[name]["note"] = f"not reported: {n_q} samples, {min_samples(q_)} needed"
        if report.cache_hit:
            costs["index_build_s"]["note"] = "corpus encodings came from the cache; time is from when they were computed"
            if build_s is None:
                costs["index_build_s"]["note"] = "corpus encodings came from the cache, computed on another machine: not measured here"
        units = method.cost_units()
        for name, value in retriever.proxies().items():
            unit = units.get(name, "")
            costs[name] = {"value": value, "unit": unit, "n": 1, "proxy": True}
        extra = {
            "queries": len(queries),
            "documents": len(dataset.corpus),
            "index_cache_hit": report.cache_hit,
            "measured_index_s": measured_build_s,
        }
        return TaskResult(metrics=metric_values, costs=costs, per_query=per_query, extra=extra)


def recall_vs_exact(retriever: Any, queries: Any, run: dict[str, list[Hit]], k: int,
                    ignore_identical_ids: bool) -> dict[str, float] | None:
    """Per query: the share of the exact top k found in the method's top k (k + 1 are asked for
    so that a query's own id can be dropped where the dataset says so, as from the run)."""
    ref = retriever.exact_search([q.text for q in queries], k + 1)
    if ref is None:
        return None
    out = {}
    for q, hits in zip(queries, ref):
        want = set([d for d, _ in hits if not (ignore_identical_ids and d == q.id)][:k])
        got = {d for d, _ in run.get(q.id, [])[:k]}
        out[q.id] = len(want & got) / len(want) if want else 1.0
    return out


def evaluate(
    dataset: RetrievalDataset, run: dict[str, list[Hit]], metrics: tuple[str, ...], queries: Any
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """Per-query and mean values; a judged query with no hit scores 0 (as trec_eval -c)."""
    import ir_measures

    measures = [ir_measures.parse_measure(m) for m in metrics]
    qrels = {q.id: dict(dataset.qrels[q.id]) for q in queries}
    run_dict = {qid: {doc: score for doc, score in hits} for qid, hits in run.items() if hits}
    per_query: dict[str, dict[str, float]] = {q.id: {m: 0.0 for m in metrics} for q in queries}
    for m in ir_measures.iter_calc(measures, qrels, run_dict):
        per_query[m.query_id][str(m.measure)] = float(m.value)
    values = {name: _mean_with_stderr([pq[name] for pq in per_query.values()]) for name in metrics}
    return per_query, values


def _mean_with_stderr(xs: list[float]) -> dict[str, Any]:
    """Mean over queries and its standard error (sample stdev / sqrt(n), as lm-evaluation-harness
    reports it; None for a single query, whose spread is unknown)."""
    n = len(xs)
    mean = sum(xs) / n
    stderr = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1) / n) if n > 1 else None
    return {"value": mean, "stderr": stderr, "n": n, "unit": "", "direction": "higher", "aggregation": "mean over judged queries"}


def write_trec_run(path: Path, run: dict[str, list[Hit]], tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_tag = "".join(c if c.isalnum() or c in "._-" else "_" for c in tag)
    with path.open("w", encoding="utf-8") as f:
        for qid, hits in run.items():
            for rank, (doc, score) in enumerate(hits, 1):
                f.write(f"{qid} Q0 {doc} {rank} {score!r} {safe_tag}\n")
