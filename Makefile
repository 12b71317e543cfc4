# Liaison — developer entry points. Needs only python3 (>= 3.11, with venv) and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
VECTORS ?= ../shared/mls/test-vectors

.PHONY: install test run run-second lint vectors bench

install: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

test: install
	$(PY) -m pytest -n auto --dist worksteal -m "not browser"
	$(PY) -m pytest -m browser

# The app on a local demonstration relay (seeded on first run), signed in as a physician;
# run-second opens another instance as a nurse, to chat between the two. ARGS passes options
# (e.g. ARGS="--web --port 8550").
run: install
	$(PY) -m app $(ARGS)

run-second: install
	$(PY) -m app --as chloe $(ARGS)

lint: install
	$(PY) -m ruff check .

vectors: install
	$(PY) -m crypto.vectors $(VECTORS)

bench: install
	$(PY) bench/crypto_bench.py
	$(PY) bench/relay_bench.py
	$(PY) bench/storage_bench.py
	$(PY) bench/e2e_bench.py
	$(PY) bench/ui_bench.py
