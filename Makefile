# `make repro` and `make test` set up .venv from the pinned lock file on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := true
export MPLBACKEND := Agg

.PHONY: setup repro test test-fast browser lint ui bench lock clean-venv show plots

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# `dvc repro` with a stage counter and, at the end, where the results are
# (pipeline/repro.py); REPRO_ARGS goes to `dvc repro` (e.g. REPRO_ARGS="-s summary").
repro: $(STAMP)
	python -m pipeline.repro $(REPRO_ARGS)

test: $(STAMP) browser
	ruff check .
	python -m pytest

test-fast: $(STAMP) browser
	python -m pytest -m "not e2e"

# The report's browser test (tests/test_report_browser.py) drives Debian's Chromium
# through Playwright (pinned in requirements.lock): Playwright's own browser download is
# not reachable everywhere. Installed here when missing (as root), else the command shown.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x "$(CHROMIUM)" || { \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
		else \
			echo "the report's browser test needs Chromium: sudo apt-get install -y chromium"; \
		fi; }

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

# MLflow 3.17 opens an experiment on its GenAI overview unless the address asks for the
# classic runs table: the printed link does
ui: $(STAMP)
	@echo "MLflow UI: open $$(python -m pipeline.tracking)"
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
	/tmp/xai-lock-venv/bin/pip install --quiet -e ".[dev,app]"
	/tmp/xai-lock-venv/bin/pip freeze --exclude-editable | grep -v "^-e" > requirements.lock

clean-venv:
	rm -rf $(VENV)

# The live explorer (pipeline/explorer/, README "The explorer"): the trained classifier's
# maps for a test image or an upload, computed on request, on http://127.0.0.1:8501 only.
# APP_ARGS goes to it (e.g. APP_ARGS="--port 8502 --model path/to/model.pt").
.PHONY: app
app: $(STAMP)
	python -m pipeline.explorer $(APP_ARGS)
