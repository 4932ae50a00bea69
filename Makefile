# Tianluo — the two commands of the README, and the pieces they are made of.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo-data

.PHONY: demo test lint bench clean web

# Main job on the embedded default (no server): simulate a bank, ingest it, ingest the
# shared real data sets, print the data-quality summary.
demo: $(VENV)/.installed web
	rm -rf $(DEMO)/dataset
	$(BIN)/tianluo simulate --out $(DEMO)/source --transactions 300000 --persons 20000 \
	    --enterprises 2000 --days 90 --seed 7 --dataset $(DEMO)/dataset
	@if [ -d ../shared/data/amlsim-sample ]; then \
	    $(BIN)/tianluo ingest ../shared/data/amlsim-sample --dataset $(DEMO)/amlsim-dataset; fi
	$(BIN)/tianluo info $(DEMO)/dataset

# The whole test suite (what .ci/run calls).
test: $(VENV)/.installed web
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench

bench: $(VENV)/.installed
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/tokenization.py
	$(BIN)/python bench/tracing.py
	$(BIN)/python bench/graph_features.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The investigator UI: front-end packages from the npm registry, bundled into the Python
# package's static folder (served locally by `tianluo serve`, no CDN).
web:
	@if [ -x scripts/build-web.sh ]; then scripts/build-web.sh; fi

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
