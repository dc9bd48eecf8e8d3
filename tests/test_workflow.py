"""The leaderboard workflow: valid YAML, only our own commands, and a PR job that runs no PR code."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sparsebench import cli

from .conftest import REPO, SAMPLE_RESULTS

WORKFLOW = REPO / ".github" / "workflows" / "leaderboard.yml"
# Shell keywords and builtins the steps may use around our commands.
SHELL = {"if", "then", "else", "fi", "for", "do", "done", "exit", "echo", "[", "test", "set", "true"}
OURS = {".venv/bin/bench", "bench", "scripts/setup.sh", "scripts/setup_browser.sh", "git"}
# Our scripts that the venv's python may run (and nothing else through it).
OUR_SCRIPTS = {"scripts/browser_check.py"}


def load() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def run_steps(wf: dict) -> list[tuple[str, str]]:
    return [(job, step["run"]) for job, spec in wf["jobs"].items() for step in spec["steps"] if "run" in step]


def commands(script: str) -> list[list[str]]:
    """Each simple command of a step, command substitutions included, as argv lists."""
    out = []
    for sub in re.findall(r"\$\(([^()]*)\)", script):
        out += commands(sub)
    script = re.sub(r"\$\([^()]*\)", "SUBST", script)
    for line in script.splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part.split(">>")[0], comments=True)
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # NAME=value prefixes
                words = words[1:]
            if words:
                out.append(words)
    return out


def bench_parser() -> argparse.ArgumentParser:
    """The real `bench` parser: every workflow command line must parse with it."""
    return cli.build_parser()


def test_workflow_parses_and_has_the_three_jobs() -> None:
    wf = load()
    triggers = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"push", "pull_request", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["paths"] == ["results/**"]
    assert set(wf["jobs"]) == {"validate-pr", "measure", "pages"}
    assert wf["jobs"]["measure"]["runs-on"] == ["self-hosted", "cpu-2core"]
    assert wf["jobs"]["pages"]["needs"] == "measure"
    uses = [s.get("uses", "") for s in wf["jobs"]["pages"]["steps"]]
    assert any(u.startswith("actions/upload-pages-artifact") for u in uses) and any(u.startswith("actions/deploy-pages") for u in uses)


def test_the_self_hosted_label_is_a_declared_profile() -> None:
    from sparsebench.hardware import load_profiles

    assert load()["jobs"]["measure"]["runs-on"][1] in load_profiles()


def test_every_run_step_only_calls_bench_setup_git_or_plain_shell() -> None:
    parser = bench_parser()
    for job, script in run_steps(load()):
        subprocess.run(["bash", "-n", "-c", script], check=True)  # syntax
        for argv in commands(script):
            if argv[0] == ".venv/bin/python":
                assert argv[1] in OUR_SCRIPTS, f"{job}: the venv's python runs {argv[1:2]}, not one of our scripts"
                continue
            assert argv[0] in OURS | SHELL, f"{job}: {argv[0]!r} is not bench, our set-up scripts, git or plain shell"
            if argv[0].endswith("bench"):
                args = [a for a in argv[1:] if "$" not in a]  # shell-expanded file lists aside
                parser.parse_args(args)  # flags exist (argparse exits on an unknown one)


def test_the_pull_request_job_runs_only_validate_with_the_base_code() -> None:
    job = load()["jobs"]["validate-pr"]
    code, data = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout")]
    assert code["with"]["ref"] == "${{ github.event.pull_request.base.sha }}" and "path" not in code["with"]
    assert data["with"]["path"] == "pr" and data["with"]["sparse-checkout"] == "results"
    assert all(s["with"]["persist-credentials"] is False for s in (code, data))
    bench_calls = [argv for _, script in [("", s["run"]) for s in job["steps"] if "run" in s] for argv in commands(script)
                   if argv[0].endswith("bench")]
    assert bench_calls and all(argv[1] == "validate" for argv in bench_calls)
    assert "permissions" not in job or job["permissions"] == {"contents": "read"}
    assert load()["permissions"] == {"contents": "read"}


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_the_pull_request_step_validates_only_the_changed_files(tmp_path) -> None:
    """The step's script, verbatim, on a PR that adds one good and one bad results file."""
    work = tmp_path / "work"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "bench").symlink_to(Path(sys.executable).parent / "bench")
    pr = work / "pr"
    shutil.copytree(SAMPLE_RESULTS, pr / "results")
    _git(pr, "init", "-q")
    _git(pr, "add", ".")
    _git(pr, "commit", "-qm", "base")
    base = _git(pr, "rev-parse", "HEAD")
    step = next(s for s in load()["jobs"]["validate-pr"]["steps"] if s.get("name", "").startswith("Validate"))

    def run_step() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "-c", step["run"]], check=False, cwd=work, env={**os.environ, "BASE_SHA": base},
                              capture_output=True, text=True)

    assert run_step().returncode == 0  # nothing changed
    lines = (pr / "results" / "retrieval.jsonl").read_text().splitlines()
    (pr / "results" / "new.jsonl").write_text(lines[0].replace('"cpu-2core"', '"cpu-1core"', 1) + "\n")
    _git(pr, "add", ".")
    _git(pr, "commit", "-qm", "pr")
    done = run_step()
    assert done.returncode == 1
    assert "pr/results/new.jsonl:1: error: profile 'cpu-1core'" in done.stdout
    assert "retrieval.jsonl" not in done.stdout  # unchanged files are not re-validated
