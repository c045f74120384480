# nyc311-pipeline: every set-up step lives here, so a fresh clone needs only `make demo` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the npm project of the browser tests' tools (axe-core); the stamp is newer than its lock file
BROWSER_TOOLS := tests/browser
AXE_STAMP := $(BROWSER_TOOLS)/node_modules/.installed
DEMO_MONTH ?= $(shell TZ=America/New_York date +%Y-%m)
DEMO_REQUESTS ?= 20000
DEMO_SEED ?= 311
# where `make test` runs the whole suite: local (the processes of `make services-up`) or docker
# (testcontainers, from the local images where the registry's are missing)
NYC311_TEST_BACKEND ?= local
# the Docker checks at the end of `make test`: auto (where an engine answers or can be started), yes, no
NYC311_DOCKER ?= auto
PYTEST_ARGS ?=
BENCH_ARGS ?=
IMPORT_BENCH_ARGS ?=
# `make bench`'s importer step follows BENCH_ARGS: with --smoke it runs on a 2,000-row export and
# only prints its section, as `python -m benchmarks --smoke` leaves RESULTS.md alone; otherwise it
# appends the full section to RESULTS.md. IMPORT_BENCH_ARGS come after these, so they win.
BENCH_IMPORT := $(if $(filter --smoke,$(BENCH_ARGS)),--rows 2000,--append benchmarks/RESULTS.md)

.PHONY: help install services-up services-down services-status browser axe lint test test-unit demo bench images compose-test test-docker docker-down clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "python3 (3.11+) is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its dev tools

services-up: $(STAMP)  ## start Kafka (KRaft) and PostgreSQL locally; write .env.services
	bash services/services.sh up

services-down:  ## stop the local services (data kept; services/services.sh down --purge deletes it)
	bash services/services.sh down

services-status:  ## show whether the local services run
	bash services/services.sh status

browser:  ## Debian's Chromium for the browser tests (installed with apt-get when missing)
	@if [ -x /usr/bin/chromium ]; then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "installing Debian's chromium for the browser tests"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null

$(AXE_STAMP): $(BROWSER_TOOLS)/package.json $(BROWSER_TOOLS)/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian's npm for the browser tests' tools"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq npm >/dev/null; \
	fi
	cd $(BROWSER_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

axe: $(AXE_STAMP)  ## axe-core for the accessibility tests (npm ci in tests/browser when missing or outdated)

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy nyc311 schemas survey storage producers consumers reports operations cli benchmarks

test-unit: $(STAMP)  ## the tests that need no services
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test: $(STAMP) lint browser axe  ## the whole suite on local processes, then the Docker checks where an engine can run (NYC311_DOCKER=auto|yes|no)
	@if [ "$(NYC311_TEST_BACKEND)" != docker ]; then bash services/services.sh up; fi
	NYC311_TEST_BACKEND=$(NYC311_TEST_BACKEND) $(BIN)/pytest $(PYTEST_ARGS)
	NYC311_DOCKER=$(NYC311_DOCKER) bash deploy/docker.sh checks

demo: services-up  ## the main job end to end on a simulated month (surveys sent and answered)
	DEMO_MONTH=$(DEMO_MONTH) DEMO_REQUESTS=$(DEMO_REQUESTS) DEMO_SEED=$(DEMO_SEED) bash demo/run.sh

bench: services-up  ## benchmark a NYC-scale month and the history backfill against the machine's limits; writes benchmarks/RESULTS.md (BENCH_ARGS=…, IMPORT_BENCH_ARGS=…; BENCH_ARGS=--smoke: both small, printed only)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.importer $(BENCH_IMPORT) $(IMPORT_BENCH_ARGS)

images: $(STAMP)  ## Docker images with no registry: a Debian base (debootstrap, cached), the app, stand-ins for Kafka, PostgreSQL, MinIO, Prometheus and a mail catcher (deploy/docker.sh)
	bash deploy/docker.sh engine-up >/dev/null
	bash deploy/docker.sh images

compose-test: $(STAMP)  ## docker-compose.yml's whole stack end to end on a Docker engine (started when none answers; images built first)
	NYC311_DOCKER=yes bash deploy/docker.sh checks compose

test-docker: $(STAMP)  ## the integration tests of consumers/ and reports/ on testcontainers (a Docker engine, the local images)
	NYC311_DOCKER=yes bash deploy/docker.sh checks backend

docker-down:  ## stop the Docker engine that `make images` started (never one it did not start)
	bash deploy/docker.sh engine-down

clean:  ## remove the venv and caches (not the services' data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(BROWSER_TOOLS)/node_modules
