# Two entry points for a fresh machine: `make up` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install install-test lint typecheck frontend-test pytest bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)
	bash scripts/build-frontend.sh

up: install
	$(BIN)/hearth up

install-test: $(STAMP)
	bash scripts/install-test-deps.sh

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Builds the PWA (the browser tests load it) and runs its unit tests (Vitest).
frontend-test:
	bash scripts/build-frontend.sh
	cd frontend && npm test

pytest: $(STAMP)
	$(BIN)/pytest

test: install-test lint typecheck frontend-test pytest

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data
