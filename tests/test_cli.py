"""The command line itself: options wherever a user puts them, help that says what a user needs."""

import logging

import pytest

from sparsebench.cli import build_parser, main

from .conftest import SAMPLE_RESULTS


@pytest.mark.parametrize("argv", [["-v", "validate", str(SAMPLE_RESULTS)], ["validate", "-v", str(SAMPLE_RESULTS)]])
def test_verbose_works_before_and_after_the_subcommand(argv) -> None:
    assert main(argv) == 0
    assert logging.getLogger().level == logging.DEBUG


def test_without_verbose_the_level_is_info() -> None:
    assert main(["validate", str(SAMPLE_RESULTS)]) == 0
    assert logging.getLogger().level == logging.INFO


def test_run_help_explains_ids_run_files_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    assert "NAME(KEY=VALUE,...)" in text and "<method id>.<key8>.trec" in text and "exit codes:" in text


def test_list_names_the_dataset_kinds(capsys) -> None:
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert all(kind in out for kind in ("beir:PATH", "irds:ID", "mteb:TASK"))
