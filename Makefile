# taxaddr — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TAXADDR := $(BIN)/taxaddr
# Debian packages the test suite drives for real: PostgreSQL, Chromium (dashboard),
# Prometheus + promtool, SoftHSM2 (PKCS#11), poppler-utils (pdftotext), HAProxy (deploy/cluster).
TEST_SYSTEM_PACKAGES := postgresql chromium prometheus softhsm2 poppler-utils haproxy
PYTEST_ARGS ?=

.PHONY: run test venv sysdeps lint typecheck imports unit bench clean cluster cluster-stop

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

sysdeps:
	@missing=""; for p in $(TEST_SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: venv
	bash deploy/dev/run.sh

lint: venv
	$(BIN)/ruff check service tests bench migrations deploy

typecheck: venv
	$(BIN)/mypy

# The package layers and "no domain package imports an edge" (pyproject.toml).
imports: venv
	$(BIN)/lint-imports

test: sysdeps venv lint typecheck imports
	$(BIN)/pytest -p xdist -n 2 --dist loadgroup --cov --cov-report=term --cov-fail-under=80 $(PYTEST_ARGS)

# Quick mode (bounded: each benchmark at most 300 s); `$(BIN)/python bench/run_all.py --full`
# runs the issue-sized figures. Prints the table of docs/performance.md.
bench: venv
	$(BIN)/python bench/run_all.py

# deploy/compose.yaml's topology from real processes on this machine (deploy/cluster):
# PostgreSQL, 2 OPA, CLUSTER_REPLICAS taxaddr replicas, HAProxy, Prometheus in var/cluster.
CLUSTER_REPLICAS ?= 3
cluster: sysdeps venv
	$(BIN)/python -m deploy.cluster start --state var/cluster --replicas $(CLUSTER_REPLICAS)

cluster-stop: venv
	$(BIN)/python -m deploy.cluster stop --state var/cluster

clean:
	rm -rf $(VENV) var .coverage* htmlcov
