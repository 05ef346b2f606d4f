# The two commands of the README, plus the checks CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: ingest the bundled sample PDFs end to end on the embedded default, then search
demo: $(STAMP)
	DOCINGEST_HOME=$${DOCINGEST_HOME:-.docingest/demo} $(BIN)/docingest ingest examples/
	DOCINGEST_HOME=$${DOCINGEST_HOME:-.docingest/demo} $(BIN)/docingest search "out-of-pocket limit for a specialist visit" -k 3

## make test: lint, type-check, and the whole test suite (unit, integration, end to end)
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/ingest_e2e.py
	$(BIN)/python bench/status_latency.py
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) .docingest .pytest_cache .mypy_cache .ruff_cache
