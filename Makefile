# Two entry points: `make run` (the demo) and `make test` (every check). Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck layers browser unit bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gpuherd demo

test: lint typecheck layers browser unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# The plan's HTML is checked by a screenshot in headless Chromium: install it where we can
# (CI runs as root on Debian); elsewhere that one test reports itself skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } \
		|| echo "note: chromium not installed; the HTML screenshot test will be skipped"

unit: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/python -m gpuherd.lint.docs docs/rules.md

bench: $(STAMP)
	$(BIN)/python bench/sim_backend.py
	$(BIN)/python bench/scheduler.py
	$(BIN)/python bench/broker.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
