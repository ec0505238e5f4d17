# Two entry points on a fresh machine: `make demo` and `make test`.
# Each builds the project's virtualenv first (once); downloads are cached under $(CACHE).
PYTHON ?= python3
VENV   ?= .venv
CACHE  ?= $(HOME)/.cache/nbdeploy
BIN    := $(VENV)/bin
export PIP_CACHE_DIR := $(CACHE)/pip
export NBDEPLOY_CACHE := $(CACHE)
export npm_config_cache := $(CACHE)/npm

BINDER ?= .venv-binder
NB_RUN := $(CACHE)/notebooks-run

.PHONY: demo test lint typecheck unit notebooks bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build on disk. An unpinned torch pulls GBs of CUDA.
	$(BIN)/pip install -q torch==2.13.0
	# TensorFlow the same way: the CPU build, on disk here (the `tensorflow` extra leaves
	# the flavour to the user). TF Serving's stubs without the full tensorflow they require.
	$(BIN)/pip install -q tensorflow-cpu==2.21.0
	$(BIN)/pip install -q -e '.[all,test,bench]'
	$(BIN)/pip install -q --no-deps tensorflow-serving-api==2.21.0
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

# The tutorials, executed headless in an environment installed exactly as binder/ says.
$(BINDER)/.installed: binder/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BINDER)
	$(BINDER)/bin/pip install -q --upgrade pip
	# download.pytorch.org is not reachable from every machine (pip then takes torch from
	# PyPI or a local wheel): one retry, not five with backoff, for each package it asks.
	PIP_RETRIES=1 $(BINDER)/bin/pip install -q -r binder/requirements.txt
	touch $@

notebooks: $(BINDER)/.installed
	rm -rf $(NB_RUN) && mkdir -p $(NB_RUN) && cp notebooks/*.ipynb $(NB_RUN)/
	cd $(NB_RUN) && for book in *.ipynb; do \
		echo "executing $$book"; \
		$(CURDIR)/$(BINDER)/bin/jupyter execute --timeout 900 "$$book" || exit 1; \
	done

test: lint typecheck unit notebooks

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(BINDER) .mypy_cache .ruff_cache .pytest_cache
