"""`bench`: run suites, list methods and suites, show the hardware profile."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import BenchError
from .logs import configure_logging

log = logging.getLogger("sparsebench")

EPILOG = """\
examples:
  bench run --suite retrieval                         every method of the suite on its default data
  bench run --suite retrieval --method bm25 --set bm25.k1=0.9
  bench run --suite retrieval --dataset beir:/data/scifact    your own BEIR folder (#split to choose)
  bench run --suite retrieval --dataset irds:beir/scifact/test
  bench run --suite retrieval --dataset mteb:SciFact
  bench run --suite lm                                SmolLM2-135M: dense, pruning, activation and attention sparsity
  bench run --suite lm --method "wanda(sparsity=0.5),sparsegpt(m=4)" --set context_length=256
  bench run --suite long-context                      passkey / multi-key recall: dense and sparse attention
  bench run --suite long-context --smoke              its marked smoke subset (one 512-token length)
  bench run --suite sae                               SAEs on SmolLM2's residual stream at three L0 levels each
  bench list                                          methods, suites and datasets
  bench profile                                       which declared hardware profile this machine is
  bench report                                        static leaderboard site from results/ into reports/
  bench compare "bm25(k1=0.9)" --baselines bm25,minilm --fail-if-worse
  bench compare "wanda(sparsity=0.5)" --baselines "magnitude(sparsity=0.5)" --suite lm
  bench validate results/retrieval.jsonl              check records a pull request brings (runs nothing)
  bench export --format csv --out results.csv        also results.units.csv; --format trec-qrels|mteb|pytest-benchmark
"""


RUN_EPILOG = """\
method ids: NAME or NAME(KEY=VALUE,...), e.g. bm25(k1=0.9,b=0.4). Values are ints, floats, true/false,
none, bare strings of letters, digits and ./:@+-_ or "double-quoted" strings (JSON escapes).
Parameters at their default are left out, so bm25(k1=1.2) is bm25: the id is the result key and
the row label. Several ids: comma-separate them or repeat --method; bench list shows parameters.

--save-runs DIR writes DIR/<method id>.<key8>.trec (TREC run format; characters a file name
cannot hold become _) for every spec measured now, and the record's run_file points to it. A key
already recorded has no run to write (records keep per-query metrics only): --force measures it.

Bad input is refused (exit 2) before anything is measured or recorded: unknown or out-of-range
method parameters, NaN/inf values, unknown --set keys, duplicate YAML keys, non-UTF-8 files and an
empty --method list before any data is loaded; an empty corpus or no positive judgment after.

A key that another run is measuring is taken up again at the end: the run waits for the other
run's claim, then uses its record, or measures the key itself if that run died or failed.
Records measured while other sparsebench runs were measuring on this machine are marked
(`contention`), and bench validate, compare and report say so.

--executor dask ships each spec (plain data) to a Dask cluster's workers: --address tcp://HOST:8786
for a running scheduler, else a local cluster of --workers N processes. This process still plans,
skips done keys, claims keys and appends every record (one writer), so resume works as above.
Each worker matches its own machine against the profile (refusing the spec, recorded as failed,
when it does not match) and stamps its own fingerprint; a worker that cannot see --cache-dir
computes into its own cache and the record says so. A spec whose worker dies is left unrecorded
(exit 1) and the next run measures it. Specs measured side by side on one machine are marked as
contended, as concurrent local runs are.

exit codes: 0 every spec ok; 1 some spec failed (recorded) or was lost with its worker; 2 bad input (one line naming it)

environment:
  SPARSEBENCH_CACHE          encoding cache (default ~/.cache/sparsebench)
  SPARSEBENCH_MODEL_DIR      where models taken from registry wheels are unpacked (default: under the cache)
  SPARSEBENCH_PROFILE_DIR    extra hardware profiles (*.yaml) besides the built-in ones
  SPARSEBENCH_MEASURING_DIR  where measuring runs register (default: the system temp dir)
  SPARSEBENCH_OFFLINE=1      never touch the network (HF_HUB_OFFLINE=1 keeps model hubs away but still
                             lets a registry wheel such as SPLADE-tiny's be fetched)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="sparsebench: measure what an efficient representation buys in quality and what it costs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a suite; skips every spec that already has an ok record",
        description="Measure every spec of a suite that has no ok record yet, one worker process per spec.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--suite", required=True, help="suite name (bench list) or path to a suite .yaml")
    run.add_argument("--dataset", help="declared dataset name, or beir:PATH[#SPLIT], irds:ID, mteb:TASK[#SPLIT[:SUBSET]] (default: the suite's)")
    run.add_argument("--dataset-name", metavar="NAME",
                     help="name a beir: folder in records as beir:NAME (default: the folder's own name; the path never is the id)")
    run.add_argument("--method", action="append", metavar="ID", help="method id(s) to run instead of the suite's grid; repeat or comma-separate")
    run.add_argument("--grid", metavar="NAME",
                     help="run the suite's default grid plus its named larger grid NAME (bench list shows them; e.g. full)")
    run.add_argument("--smoke", action="store_true",
                     help="run the suite's marked smoke subset: its `smoke` settings, before any --set (long-context has one)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                     help="override a task setting (top_k=50) or a method parameter (bm25.k1=0.9)")
    run.add_argument("--profile", help="declared hardware profile id (default: the one matching this machine)")
    run.add_argument("--profile-mismatch", choices=("refuse", "allow"), default="refuse",
                     help="run even if the machine does not match --profile; records say so (default: refuse)")
    run.add_argument("--force", action="store_true", help="re-run specs that already have an ok record (appends new records)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    run.add_argument("--cache-dir", type=Path, help="cache for corpus encodings (default: $SPARSEBENCH_CACHE or ~/.cache/sparsebench)")
    run.add_argument("--save-runs", type=Path, metavar="DIR", help="also write each method's TREC run file to DIR")
    run.add_argument("--in-process", action="store_true", help="run methods in this process (debugging; peak RSS then includes earlier methods)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--executor", choices=("local", "dask"), default="local",
                     help="where specs are measured: local (this machine, one worker process per spec; the default) or "
                     "dask (the workers of a Dask cluster; needs the [dask] extra)")
    run.add_argument("--address", metavar="ADDR",
                     help="with --executor dask: an existing Dask scheduler (tcp://HOST:8786); default: start a local cluster")
    run.add_argument("--workers", type=int, metavar="N",
                     help="with --executor dask and no --address: worker processes of the local cluster (default 2)")
    run.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                     help="with --address: seconds to wait for the scheduler before giving up (default 10)")

    lst = sub.add_parser(
        "list",
        help="list methods, suites and their datasets",
        description="List the registered methods with their parameters and defaults, and the built-in suites with "
        "their declared datasets. Any suite also runs on your own data: beir:PATH[#SPLIT], irds:ID, "
        "mteb:TASK[#SPLIT[:SUBSET]].",
    )
    lst.add_argument("what", nargs="?", choices=("methods", "suites", "all"), default="all")

    prof = sub.add_parser(
        "profile",
        help="show the detected machine and which declared profile it matches",
        description="Show the detected machine (CPU, cores, memory, accelerators, fingerprint) and which declared "
        "hardware profile it matches, with the reasons for each mismatch. Exit 1 when --profile is given and "
        "does not match. Extra profiles: $SPARSEBENCH_PROFILE_DIR.",
    )
    prof.add_argument("--profile", help="check against this profile id")

    for module in _command_modules().values():
        module.add_parser(sub)
    for subparser in sub.choices.values():  # `bench run -v` as well as `bench -v run`
        subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    return p


def _command_modules() -> dict:
    """Commands that live in their own modules: each has add_parser(sub) and run(args)."""
    from . import compare, export, validate
    from .report import command as report

    return {"compare": compare, "validate": validate, "export": export, "report": report}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        handlers = {"run": cmd_run, "list": cmd_list, "profile": cmd_profile}
        handlers.update({name: module.run for name, module in _command_modules().items()})
        return handlers[args.command](args)
    except BenchError as e:
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; records already written are kept, run again to resume")
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from .cache import default_cache_dir
    from .executors import ExecutorConfig
    from .hardware import choose_profile
    from .records import read
    from .methodid import split_method_ids
    from .registry import parse_override
    from .runner import RunOptions, run_suite
    from .suites.axes import SUMMARY_COLUMNS
    from .table import results_table

    # On an existing cluster the workers match --profile for themselves (and refuse specs when
    # they do not); this machine only plans and writes, so its own hardware does not matter.
    remote = args.executor != "local" and args.address is not None and args.profile is not None
    profile = choose_profile(args.profile, args.profile_mismatch == "allow" or remote)
    if not profile.matched and not remote:
        log.warning("running under profile %s although: %s", profile.profile.id, "; ".join(profile.problems))
    # None runs the suite's grid; an explicit but empty list (--method ",") is refused by the planner.
    methods = None if args.method is None else [m.strip() for arg in args.method for m in split_method_ids(arg)]
    opts = RunOptions(
        results_dir=args.results,
        cache_dir=args.cache_dir or default_cache_dir(),
        force=args.force,
        isolate=not args.in_process,
        progress=not args.no_progress and sys.stderr.isatty(),
        save_runs=args.save_runs,
        device="cuda" if profile.profile.device == "cuda" else "cpu",
        dataset_name=args.dataset_name,
        allow_profile_mismatch=args.profile_mismatch == "allow",
    )
    executor = ExecutorConfig(args.executor, args.address, args.workers, args.connect_timeout)
    overrides = [parse_override(s) for s in args.overrides]
    if args.smoke:
        from .suites.spec import load_suite

        declared = load_suite(args.suite)
        if not declared.smoke:
            raise BenchError(f"--smoke: suite {declared.ref} marks no smoke subset (no `smoke:` settings in {declared.file})")
        overrides = [(k, v) for k, v in declared.smoke.items()] + overrides
    summary, suite = run_suite(args.suite, args.dataset, profile, opts, methods, overrides, executor, args.grid)
    latest: dict[str, dict] = {}
    for rec in read(args.results / f"{suite.name}.jsonl"):
        latest[rec["key"]] = rec
    shown = [latest[s.key] for s in summary.specs if s.key in latest]
    sys.stdout.write(f"\n{suite.ref} on profile {profile.profile.id}\n{results_table(shown, suite.metrics, SUMMARY_COLUMNS.get(suite.task, ()))}\n")
    log.info("%d ran, %d already done, %d failed (%d waited for another run)", summary.ran, summary.skipped, summary.failed, summary.waited)
    if summary.lost:
        log.error("%d spec(s) not recorded (their worker was lost); run the same command again to measure them", summary.lost)
    return 1 if summary.failed or summary.lost else 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import registry
    from .suites.spec import builtin_suites, load_suite

    lines = []
    if args.what in ("methods", "all"):
        lines.append("methods:")
        for name in registry.names():
            cls, info = registry.lookup(name)
            taking = {f.name for f in registry.method_fields(cls)}
            # A parameter that takes a method is shown as <method>: it is given by position.
            params = ", ".join(f"{f.name}=<method>" if f.name in taking else f"{f.name}={f.default!r}"
                               for f in registry.param_fields(cls))
            lines.append(f"  {name:<12} {info.family:<15} {info.summary}")
            lines.append(f"  {'':<12} {'':<15} parameters: {params}")
            if taking:
                lines.append(f"  {'':<12} {'':<15} methods as arguments, by position: e.g. {info.example_id}")
    if args.what in ("suites", "all"):
        lines.append("suites (each also runs on beir:PATH[#SPLIT], irds:ID or mteb:TASK[#SPLIT[:SUBSET]] with --dataset):")
        for name in sorted(builtin_suites()):
            s = load_suite(name)
            lines.append(f"  {s.ref:<14} {s.description}")
            def points(grid: tuple) -> int:  # distinct ids: a named grid may repeat default points
                return len({str(registry.build(b, o)) for g in grid for b, o in g.method_ids()})

            extra = "".join(f"; --grid {n}: {points(s.grid(n))}" for n in sorted(s.grids))
            lines.append(f"    grid: {points(s.methods)} method points{extra}")
            for d in s.datasets:
                counts = f"{d.documents} docs, {d.queries} queries" if d.documents else ""
                lines.append(f"    dataset {d.id:<8} {d.source}  {counts}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from .hardware import detect, load_profiles, mismatches

    machine = detect()
    lines = [
        f"machine: {machine.cpu_model}, {machine.logical_cores} logical cores, {machine.memory_gib} GiB, "
        f"accelerators: {', '.join(machine.accelerators) or 'none'}",
        f"fingerprint: {machine.fingerprint}",
    ]
    status = 0
    for pid, prof in sorted(load_profiles().items()):
        if args.profile and pid != args.profile:
            continue
        problems = mismatches(prof, machine)
        mark = "MATCH" if not problems else "no   "
        lines.append(f"  {mark} {pid:<12} {prof.description}" + ("" if not problems else f"  ({'; '.join(problems)})"))
        if args.profile and problems:
            status = 1
    sys.stdout.write("\n".join(lines) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
