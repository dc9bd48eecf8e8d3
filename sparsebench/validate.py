"""`bench validate [PATH ...]`: check result files (as a pull request brings them) without running them.

Records are untrusted input here: they are parsed with `json` only (suites and profiles, which come
from this installation, with YAML safe_load), nothing named in a record is imported, executed or
unpickled, suite names must be built-in (a record cannot point the validator at a YAML file of
its own), sidecar paths must stay inside the results directory, and no file is ever written.
Lines are parsed by `records.parse_record`, the parser every other command reads with, so a file
that passes here is one `bench report`, `export`, `compare` and `run` read; its bounds (line
length, nesting, number size, no symlinks, regular files only) keep a hostile file from
crashing or exhausting the validator.

Every problem is printed as `FILE:LINE: error|warning: what`, sidecar problems at the line of
the record that references the sidecar, problems of a file as a whole (a symlink; per-query
files no record references) at line 0. Exit codes: 0 no errors (warnings allowed), 1 at least
one error, 2 bad input (a PATH that does not exist).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records, sidecars
from .safefiles import UnsafeFileError
from .strictjson import one_line
from .errors import BenchError

log = logging.getLogger(__name__)

# At most nine digits: int() of a longer run of digits can raise (over Python's 4300-digit limit).
SUITE_REF = re.compile(r"^([A-Za-z0-9_.-]+)@([0-9]{1,9})$")
MAX_MESSAGE_CHARS = 1000  # record text quoted in a message is cut: one line per problem, readable
MAX_LEFTOVERS_LISTED = 50  # per file; a directory of thousands of strays gets one summary line


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="check results files (schema, suite version, units, profile, provenance, sidecars); runs nothing",
        description="Check result records without executing anything from them. Prints FILE:LINE: problem;\n"
        "problems of a file as a whole (a symlink or special file, per-query files no record\n"
        "references, leftover *.tmp files) at line 0. Lines over 4 MiB, nesting over 64 levels,\n"
        "NaN/Infinity and invalid UTF-8 are errors, exactly as every other command reads them.",
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
        self.problems.append(Problem(self.path, self.line, "error", _short(msg, MAX_MESSAGE_CHARS)))

    def warn(self, msg: str) -> None:
        self.problems.append(Problem(self.path, self.line, "warning", _short(msg, MAX_MESSAGE_CHARS)))

    def check_file(self) -> list[Problem]:
        referenced: set[str] = set()
        try:
            for self.line, item in records.scan(self.path):
                if isinstance(item, records.RecordError):
                    for msg in item.problems:
                        self.error(msg)
                    continue
                self.check_record(item)
                ref = item.get("per_query")
                if isinstance(ref, dict) and isinstance(ref.get("path"), str):
                    referenced.add(os.path.normpath(ref["path"]))
        except UnsafeFileError as e:
            self.line = e.line
            self.error(e.reason)
        self.line = 0
        self.check_leftovers(referenced)
        return self.problems

    def check_record(self, rec: dict) -> None:
        self.check_run_id(rec)
        self.check_schema(rec)
        self.check_method(rec)
        suite = self.check_suite(rec)
        self.check_profile(rec)
        self.check_provenance(rec)
        self.check_contention(rec)
        if suite is not None and rec["status"] == "ok":
            self.check_metrics(rec, suite)
            self.check_costs(rec, suite)
        if rec["status"] == "ok":
            self.check_sidecar(rec)

    def check_schema(self, rec: dict) -> None:
        if rec["schema"] < 2:
            self.warn("schema 1 record predates suite digests; its suite definition cannot be verified")

    def check_method(self, rec: dict) -> None:
        """The id must build (our own frozen dataclass, nothing of the record's is imported) and
        agree with the name, family and parameters the record states: a hand-edited family or
        parameter would otherwise put a number in the wrong leaderboard row."""
        from . import registry

        try:
            method = registry.build(rec["method"])
        except Exception as e:  # any failure to parse or construct is the record's problem, not ours
            self.error(f"method id {_short(rec['method'])!r} does not build: {_short(str(e))}")
            return
        cls = type(method)
        info = cls.info
        if info.name != rec["method_name"]:
            self.error(f"method_name {_short(rec['method_name'])!r} but method id {_short(rec['method'])!r} is method {info.name!r}")
        if info.family != rec["family"]:
            self.error(f"family {_short(rec['family'])!r} but method {info.name!r} is registered as {info.family!r}")
        params = registry.params_of(method)
        diff = sorted(k for k in params.keys() | rec["params"].keys() if not _same(params.get(k, _ABSENT), rec["params"].get(k, _ABSENT)))
        if diff:
            self.error(f"params disagree with method id {_short(rec['method'])!r} on {', '.join(_short(k, 40) for k in diff[:10])} "
                       f"(the id means {_short(repr(params))})")

    def check_contention(self, rec: dict) -> None:
        # Its shape is checked by records.validate; here only what it means for the costs.
        contention = rec.get("contention")
        if isinstance(contention, dict) and contention["detected"]:
            n = contention["max_other_runs"]
            runs = "run was" if n == 1 else "runs were"
            self.warn(f"costs measured while {n} other sparsebench {runs} measuring on this machine")

    def check_run_id(self, rec: dict) -> None:
        # Two records with one run_id would make a leaderboard link ambiguous (and mean a copy-paste).
        where = f"{self.path}:{self.line}"
        first = self.ctx.seen_run_ids.setdefault(rec["run_id"], where)
        if first != where:
            self.error(f"duplicate run_id {_short(rec['run_id'])!r} (first at {first})")

    def check_suite(self, rec: dict) -> Any | None:
        """The suite the record names, when it is this installation's version of it."""
        m = SUITE_REF.match(rec["suite"])
        if not m:
            self.error(f"suite {_short(rec['suite'])!r} is not NAME@VERSION")
            return None
        name, version = m.group(1), int(m.group(2))
        suite = self.ctx.suites.get(name)
        if suite is None:  # built-in names only: a record must not make us load a YAML it brings
            self.error(f"unknown suite {_short(name)!r} (known: {', '.join(sorted(self.ctx.suites))})")
            return None
        if version > suite.version:
            self.error(f"suite version {rec['suite']} is newer than this installation's {suite.ref} (unknown version; upgrade sparsebench?)")
            return None
        if version < suite.version:
            self.warn(f"older suite version {rec['suite']} (current {suite.ref}): kept, never ranked with {suite.ref}")
            return None  # its metrics, axes and key recipe may differ; nothing more to check against
        if rec["task"] != suite.task:
            self.error(f"task {_short(rec['task'])!r} but {suite.ref} is a {suite.task!r} suite")
        self.check_suite_digest(rec, suite)
        self.check_dataset(rec, suite)
        self.check_key(rec, suite)
        return suite

    def check_suite_digest(self, rec: dict, suite: Any) -> None:
        # Same name@version but another definition (a copied suite file edited without bumping
        # its version) measures something else; such records must not rank with ours.
        digest = rec.get("suite_digest")
        if rec["schema"] >= 2 and digest != suite.digest:
            self.error(f"suite_digest {_short(str(digest), 16)} is not this installation's {suite.ref} ({suite.digest[:16]}...): "
                       f"measured with a different suite definition that reuses {suite.ref}")

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
        if not isinstance(pid, str) or pid not in self.ctx.profiles:  # a list id would not even hash
            self.error(f"profile {_short(str(pid))!r} is not a declared profile ({', '.join(sorted(self.ctx.profiles))})")
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
                self.error(f"metric {_short(name)!r} is not one of {suite.ref}'s metrics ({', '.join(suite.metrics)})")
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
        try:
            path = sidecars.sidecar_path(self.path.parent, ref["path"])
            if not os.path.lexists(path):
                self.error(f"per-query file {ref['path']} does not exist")
                return
            data = sidecars.read_sidecar_bytes(path, ref["path"])
            if hashlib.sha256(data).hexdigest() != ref["sha256"]:
                self.error(f"per-query file {ref['path']} does not match the sha256 in its record")
                return
            per_query = sidecars.parse_sidecar(data, ref["path"])
        except sidecars.SidecarError as e:
            self.error(e.reason)
            return
        self.check_sidecar_values(rec, ref["path"], per_query)

    def check_sidecar_values(self, rec: dict, rel: str, per_query: Any) -> None:
        if not isinstance(per_query, dict) or not all(isinstance(v, dict) for v in per_query.values()):
            self.error(f"per-query file {rel}: expected an object of query id -> values")
            return
        for name, q in rec["metrics"].items():
            # A metric of one part of the data (an lm suite's perplexity/austen) has values for
            # that part's items only; n says how many.
            have = sum(1 for v in per_query.values() if name in v)
            n = q.get("n") if isinstance(q.get("n"), int) else len(per_query)
            if n != len(per_query) and n != have:
                self.error(f"per-query file {rel} has {len(per_query)} queries, metrics.{name}.n is {q['n']}")
                break
            if have != n:
                self.error(f"per-query file {rel}: some queries have no {name!r} value")
                break

    def check_leftovers(self, referenced: set[str]) -> None:
        """Per-query files of this suite that no record of this file references, and temp files:
        what a killed run leaves (a sidecar written before its record, a half-written temp)."""
        folder = self.path.parent / "per-query" / self.path.stem
        if folder.is_symlink() or not folder.is_dir():
            return
        root = self.path.parent
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            self.warn(f"cannot list {folder.relative_to(root).as_posix()} ({e.strerror}); unreferenced per-query files not checked")
            return
        strays = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue
            rel = Path(entry.path).relative_to(root).as_posix()
            if entry.name.endswith(".tmp"):
                strays.append(f"temporary file {rel} left by an interrupted write (bench run removes it once its writer has exited)")
            elif os.path.normpath(rel) not in referenced:
                strays.append(f"per-query file {rel} is referenced by no record in {self.path.name} (left by a killed run?)")
        for msg in strays[:MAX_LEFTOVERS_LISTED]:
            self.warn(msg)
        if len(strays) > MAX_LEFTOVERS_LISTED:
            self.warn(f"... and {len(strays) - MAX_LEFTOVERS_LISTED} more such files in {folder.relative_to(root).as_posix()}")


_ABSENT = object()


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type: `true` is not the parameter 1.0 although True == 1.0 in Python."""
    return type(a) is type(b) and a == b


def _short(text: str, limit: int = 200) -> str:
    """Record text in a message, cut and on one line: a hostile record must not flood the output
    or forge a `FILE:LINE:` line of its own."""
    return one_line(text if len(text) <= limit else text[:limit] + "...")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def collect(paths: list[Path]) -> list[Path]:
    if not paths:
        return sorted(Path("results").glob("*.jsonl"))
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(p.glob("*.jsonl"))
        elif os.path.lexists(p):  # a symlink or device too: the checker reports it rather than read it
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
