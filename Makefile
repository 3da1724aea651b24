# Everything bootstraps from a fresh clone: a virtualenv with the Python deps (which bring a pinned Node),
# then the sandbox runtime's npm packages from its lock. Stamps keep repeat runs fast.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PY_STAMP := $(VENV)/.deps-installed
NODE_STAMP := layers/runtime/node_modules/.deps-installed
export PATH := $(BIN):$(PATH)

.PHONY: setup serve test lint bench conformance clean sam-setup sam-check sam-clean

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

test: setup sam-check conformance
	$(BIN)/python -m pytest

# The official MCP conformance suite (pinned in tests/conformance/package-lock.json) against a server it starts.
CONFORMANCE_STAMP := tests/conformance/node_modules/.deps-installed

$(CONFORMANCE_STAMP): tests/conformance/package.json tests/conformance/package-lock.json $(PY_STAMP)
	cd tests/conformance && $(BIN)/npm ci --no-audit --no-fund --loglevel=error
	touch $@

conformance: setup $(CONFORMANCE_STAMP)
	$(BIN)/python tests/conformance/run.py

# The Python trees (and the build check, a script of its own).
PY_TREES = $(wildcard shared tests bench functions layers/build_check.py)

lint: setup
	$(BIN)/ruff check $(PY_TREES)
	$(BIN)/ruff format --check $(PY_TREES)
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) layers/runtime/node_modules tests/conformance/node_modules .pytest_cache .mypy_cache .ruff_cache

# SAM CLI in a virtualenv of its own (it pins its own boto3, pydantic and cfn-lint). `sam-check` validates
# and lints the template (also as CloudFormation gets it, after the SAM transform), builds every artifact
# into .aws-sam/build without Docker (the two layers: PythonLayer with mcpdo and its wheels, built once, and
# RuntimeLayer with Node and the runner; each function only its handler), then checks them: the wheels and
# bin/node for the template's architecture, the runner complete, each function plus its layers under
# Lambda's 250 MB. No AWS credentials are needed; SAM only wants a region. MAKEFLAGS is cleared so that the
# Makefiles SAM runs behave as under a plain `sam build`.
SAM_VENV := .sam-venv
SAM_CLI_VERSION := 1.170.0
SAM_STAMP := $(SAM_VENV)/.sam-cli-$(SAM_CLI_VERSION)
SAM_ENV := MAKEFLAGS= AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0

sam-setup: $(SAM_STAMP)

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $@

sam-check: setup $(SAM_STAMP)
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint
	$(SAM_ENV) $(SAM_VENV)/bin/python layers/build_check.py lint-transformed
	$(SAM_ENV) $(SAM_VENV)/bin/sam build
	$(BIN)/python layers/build_check.py check-build .aws-sam/build

sam-clean:
	rm -rf $(SAM_VENV) .aws-sam
