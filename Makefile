# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-min lint bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/vtmon demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check vtmon tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The suite against the lowest versions pyproject.toml allows (.ci/minimum-versions.txt), in
# a venv of its own, so that a lower bound is one that works.
MIN := .venv-min
test-min:
	test -x $(MIN)/bin/python || $(PYTHON) -m venv $(MIN)
	$(MIN)/bin/python -m pip install --quiet -c .ci/minimum-versions.txt -e '.[test]'
	$(MIN)/bin/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff format vtmon tests bench
	$(BIN)/ruff check --fix vtmon tests bench

# Every benchmark prints its own lines; the rows for the closing table (figure, goal,
# measured, baseline in the same run) go to $(RESULTS) and bench/table.py prints them.
RESULTS := .bench/results.jsonl

bench: $(VENV)/.installed-test
	mkdir -p .bench && rm -f $(RESULTS)
	export VTMON_BENCH_RESULTS=$(CURDIR)/$(RESULTS); \
	$(BIN)/python bench/engine.py && \
	$(BIN)/python bench/parse.py && \
	$(BIN)/python bench/ingest.py && \
	$(BIN)/python bench/binary.py && \
	$(BIN)/python bench/client.py && \
	$(BIN)/python bench/store.py && \
	$(BIN)/python bench/history.py && \
	$(BIN)/python bench/prometheus.py && \
	$(BIN)/python bench/report.py && \
	$(BIN)/python bench/console.py && \
	$(BIN)/python bench/latency_panel.py && \
	$(BIN)/python bench/flood.py && \
	$(BIN)/python bench/soak.py && \
	$(BIN)/python bench/series.py && \
	$(BIN)/python bench/table.py $(RESULTS)

screenshots: $(VENV)/.installed-test
	$(BIN)/python screenshots/make.py

clean:
	rm -rf $(VENV) $(MIN) .pytest_cache .ruff_cache
