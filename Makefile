# LogGuardian — the two commands: `make run` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,train
# One stamp per extras set: a `make run` (dev) install must not stand in for the
# `make test` one (dev,train).
STAMP  := $(VENV)/.installed-$(EXTRAS)
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-fast demo lint bench services clean lint-only plugin

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

# Runs the sidecar on embedded defaults: no external servers needed. Every receiver
# listens on 127.0.0.1 only (closed by default; README "Security").
run: $(DEV_STAMP)
	$(BIN)/logguardian serve

demo: $(DEV_STAMP)
	$(BIN)/logguardian demo

# Installs everything the tests need (Python deps, Prometheus/Alertmanager, the
# Elasticsearch runner, Helm) and runs the whole suite. Missing services fail.
test: $(STAMP) services lint-only plugin
	$(BIN)/pytest

# The inner loop: no external services or tools (not `integration`, not `external`).
test-fast: $(STAMP) lint-only
	$(BIN)/pytest -m "not integration and not external"

# The Grafana app + datasource plugin: clean install from the lock file, lint,
# typecheck, jest, production build, catalog zip, and the harness page the browser
# test (tests/test_grafana_plugin.py) opens.
plugin: grafana-plugin/node_modules/.installed
	cd grafana-plugin && npm run lint && npm run typecheck && npm run test:ci && npm run build \
		&& npm run package && npm run build:harness

# `npm ci` from the committed lock file (always on a clean clone; again when the lock changes).
grafana-plugin/node_modules/.installed: grafana-plugin/package-lock.json
	cd grafana-plugin && npm ci --no-audit --no-fund
	touch $@

services:
	bash tests/services/install.sh

lint: $(STAMP) lint-only

lint-only:
	$(BIN)/ruff check sidecar tests bench
	$(BIN)/ruff format --check sidecar tests bench

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

# Rebuilds the small model bundle shipped with the package (HDFS block sessions).
default-bundle: $(STAMP)
	$(BIN)/python ../shared/tools/hdfs_replay.py --normal ../shared/data/hdfs/train_normal.txt \
		--seed 1 > $(VENV)/hdfs-train.log
	$(BIN)/logguardian train $(VENV)/hdfs-train.log --session-key 'blk_-?\d+' \
		--out sidecar/logguardian/default_bundle

clean:
	rm -rf $(VENV) logguardian-state .pytest_cache .ruff_cache grafana-plugin/node_modules \
		grafana-plugin/dist grafana-plugin/harness-dist
