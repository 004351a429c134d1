# async_naf: two commands on a fresh machine.
#   make train   asynchronous NAF on the embedded MuJoCo simulation (door_pull, 2 workers)
#   make test    the linters (make lint), then the test suite
# Both bootstrap .venv with pinned wheels through `make setup` (idempotent).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-stamp
RUN_DIR ?= runs/door_pull_2w
# door opening, 2 simulated arms, until a greedy evaluation scores 20 of 20 on the strict criterion (at most 60 min);
# override freely
TRAIN_ARGS ?= --task door_pull --workers 2 --seed 0 --stop-at-success 1.0 --minutes 60
PYTEST_ARGS ?=
# the CPU build of torch 2.13.0 (Linux x86_64: +cpu from PyTorch's CPU index; elsewhere PyPI's, CPU-only there)
ifeq ($(shell uname -sm),Linux x86_64)
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu
else
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
endif

# DDS stays on loopback for everything this Makefile starts (forced, not a default).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp

.PHONY: setup train test bench docs lint lock clean help

help:
	@echo "make setup  - create .venv with pinned dependencies (torch==2.13.0 CPU first)"
	@echo "make train  - asynchronous NAF, door_pull, 2 workers, embedded MuJoCo (results in $(RUN_DIR); TRAIN_ARGS=...)"
	@echo "make lint   - ruff check and mypy (config: ruff.toml, mypy.ini)"
	@echo "make test   - make lint, then run the tests"
	@echo "make bench  - print the measured speed figures as JSON"
	@echo "make docs   - regenerate docs/parameters.md from the config dataclasses and the nodes"
	@echo "make lock   - rewrite constraints.txt from .venv (pins of the indirect dependencies)"
	@echo "make clean  - remove .venv and the build and tool caches"

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt setup.py setup.cfg package.xml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	# exactly this torch, first, and its CPU build: PyPI's torch==2.13.0 for Linux x86_64 is the CUDA build and
	# pulls gigabytes of CUDA wheels; the +cpu build is on PyTorch's CPU index (or a local wheelhouse)
	$(PIP) install --quiet --no-deps $(TORCH) $(TORCH_INDEX)
	$(PIP) install --quiet $(TORCH) -c constraints.txt  # its dependencies, pinned, from the usual index
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, rclpy, mujoco, async_naf; v = torch.__version__; \
	assert v.startswith('2.13.0') and torch.version.cuda is None, f'torch {v} (CUDA {torch.version.cuda}): not the CPU build of 2.13.0'"
	touch $(STAMP)

train: setup
	$(VENV)/bin/async-naf train $(TRAIN_ARGS) --run-dir $(RUN_DIR) --overwrite

# ruff (ruff.toml) over the whole tree, mypy (mypy.ini) over async_naf/ and benchmarks/
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/async-naf bench --json

docs: setup
	$(PY) -m async_naf.run.docs

lock: setup
	$(PIP) freeze --exclude-editable | grep -v -E '^(torch|ros-|rclpy==)' > constraints.txt

clean:
	rm -rf $(VENV) build install log *.egg-info .pytest_cache .mypy_cache .ruff_cache
