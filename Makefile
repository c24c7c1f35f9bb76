# flotte — the two commands that matter on a fresh clone are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint deps venv clean

deps:
	@PYTHON=$(PYTHON) bash scripts/system-deps.sh

$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: deps venv
	$(BIN)/python -m flotte.demo

test: deps venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 -q

bench: deps venv
	$(BIN)/python bench/run.py

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
