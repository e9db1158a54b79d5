# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NATIVE := $(VENV)/.native
EXPLORER := sinks/explorer/web
BUNDLE := sinks/explorer/static/explorer.bundle.js
PYTEST_ARGS ?=

.PHONY: install demo test test-unit stop down status bench typecheck clean help

help:
	@echo "make demo   - install, start the local stack and pipeline, run the lending scenario, print answers"
	@echo "make test   - install (and build the schema registry), start the test stack, run unit + integration tests, stop it"
	@echo "make down   - stop everything the stack started"
	@echo "make bench  - run every benchmark suite (lineage bench)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,dev]'
	touch $(STAMP)

# The compiled decoder (native/, Rust + PyO3), built from source by pip through its maturin backend.
$(NATIVE): $(STAMP) native/pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs native/python/lineage_native/*.py)
	$(BIN)/pip install --quiet ./native
	touch $(NATIVE)

# The explorer's browser bundle (cytoscape.js + dagre, pinned by package-lock.json), built with esbuild.
$(BUNDLE): $(EXPLORER)/package.json $(EXPLORER)/package-lock.json $(EXPLORER)/src/explorer.js
	cd $(EXPLORER) && npm ci --no-audit --no-fund && npm run build

install: $(STAMP) $(NATIVE) $(BUNDLE)
	$(BIN)/lineage stack install

demo: install
	$(BIN)/lineage demo

test: install
	$(BIN)/lineage stack install --registry
	bash deploy/install-browser.sh
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(NATIVE)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

stop down:
	$(BIN)/lineage stack down

status:
	$(BIN)/lineage stack status

bench: install
	$(BIN)/lineage bench

typecheck: $(STAMP)
	$(BIN)/mypy

clean: down
	rm -rf .lineage .lineage-test
