# Everything bootstraps from a fresh clone: a virtualenv with the Python deps (which bring a pinned Node),
# then the sandbox runtime's npm packages from its lock. Stamps keep repeat runs fast.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY_STAMP := $(VENV)/.deps-installed
NODE_STAMP := layers/runtime/node_modules/.deps-installed
export PATH := $(BIN):$(PATH)

.PHONY: setup serve test lint bench clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(NODE_STAMP): layers/runtime/package.json layers/runtime/package-lock.json $(PY_STAMP)
	cd layers/runtime && $(BIN)/npm ci --no-audit --no-fund --loglevel=error
	touch $@

serve: setup
	$(BIN)/mcpdo serve

test: setup
	$(BIN)/python -m pytest

# What exists of the Python trees (functions/ arrives with the Lambda entrypoints).
PY_TREES = $(wildcard shared tests bench functions)

lint: setup
	$(BIN)/ruff check $(PY_TREES)
	$(BIN)/ruff format --check $(PY_TREES)
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) layers/runtime/node_modules .pytest_cache .mypy_cache .ruff_cache
