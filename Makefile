# Two entry points on a fresh machine: `make demo` and `make test`.
# Each builds the project's virtualenv first (once); downloads are cached under $(CACHE).
PYTHON ?= python3
VENV   ?= .venv
CACHE  ?= $(HOME)/.cache/nbdeploy
BIN    := $(VENV)/bin
export PIP_CACHE_DIR := $(CACHE)/pip
export NBDEPLOY_CACHE := $(CACHE)
export npm_config_cache := $(CACHE)/npm

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build on disk. An unpinned torch pulls GBs of CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,test,bench]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/nbdeploy demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd labextension && npm run --silent lint

typecheck: $(BIN)/.installed
	$(BIN)/mypy

unit: $(BIN)/.installed
	$(BIN)/pytest

test: lint typecheck unit

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
