# The two entry points of the README. Each does its own set-up (scripts/setup.sh is idempotent).
# The tests also need the prune worker environment (.venvs/prune: llm-compressor and the
# transformers it pins), where the runner starts wanda's and sparsegpt's workers.
.PHONY: setup setup-envs bench test test-all

setup:
	@scripts/setup.sh

setup-envs: setup
	@scripts/setup.sh --env prune

bench: setup
	.venv/bin/bench run --suite retrieval

test: setup-envs
	.venv/bin/python -m pytest

test-all: setup-envs
	.venv/bin/python -m pytest -m "not gpu"
