# The two entry points of the README. Each does its own set-up (scripts/setup.sh is idempotent).
# The tests also need the worker environments .venvs/prune (llm-compressor and the transformers
# it pins: wanda's and sparsegpt's workers), .venvs/late (PyLate: colbert's and plaid's) and
# .venvs/kv (kvpress: the KV-cache presses) and .venvs/sae (dictionary_learning: the SAE trainers),
# and Debian's chromium for the browser tests of the report site.
.PHONY: setup setup-envs setup-browser bench test test-all

setup:
	@scripts/setup.sh

setup-envs: setup
	@scripts/setup.sh --env prune
	@scripts/setup.sh --env late
	@scripts/setup.sh --env kv
	@scripts/setup.sh --env sae

# Debian's chromium for the browser tests (best effort: they skip where it cannot be installed).
setup-browser:
	@scripts/setup_browser.sh

bench: setup
	.venv/bin/bench run --suite retrieval

test: setup-envs setup-browser
	.venv/bin/python -m pytest

test-all: setup-envs setup-browser
	.venv/bin/python -m pytest -m "not gpu"
