"""`bench validate [PATH ...]`: check result files (as a pull request brings them) without running them.

Records are untrusted input here: they are parsed with `json` only (suites and profiles, which come
from this installation, with YAML safe_load), nothing named in a record is imported, executed or
unpickled, suite names must be built-in (a record cannot point the validator at a YAML file of
its own), sidecar paths must stay inside the results directory, and no file is ever written.

Every problem is printed as `FILE:LINE: error|warning: what`, sidecar problems at the line of
the record that references the sidecar. Exit codes: 0 no errors (warnings allowed), 1 at least
one error, 2 bad input (a PATH that does not exist).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchError

log = logging.getLogger(__name__)

SUITE_REF = re.compile(r"^([A-Za-z0-9_.-]+)@([0-9]+)$")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="check results files (schema, suite version, units, profile, provenance, sidecars); runs nothing",
        description="Check result records without executing anything from them. Prints FILE:LINE: problem.",
        epilog="exit codes: 0 no errors (warnings allowed), 1 at least one error, 2 a PATH does not exist",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="results .jsonl files or directories holding them (default: results/*.jsonl)")
    return p


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    severity: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


@dataclass
class Context:
    """What records are checked against: this installation's suites, profiles and task axes."""

    suites: dict[str, Any]
    profiles: set[str]
    seen_run_ids: dict[str, str] = field(default_factory=dict)  # run_id -> FILE:LINE of first use

    @classmethod
    def load(cls) -> Context:
        from .hardware import load_profiles
        from .suites.spec import builtin_suites, load_suite

        return cls(suites={name: load_suite(name) for name in builtin_suites()}, profiles=set(load_profiles()))


class Checker:
    """Collects the problems of one file; each check is a small method that says why it exists."""

    def __init__(self, path: Path, ctx: Context) -> None:
        self.path = path
        self.ctx = ctx
        self.problems: list[Problem] = []
        self.line = 0

    def error(self, msg: str) -> None:
        self.problems.append(Problem(self.path, self.line, "error", msg))

    def warn(self, msg: str) -> None:
        self.problems.append(Problem(self.path, self.line, "warning", msg))

    def check_file(self) -> list[Problem]:
        try:
            data = self.path.read_bytes()
        except OSError as e:
            self.error(f"cannot read ({e.strerror})")
            return self.problems
        lines = data.split(b"\n")
        if data and not data.endswith(b"\n"):
            self.line = len(lines)
            self.error("last line is incomplete (no trailing newline: an interrupted write?)")
        for self.line, raw in enumerate(lines, 1):
            if raw.strip():
                self.check_line(raw)
        return self.problems

    def check_line(self, raw: bytes) -> None:
        try:
            rec = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            self.error("not UTF-8")
            return
        except ValueError as e:  # JSONDecodeError, or NaN/Infinity, which append() never writes
            self.error(f"invalid JSON ({e})")
            return
        from .records import validate

        shape = validate(rec)
        if shape:
            for msg in shape:
                self.error(f"malformed record: {msg}")
            return
        self.check_run_id(rec)
        suite = self.check_suite(rec)
        self.check_profile(rec)
        self.check_provenance(rec)
        if suite is not None and rec["status"] == "ok":
            self.check_metrics(rec, suite)
            self.check_costs(rec, suite)
        if rec["status"] == "ok":
            self.check_sidecar(rec)

    def check_run_id(self, rec: dict) -> None:
        # Two records with one run_id would make a leaderboard link ambiguous (and mean a copy-paste).
        where = f"{self.path}:{self.line}"
        first = self.ctx.seen_run_ids.setdefault(rec["run_id"], where)
        if first != where:
            self.error(f"duplicate run_id {rec['run_id']!r} (first at {first})")

    def check_suite(self, rec: dict) -> Any | None:
        """The suite the record names, when it is this installation's version of it."""
        m = SUITE_REF.match(rec["suite"])
        if not m:
            self.error(f"suite {rec['suite']!r} is not NAME@VERSION")
            return None
        name, version = m.group(1), int(m.group(2))
        suite = self.ctx.suites.get(name)
        if suite is None:  # built-in names only: a record must not make us load a YAML it brings
            self.error(f"unknown suite {name!r} (known: {', '.join(sorted(self.ctx.suites))})")
            return None
        if version > suite.version:
            self.error(f"suite version {rec['suite']} is newer than this installation's {suite.ref} (unknown version; upgrade sparsebench?)")
            return None
        if version < suite.version:
            self.warn(f"older suite version {rec['suite']} (current {suite.ref}): kept, never ranked with {suite.ref}")
            return None  # its metrics, axes and key recipe may differ; nothing more to check against
        if rec["task"] != suite.task:
            self.error(f"task {rec['task']!r} but {suite.ref} is a {suite.task!r} suite")
        self.check_dataset(rec, suite)
        self.check_key(rec, suite)
        return suite

    def check_dataset(self, rec: dict, suite: Any) -> None:
        decl = suite.dataset(rec["dataset"].get("id", ""))
        if decl is not None and decl.sha256 and rec["dataset"].get("checksum") != decl.sha256:
            self.error(f"dataset {decl.id!r} checksum {rec['dataset'].get('checksum')!r} differs from the one {suite.ref} pins")

    def check_key(self, rec: dict, suite: Any) -> None:
        # The key is recomputed with the runner's own recipe (RunSpec.key) from what the record says.
        from .runner import RunSpec

        try:
            spec = RunSpec(
                suite_file="", suite=rec["suite"], task=rec["task"], method=rec["method"], dataset=rec["dataset"].get("ref", ""),
                dataset_id=rec["dataset"]["id"], dataset_checksum=rec["dataset"]["checksum"], metrics=tuple(suite.metrics),
                main_metric=suite.main_metric, settings=rec["settings"], profile_id=rec["profile"]["id"],
            )
        except KeyError as e:
            self.error(f"dataset.{e.args[0]} missing")
            return
        if spec.key != rec["key"]:
            self.error(f"key {rec['key'][:16]}... does not match the one recomputed from the record ({spec.key[:16]}...)")

    def check_profile(self, rec: dict) -> None:
        pid = rec["profile"]["id"]
        if pid not in self.ctx.profiles:
            self.error(f"profile {pid!r} is not a declared profile ({', '.join(sorted(self.ctx.profiles))})")
        elif rec["profile"].get("matched") is False:
            self.warn(f"measured on a machine that does not match profile {pid!r}: {'; '.join(map(str, rec['profile'].get('mismatches', [])))}")

    def check_provenance(self, rec: dict) -> None:
        prov = rec["provenance"]
        if "git_commit" not in prov:
            self.error("provenance.git_commit missing")
        elif not prov["git_commit"]:
            self.warn("provenance.git_commit is empty (measured outside a git checkout)")
        elif prov.get("git_dirty"):
            self.warn("measured from a checkout with uncommitted changes (git_dirty)")
        if not isinstance(prov.get("packages"), dict) or not prov["packages"]:
            self.error("provenance.packages missing or empty")

    def check_metrics(self, rec: dict, suite: Any) -> None:
        for name, q in rec["metrics"].items():
            if name not in suite.metrics:
                self.error(f"metric {name!r} is not one of {suite.ref}'s metrics ({', '.join(suite.metrics)})")
            elif not _is_number(q["value"]) or not isinstance(q["n"], int) or isinstance(q["n"], bool):
                self.error(f"metrics.{name}: value must be a number and n an integer")
        if rec["main_metric"] != suite.main_metric:
            self.error(f"main_metric {rec['main_metric']!r} but {suite.ref}'s is {suite.main_metric!r}")

    def check_costs(self, rec: dict, suite: Any) -> None:
        from .suites.tasks import get_task

        axes = get_task(suite.task).cost_axes
        for name, q in rec["costs"].items():
            if q["value"] is not None and not _is_number(q["value"]):
                self.error(f"costs.{name}: value {q['value']!r} is not a number")
            if name in axes:
                if q["unit"] != axes[name].unit:
                    self.error(f"costs.{name}: unit {q['unit']!r}, the {suite.task} task declares {axes[name].unit!r}")
            elif not q.get("proxy"):
                self.warn(f"costs.{name}: not a declared {suite.task} cost axis and not marked as a proxy")

    def check_sidecar(self, rec: dict) -> None:
        ref = rec.get("per_query")
        if not isinstance(ref, dict) or not isinstance(ref.get("path"), str) or not isinstance(ref.get("sha256"), str):
            self.error("per_query reference (path, sha256) missing")
            return
        root = self.path.parent.resolve()
        target = (root / ref["path"]).resolve()  # resolve() follows symlinks, so they cannot escape either
        if Path(ref["path"]).is_absolute() or not target.is_relative_to(root):
            self.error(f"per-query path {ref['path']!r} leaves the results directory")
            return
        if not target.is_file():
            self.error(f"per-query file {ref['path']} does not exist")
            return
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() != ref["sha256"]:
            self.error(f"per-query file {ref['path']} does not match the sha256 in its record")
            return
        try:
            per_query = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except ValueError as e:
            self.error(f"per-query file {ref['path']}: invalid JSON ({e})")
            return
        if not isinstance(per_query, dict) or not all(isinstance(v, dict) for v in per_query.values()):
            self.error(f"per-query file {ref['path']}: expected an object of query id -> values")
            return
        for name, q in rec["metrics"].items():
            if isinstance(q.get("n"), int) and q["n"] != len(per_query):
                self.error(f"per-query file {ref['path']} has {len(per_query)} queries, metrics.{name}.n is {q['n']}")
                break
            if any(name not in v for v in per_query.values()):
                self.error(f"per-query file {ref['path']}: some queries have no {name!r} value")
                break


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a record")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def collect(paths: list[Path]) -> list[Path]:
    if not paths:
        return sorted(Path("results").glob("*.jsonl"))
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(p.glob("*.jsonl"))
        elif p.is_file():
            out.append(p)
        else:
            raise BenchError(f"{p}: no such file or directory")
    return out


def validate_files(paths: list[Path]) -> list[Problem]:
    ctx = Context.load()
    problems: list[Problem] = []
    for path in paths:
        problems += Checker(path, ctx).check_file()
    return problems


def run(args: argparse.Namespace) -> int:
    files = collect(list(args.paths))
    if not files:
        log.warning("no results files to validate")
        return 0
    problems = validate_files(files)
    if problems:
        sys.stdout.write("".join(f"{p}\n" for p in problems))
    errors = sum(p.severity == "error" for p in problems)
    log.info("%d file(s): %d error(s), %d warning(s)", len(files), errors, len(problems) - errors)
    return 1 if errors else 0
