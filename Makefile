# The README's two commands: `make run` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# checkov in a virtual environment of its own: its pins (packaging<24 …) clash with
# requirements-dev.txt's. tests/contract/test_kubernetes.py runs it from here.
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-checkov run test test-fast test-browser lint format typecheck contract-test contract checkov bench chaos clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)  ## Create the virtual environment and install (pinned)

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

install-checkov: $(CHECKOV_STAMP)  ## checkov (pinned) in .venv-checkov, for the Kubernetes manifests' test

checkov: install-checkov  ## checkov on deploy/kubernetes (offline: no platform download)
	$(CHECKOV_VENV)/bin/checkov -d deploy/kubernetes --framework kubernetes --skip-download --compact

run: install  ## Serve on 127.0.0.1:8000 (SQLite under var/, in-process bus); ORCH_HOST/ORCH_PORT override
	$(BIN)/orchestration-service serve

test: install install-checkov lint typecheck  ## Lint, type-check and run the whole suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install install-checkov  ## The suite without lint and type checks
	$(BIN)/pytest -x -q $(PYTEST_ARGS)

lint: install  ## ruff (lint and format check) and the import rule (docs/architecture.md)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_architecture.py

format: install  ## Apply ruff's formatting and fixes
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

typecheck: install  ## mypy, strict on the package
	$(BIN)/mypy

test-browser: install  ## The dashboard's browser tests (Chromium from Debian)
	$(BIN)/pytest tests/browser $(PYTEST_ARGS)

contract-test: install install-checkov  ## Contract tests: OpenAPI drift, Schemathesis, AsyncAPI, deploy files, the package
	$(BIN)/pytest tests/contract $(PYTEST_ARGS)

contract: install  ## Regenerate contracts/openapi.yaml from the code
	$(BIN)/python -m orchestration_service.contracts > contracts/openapi.yaml

bench: install  ## Benchmarks: HTTP, events (in-process and RabbitMQ), provenance at 100k (PostgreSQL), legacy import (both backends), dashboard (see bench/); prints figures
	$(BIN)/python -m bench
	$(BIN)/python -m bench.events
	$(BIN)/python -m bench.events lifecycle --broker amqp
	$(BIN)/python -m bench.provenance
	$(BIN)/python -m bench.provenance_import
	$(BIN)/python -m bench.dashboard

chaos: install  ## Fault injection: faults under load on private servers, then the history checker (≤ 10 min)
	$(BIN)/python -m tests.chaos

clean:  ## Remove the virtual environment, caches and the local database
	rm -rf $(VENV) $(CHECKOV_VENV) var .pytest_cache .mypy_cache .ruff_cache
