"""Input and fault hardening (issue 16): each case a hostile user found, reproduced on the real CLI.

Every bad input must answer with one line naming the problem (exit 2) and leave no record;
every fault (a busy key, a dying parent, a concurrent run) must lose nothing and hide nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from sparsebench import registry
from sparsebench.cli import main
from sparsebench.contention import MeasuringClaim
from sparsebench.methodid import split_method_ids
from sparsebench.suites.spec import builtin_suites

from .conftest import DOCS, QUERIES, REPO, records_in, write_beir


def bench(*args: str) -> int:
    return main(["run", "--suite", "retrieval", "--no-progress", *args])


def one_error(caplog: pytest.LogCaptureFixture) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


def suite_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


BUILTIN = builtin_suites()["retrieval"].read_text()


# 1. duplicate YAML keys -----------------------------------------------------------------------


def test_a_duplicated_suite_key_is_refused_with_file_and_line(tmp_path, results_dir, caplog) -> None:
    text = BUILTIN.replace("  top_k: 100\n", "  top_k: 100\n  top_k: 5\n")
    suite = suite_file(tmp_path, text)
    line = text.splitlines().index("  top_k: 5") + 1
    assert main(["run", "--suite", str(suite), "--results", str(results_dir)]) == 2
    err = one_error(caplog)
    assert f"{suite}:{line}:" in err and "duplicate key 'top_k'" in err and f"first at line {line - 1}" in err
    assert not results_dir.exists()


def test_a_duplicated_profile_key_is_refused(tmp_path, monkeypatch, caplog) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my-box.yaml").write_text(textwrap.dedent("""\
        id: my-box
        description: d
        device: cpu
        device: cuda
        cpu: {logical_cores: 2}
        memory_gib: {min: 1, max: 2}
        accelerator: null
        threads: {torch: 2}
    """))
    monkeypatch.setenv("SPARSEBENCH_PROFILE_DIR", str(profiles))
    assert main(["profile"]) == 2
    err = one_error(caplog)
    assert f"{profiles / 'my-box.yaml'}:4:" in err and "duplicate key 'device'" in err


# 2. a key busy elsewhere --------------------------------------------------------------------


def test_a_key_busy_elsewhere_is_waited_for_and_measured_when_its_holder_dies(tiny_beir, tmp_path) -> None:
    common = ("--dataset", f"beir:{tiny_beir}", "--in-process", "--method", "bm25")
    assert bench("--results", str(tmp_path / "first"), *common) == 0
    [first] = records_in(tmp_path / "first" / "retrieval.jsonl")
    results = tmp_path / "results"
    lock = results / ".locks" / f"{first['key'][:32]}.lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run is measuring this key ...
    threading.Timer(1.0, os.close, [fd]).start()  # ... and dies without recording it
    started = time.monotonic()
    assert bench("--results", str(results), *common) == 0
    assert time.monotonic() - started >= 1.0  # it waited for the claim instead of skipping
    [rec] = records_in(results / "retrieval.jsonl")
    assert rec["key"] == first["key"] and rec["status"] == "ok"


def test_a_key_the_other_run_records_while_waited_for_is_not_measured_twice(tiny_beir, tmp_path) -> None:
    common = ("--dataset", f"beir:{tiny_beir}", "--in-process", "--method", "bm25")
    assert bench("--results", str(tmp_path / "first"), *common) == 0
    line = (tmp_path / "first" / "retrieval.jsonl").read_text()
    [first] = records_in(tmp_path / "first" / "retrieval.jsonl")
    results = tmp_path / "results"
    (results / ".locks").mkdir(parents=True)
    fd = os.open(results / ".locks" / f"{first['key'][:32]}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def other_run_finishes() -> None:
        (results / "retrieval.jsonl").write_text(line)
        os.close(fd)

    threading.Timer(1.0, other_run_finishes).start()
    assert bench("--results", str(results), *common) == 0
    assert records_in(results / "retrieval.jsonl") == [first]


# 3. an empty method list ----------------------------------------------------------------------


@pytest.mark.parametrize("methods", [",", "", " , "])
def test_an_empty_method_list_is_refused(methods, tiny_beir, results_dir, caplog) -> None:
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", methods) == 2
    assert "no method id given" in one_error(caplog)
    assert not (results_dir / "retrieval.jsonl").exists()


@pytest.mark.parametrize("extra, message", [
    (["--grid", "fulll"], "--grid 'fulll': suite retrieval@"),
    (["--grid", "full", "--method", "bm25"], "--grid full and --method both choose the methods"),
])
def test_an_unknown_grid_or_a_grid_with_methods_is_refused(extra, message, tiny_beir, results_dir, caplog) -> None:
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), *extra) == 2
    assert message in one_error(caplog)
    assert not (results_dir / "retrieval.jsonl").exists()


# 4. non-finite parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("--method", "bm25", "--set", "bm25.k1=nan"), "bm25.k1: nan is not a finite number"),
        (("--method", "bm25(k1=inf)"), "bm25.k1: inf is not a finite number"),
        (("--method", "bm25(b=-inf)"), "bm25.b: -inf is not a finite number"),
    ],
)
def test_non_finite_parameters_are_refused_before_the_data_is_read(args, message, results_dir, caplog) -> None:
    # The dataset does not exist: the parameter must be refused first, without loading anything.
    assert bench("--dataset", "beir:/nonexistent/folder", "--results", str(results_dir), *args) == 2
    assert message in one_error(caplog)
    assert not results_dir.exists()


def test_a_method_that_produces_nan_is_recorded_as_failed_and_the_suite_goes_on(tiny_beir, results_dir, monkeypatch) -> None:
    from sparsebench.methods.bm25 import BM25

    @dataclasses.dataclass(frozen=True)
    class NanProxyBM25(BM25):
        def open(self, ctx):  # type: ignore[no-untyped-def]
            retriever = super().open(ctx)
            retriever.proxies = lambda: {"postings": float("nan")}  # type: ignore[method-assign]
            return retriever

    info = dataclasses.replace(BM25.info, name="nanbm25")
    monkeypatch.setitem(registry._REGISTRY, "nanbm25", (NanProxyBM25, info))
    monkeypatch.setattr(NanProxyBM25, "info", info, raising=False)
    monkeypatch.setattr(NanProxyBM25, "__str__", registry.method_id)
    rc = bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--method", "nanbm25,bm25")
    failed, ok = records_in(results_dir / "retrieval.jsonl")
    assert rc == 1 and failed["status"] == "failed" and ok["status"] == "ok"
    assert "non-finite value (costs.postings.value = nan)" in failed["error"] and "per_query" not in failed
    assert list((results_dir / "per-query" / "retrieval").iterdir()) == [results_dir / ok["per_query"]["path"]]


def test_an_error_text_with_undecodable_bytes_is_recorded_and_the_suite_goes_on(tiny_beir, results_dir, monkeypatch) -> None:
    from sparsebench.methods.bm25 import BM25

    @dataclasses.dataclass(frozen=True)
    class BrokenBM25(BM25):
        def open(self, ctx):  # type: ignore[no-untyped-def]
            raise OSError("cannot open " + os.fsdecode(b"/data/caf\xe9"))  # a surrogate escape, as from a file name

    info = dataclasses.replace(BM25.info, name="brokenbm25")
    monkeypatch.setitem(registry._REGISTRY, "brokenbm25", (BrokenBM25, info))
    monkeypatch.setattr(BrokenBM25, "info", info, raising=False)
    rc = bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--in-process", "--method", "brokenbm25,bm25")
    failed, ok = records_in(results_dir / "retrieval.jsonl")
    assert rc == 1 and ok["status"] == "ok"
    assert failed["status"] == "failed" and failed["error"] == "OSError: cannot open /data/caf\\udce9"


def test_a_lone_surrogate_in_a_method_id_is_refused(results_dir, caplog) -> None:
    assert bench("--results", str(results_dir), "--method", r'bm25(stemmer="\ud800")') == 2
    assert "is not Unicode text" in one_error(caplog)


# 5. non-UTF-8 input ---------------------------------------------------------------------------


def test_a_suite_file_that_is_not_utf8_is_one_line(tmp_path, results_dir, caplog) -> None:
    suite = suite_file(tmp_path, BUILTIN.encode().replace(b"name: retrieval\n", b"name: retrieval\n# caf\xe9\n"))
    line = BUILTIN.splitlines().index("name: retrieval") + 2
    assert main(["run", "--suite", str(suite), "--results", str(results_dir)]) == 2
    err = one_error(caplog)
    assert f"{suite}:{line}: not UTF-8 (byte 0xe9" in err


@pytest.mark.parametrize("name, line", [("corpus.jsonl", 3), ("queries.jsonl", 2), ("qrels/test.tsv", 4)])
def test_a_beir_file_that_is_not_utf8_is_one_line(name, line, tiny_beir, results_dir, caplog) -> None:
    path = tiny_beir / name
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = b"\xff" + lines[line - 1]
    path.write_bytes(b"\n".join(lines))
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", "bm25") == 2
    assert f"{path}:{line}: not UTF-8 (byte 0xff" in one_error(caplog)
    assert not results_dir.exists()


# 6. data or parameters no method can be measured on --------------------------------------------


def test_an_empty_corpus_is_refused_before_any_record(tmp_path, results_dir, caplog) -> None:
    root = write_beir(tmp_path / "beir", docs={})
    assert bench("--dataset", f"beir:{root}", "--results", str(results_dir), "--method", "bm25") == 2
    assert "the corpus is empty" in one_error(caplog)
    assert not results_dir.exists()


def test_judgments_all_of_grade_zero_are_refused_before_any_record(tmp_path, results_dir, caplog) -> None:
    root = write_beir(tmp_path / "beir")
    qrels = root / "qrels" / "test.tsv"
    rows = qrels.read_text().splitlines()
    qrels.write_text("\n".join([rows[0], *(r.rsplit("\t", 1)[0] + "\t0" for r in rows[1:])]) + "\n")
    assert bench("--dataset", f"beir:{root}", "--results", str(results_dir), "--method", "bm25") == 2
    assert "no query has a positive judgment" in one_error(caplog)
    assert not results_dir.exists()


@pytest.mark.parametrize(
    "method, message",
    [
        ("bm25(stemmer=klingon)", "unknown stemmer 'klingon'"),
        ("bm25(stopwords=klingon)", "unknown stopwords 'klingon'"),
        ("bm25(k1=-5,b=7)", "k1=-5.0 is out of range"),
        ("bm25(b=7)", "b=7.0 is out of range (0 <= b <= 1)"),
        ("minilm(max_length=0)", "max_length=0 is out of range"),
    ],
)
def test_out_of_range_method_parameters_are_refused_before_any_record(method, message, tiny_beir, results_dir, caplog) -> None:
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", method) == 2
    assert message in one_error(caplog)
    assert not results_dir.exists()


def test_an_out_of_range_sweep_point_in_a_suite_is_refused(tmp_path, results_dir, caplog) -> None:
    suite = suite_file(tmp_path, BUILTIN.replace("sweep: {k1: [1.2, 0.9], b: [0.75, 0.4]}", "sweep: {b: [0.75, 1.5]}"))
    assert main(["run", "--suite", str(suite), "--results", str(results_dir)]) == 2
    err = one_error(caplog)
    assert f"{suite}: methods[0]:" in err and "b=1.5 is out of range" in err


# 10. a worker whose runner died before it set PR_SET_PDEATHSIG ---------------------------------


ORPHAN_SCRIPT = """
import ctypes, fcntl, json, os, re, signal, struct, subprocess, sys, termios, time
import psutil
ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans come to us
bench = subprocess.Popen([sys.executable, "-m", "sparsebench.cli", *sys.argv[1:]],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
parent = psutil.Process(bench.pid)
deadline = time.monotonic() + 120
worker = None
while worker is None and time.monotonic() < deadline:
    for child in parent.children():
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmdline:
            worker, handle = child.pid, int(re.search(r"pipe_handle=(\\d+)", cmdline).group(1))
    time.sleep(0.001)
# Freeze the worker, then wait until the runner has written the whole start-up payload into the
# worker's pipe: killing the runner before that would fail the worker's bootstrap (also exit 1),
# which is a race, not the case under test.
os.kill(worker, signal.SIGSTOP)
pipe = os.open(f"/proc/{worker}/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK)
seen, steady = 0, 0
while steady < 20 and time.monotonic() < deadline:  # written, and no more for 20 ms
    waiting = struct.unpack("i", fcntl.ioctl(pipe, termios.FIONREAD, b"\\0" * 4))[0]
    steady = steady + 1 if waiting == seen and waiting > 0 else 0
    seen = waiting
    time.sleep(0.001)
os.close(pipe)
os.kill(bench.pid, signal.SIGKILL)  # the runner dies while its worker is still starting up
bench.wait()
os.kill(worker, signal.SIGCONT)
started = time.monotonic()
_, status = os.waitpid(worker, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "after_s": time.monotonic() - started}))
"""


def test_a_worker_whose_runner_died_during_its_start_up_measures_nothing(tiny_beir, tmp_path) -> None:
    from sparsebench.runner import ORPHANED_EXIT

    results = tmp_path / "results"
    out = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT, "run", "--suite", "retrieval", "--dataset", f"beir:{tiny_beir}",
         "--results", str(results), "--method", "bm25", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # Without the check the orphan measures the whole method and dies only on sending (exit 1).
    assert got["exit"] == ORPHANED_EXIT
    assert not (results / "retrieval.jsonl").exists()


# 11. concurrent measuring runs ------------------------------------------------------------------


def test_a_run_measured_while_another_run_measures_is_marked(tiny_beir, results_dir) -> None:
    common = ("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir))
    stale = Path(os.environ["SPARSEBENCH_MEASURING_DIR"]) / "999999-dead.lock"
    stale.parent.mkdir(parents=True)
    stale.write_text("")  # a killed run's leftover: unlocked, so not counted, and cleaned up
    with MeasuringClaim():  # another run measuring on this machine
        assert bench(*common, "--method", "bm25") == 0
    assert bench(*common, "--method", "bm25(k1=0.9)") == 0
    assert bench(*common, "--method", "bm25(k1=0.8)", "--in-process") == 0
    contended, alone, alone_in_process = records_in(results_dir / "retrieval.jsonl")
    assert contended["contention"]["detected"] is True and contended["contention"]["max_other_runs"] == 1
    assert alone["contention"]["detected"] is False and alone["contention"]["max_other_runs"] == 0
    assert alone_in_process["contention"]["detected"] is False
    assert all(r["contention"]["samples"] >= 2 for r in (contended, alone, alone_in_process))
    assert not stale.exists()


def test_two_concurrent_runs_mark_each_other(tmp_path) -> None:
    # Two real `bench run` processes on the same machine at the same time, each measuring a
    # slow-enough sweep; at least one of them must see the other.
    docs = {f"d{i}": (f"t{i}", f"passage {i} about " + " ".join(f"w{(i * j) % 97}" for j in range(60))) for i in range(400)}
    root = write_beir(tmp_path / "beir", docs={**DOCS, **docs}, queries=QUERIES)
    procs = []
    for n in range(2):
        cmd = [sys.executable, "-m", "sparsebench.cli", "run", "--suite", "retrieval", "--dataset", f"beir:{root}",
               "--results", str(tmp_path / f"results{n}"), "--method", f"bm25(k1={0.5 + n}),bm25(k1={0.6 + n})",
               "--set", "latency_repeats=40", "--no-progress"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ))
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode() if p.stderr else ""
    recs = [r for n in range(2) for r in records_in(tmp_path / f"results{n}" / "retrieval.jsonl")]
    assert len(recs) == 4 and any(r["contention"]["detected"] for r in recs)


# 14. the minor ones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threads", "{torch: 0}", "threads.torch: 0 is out of range"),
        ("threads", "{torch: 2, interop: 0}", "threads.interop: 0 is out of range"),
        ("memory_gib", "{min: 8, max: 4}", "memory_gib.min: 8.0 is out of range"),
        ("memory_gib", "{min: 1, max: .inf}", "memory_gib.max: inf is not a finite number"),
        ("cpu", "{logical_cores: 0}", "cpu.logical_cores: 0 is out of range"),
    ],
)
def test_profile_values_out_of_range_are_refused(field, value, message, tmp_path, monkeypatch, caplog) -> None:
    fields = {"id": "my-box", "description": "d", "device": "cpu", "cpu": "{logical_cores: 2}",
              "memory_gib": "{min: 1, max: 2}", "accelerator": "null", "threads": "{torch: 2}", field: value}
    (tmp_path / "my-box.yaml").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    monkeypatch.setenv("SPARSEBENCH_PROFILE_DIR", str(tmp_path))
    assert bench("--method", "bm25", "--results", str(tmp_path / "results")) == 2
    assert message in one_error(caplog)


def test_a_profile_from_the_profile_dir_is_used_and_stamped(tiny_beir, tmp_path, monkeypatch) -> None:
    from sparsebench.hardware import detect

    m = detect()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my-box.yaml").write_text(
        f"id: my-box\ndescription: d\ndevice: cpu\ncpu: {{logical_cores: {m.logical_cores}}}\n"
        f"memory_gib: {{min: 0, max: 100000}}\naccelerator: null\nthreads: {{torch: 1}}\n"
    )
    monkeypatch.setenv("SPARSEBENCH_PROFILE_DIR", str(tmp_path / "profiles"))
    results = tmp_path / "results"
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results), "--method", "bm25", "--profile", "my-box") == 0
    [rec] = records_in(results / "retrieval.jsonl")
    assert rec["profile"]["id"] == "my-box" and rec["profile"]["threads"]["torch"] == 1


def test_results_that_is_a_file_is_one_line(tiny_beir, tmp_path, caplog) -> None:
    not_a_dir = tmp_path / "results.jsonl"
    not_a_dir.write_text("")
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(not_a_dir), "--method", "bm25") == 2
    assert "is a file, not a directory" in one_error(caplog)
    assert not_a_dir.read_text() == ""


@pytest.mark.parametrize("override, message", [("topk=5", "unknown key 'settings.topk'"), ("bm25.k9=1", "no parameter 'k9'"),
                                               ("minilm.max_length=0", "is not part of this run")])
def test_set_typos_are_reported_before_the_dataset_is_loaded(override, message, results_dir, caplog) -> None:
    assert bench("--dataset", "beir:/nonexistent/folder", "--results", str(results_dir), "--method", "bm25", "--set", override) == 2
    assert message in one_error(caplog)


def test_escaped_quotes_in_a_comma_separated_method_list() -> None:
    assert split_method_ids(r'bm25(stopwords="x\",y"),minilm') == [r'bm25(stopwords="x\",y")', "minilm"]
    assert split_method_ids(r'bm25(stopwords="a\\"),bm25') == [r'bm25(stopwords="a\\")', "bm25"]


def test_escaped_quotes_on_the_cli_reach_the_method(tiny_beir, results_dir, caplog) -> None:
    # The value 'x",y' survives the split and is refused by bm25 itself (not as a broken id).
    assert bench("--dataset", f"beir:{tiny_beir}", "--results", str(results_dir), "--method", r'bm25(stopwords="x\",y"),bm25') == 2
    assert "unknown stopwords 'x\",y'" in one_error(caplog)


def test_irds_offline_opens_no_connection(tmp_path, results_dir, caplog) -> None:
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import Download, RequestsDownload

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                connections.append(conn)
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    parts = [TsvDocs(Download([RequestsDownload(url + "docs.tsv")], cache_path=str(tmp_path / "d.tsv"))),
             TsvQueries(Download([RequestsDownload(url + "q.tsv")], cache_path=str(tmp_path / "q.tsv"))),
             TrecQrels(Download([RequestsDownload(url + "qrels")], cache_path=str(tmp_path / "r.txt")), {1: "relevant"})]
    dataset_id = f"sparsebench-test/{uuid.uuid4().hex[:8]}"
    ir_datasets.registry.register(dataset_id, Dataset(*parts))
    try:
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        assert bench("--dataset", f"irds:{dataset_id}", "--results", str(results_dir), "--method", "bm25") == 2
    finally:
        stop.set()
        thread.join()
        server.close()
    err = one_error(caplog)
    assert "not in the ir_datasets cache" in err and f"not downloading {url}docs.tsv" in err
    assert connections == []
