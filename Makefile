# The two entry points of the README. Each does its own set-up (scripts/setup.sh is idempotent).
.PHONY: setup bench test test-all

setup:
	@scripts/setup.sh

bench: setup
	.venv/bin/bench run --suite retrieval

test: setup
	.venv/bin/python -m pytest

test-all: setup
	.venv/bin/python -m pytest -m "slow or not slow"
