# The two set-up commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Each installs what it needs first. PYTHON can be overridden (e.g. a virtualenv's python).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# One torch thread per process: tiny models on two shared cores were measured 7-50x slower with more.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-slow lint docs

install:
	@# A CPU torch from this machine's wheel first, so that nothing pulls a multi-GB CUDA build.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	@# bubblewrap isolates sandboxed model code (docs/rewards.md); without it the sandbox falls back to rlimits.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || \
		echo "warning: bubblewrap not installed; the code sandbox will use resource limits only"

demo: install
	accelerate launch --num_processes 1 examples/score_math.py

test: install
	$(PYTHON) -m pytest

test-slow: install
	$(PYTHON) -m pytest -m slow

lint:
	ruff check . && ruff format --check .
