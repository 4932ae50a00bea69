# Tianluo — the two commands of the README, and the pieces they are made of.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := demo-data

.PHONY: demo test lint bench clean web

# Main job on the embedded default (no server to install): simulate a bank with injected
# crime, ingest it (PII tokenized, sealed in the workspace's vault), train and register the model on its
# ground truth (settled, T+1), run detection (rules, miners, the model), bring the
# alerts into the case store, ingest the shared real data sets, then serve the API and the
# investigator UI at http://127.0.0.1:8000/ (Ctrl-C stops it; DEMO_SERVE=0 skips serving).
DEMO_PASSWORD ?= tianluo-demo-2026
DEMO_SERVE    ?= 1
DEMO_PORT     ?= 8000
WS            := $(DEMO)/workspace
demo: $(VENV)/.installed web
	rm -rf $(DEMO)
	$(BIN)/tianluo workspace init $(WS) --tenant DEMO_BANK --name "天罗示范银行 Tianluo Demo Bank" --ricd C1000000000001 \
	    --goaml-rentity-id 1000
	$(BIN)/tianluo simulate --out $(DEMO)/source --transactions 300000 --persons 20000 \
	    --enterprises 2000 --days 90 --seed 7 --dataset $(DEMO)/dataset --vault $(WS)/vaults/demo.sqlite
	$(BIN)/tianluo workspace add-dataset $(WS) demo $(DEMO)/dataset --tenant DEMO_BANK --no-sync
	$(BIN)/tianluo train $(DEMO)/dataset
	$(BIN)/tianluo detect $(DEMO)/dataset --workspace $(WS)
	@for u in analyst:analyst senior:senior admin:admin auditor:auditor supervisor:supervisor; do \
	    echo "$(DEMO_PASSWORD)" | $(BIN)/tianluo workspace add-user $(WS) $${u%%:*} --role $${u##*:} \
	        --tenant DEMO_BANK --password-stdin; done
	@if [ -d ../shared/data/amlsim-sample ]; then \
	    $(BIN)/tianluo ingest ../shared/data/amlsim-sample --dataset $(DEMO)/amlsim-dataset; fi
	$(BIN)/tianluo info $(DEMO)/dataset
	@echo "Users analyst, senior, admin, auditor, supervisor; password: $(DEMO_PASSWORD) (demo only)"
	@if [ "$(DEMO_SERVE)" = 1 ]; then $(BIN)/tianluo serve --workspace $(WS) --port $(DEMO_PORT); fi

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
