# `make repro` and `make test` set up .venv from the pinned lock file on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := true
export MPLBACKEND := Agg

.PHONY: setup repro test test-fast lint ui bench lock clean-venv show plots

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	ruff check .
	python -m pytest

test-fast: $(STAMP)
	python -m pytest -m "not e2e"

lint: $(STAMP)
	ruff check .
	ruff format --check .

# The runs side by side, headline numbers only, at most 120 columns; SHOW_ARGS goes to
# `dvc exp show` (e.g. SHOW_ARGS="-n 3" or "--all-commits").
show: $(STAMP)
	set -o pipefail; dvc exp show --json $(SHOW_ARGS) | python -m pipeline.show --width 120

# DVC's plots page with Vega inlined, so it draws offline; PLOTS_ARGS goes to
# `dvc plots` (e.g. PLOTS_ARGS="diff main my-exp"); default: show
plots: $(STAMP)
	python -m pipeline.offline_plots $(PLOTS_ARGS)

ui: $(STAMP)
	mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
		--default-artifact-root "$(CURDIR)/mlruns" --host 127.0.0.1 --port 5000

bench: $(STAMP)
	python benchmarks/lightning_overhead.py
	python benchmarks/lime_vs_package.py
	python benchmarks/road_speed.py
	# Quantus without its dependencies: they are pinned already, and its opencv-python
	# would overwrite the pinned opencv-python-headless (benchmarks/requirements.txt)
	$(PY) -m pip install --quiet --no-deps -r benchmarks/requirements.txt
	python benchmarks/cross_checks.py

# Re-pin every dependency from pyproject.toml's ranges (needs the package index).
lock:
	rm -rf /tmp/xai-lock-venv && python3 -m venv /tmp/xai-lock-venv
	/tmp/xai-lock-venv/bin/pip install --quiet --upgrade pip
	/tmp/xai-lock-venv/bin/pip install --quiet -e ".[dev]"
	/tmp/xai-lock-venv/bin/pip freeze --exclude-editable | grep -v "^-e" > requirements.lock

clean-venv:
	rm -rf $(VENV)
