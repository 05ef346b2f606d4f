# The two commands of the README, plus the checks CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint layers typecheck check bench clean browser lock bytecode

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## the package's bytecode, written ahead: where PYTHONDONTWRITEBYTECODE is set (as on the
## machines this project is built on) every process start would otherwise compile ~110
## modules from source (~0.1 s of CPU each time: every worker, API, CLI command and test
## subprocess). Only stale files are compiled again: ~0.05 s when nothing changed.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src

## make demo: ingest the bundled sample PDFs end to end on the embedded default, then search.
## Same home as every later `docingest` command ($DOCINGEST_HOME, default ./.docingest), so
## `.venv/bin/docingest search "..."` afterwards finds the demo's documents.
demo: $(STAMP) bytecode
	$(BIN)/docingest ingest examples/
	$(BIN)/docingest search "how much is a specialist copay" -k 3

## make test: lint, type-check, and the whole test suite (unit, integration, end to end), on
## two pytest-xdist processes (each with its own PostgreSQL): the suite mostly waits on the
## servers it starts (in one process: 7.5 CPU-minutes in 13 minutes of wall time on two
## cores), so two finish it in about 55 % of the time (7-7.5 min there). The slowest tests
## start first (marked `slow`, tests/conftest.py).
test: $(STAMP) bytecode browser lint layers typecheck
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

## Debian's headless Chromium for tests/e2e/test_dashboard_browser.py (Playwright drives it; it
## cannot download browsers here). Installed only when missing, through apt (as root, or with
## sudo when that works without a password); otherwise the browser test says what to install.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

## the import-linter layer contracts of pyproject.toml ([tool.importlinter])
layers: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## make lock: pin every runtime dependency with its sha256 (requirements.lock, used by the
## Dockerfile). Run it after changing [project.dependencies]; a unit test checks they agree.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet -o requirements.lock

bench: $(STAMP)
	$(BIN)/python bench/ingest_e2e.py
	$(BIN)/python bench/status_latency.py
	$(BIN)/python bench/embed_throughput.py

clean:
	rm -rf $(VENV) .docingest .pytest_cache .mypy_cache .ruff_cache
