# nyc311-pipeline: every set-up step lives here, so a fresh clone needs only `make demo` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_MONTH ?= $(shell date -u -d "$$(date -u +%Y-%m-01) -1 month" +%Y-%m)
DEMO_REQUESTS ?= 20000
DEMO_SEED ?= 311
# auto: testcontainers when a Docker engine answers, else the local services; or `local` / `docker`
NYC311_TEST_BACKEND ?= auto
PYTEST_ARGS ?=

.PHONY: help install services-up services-down services-status lint test test-unit demo clean

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

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy nyc311 producers consumers schemas storage reports

test-unit: $(STAMP)  ## the tests that need no services
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test: $(STAMP) lint  ## the whole suite against real Kafka and PostgreSQL
	@if [ "$(NYC311_TEST_BACKEND)" = docker ] || { [ "$(NYC311_TEST_BACKEND)" = auto ] && \
	    [ -z "$$KAFKA_BOOTSTRAP_SERVERS" ] && $(BIN)/python -c 'from tests.backends import docker_available as d; raise SystemExit(0 if d() else 1)' 2>/dev/null; }; then \
	  echo "using testcontainers (Docker engine found)"; \
	else bash services/services.sh up; fi
	NYC311_TEST_BACKEND=$(NYC311_TEST_BACKEND) $(BIN)/pytest $(PYTEST_ARGS)

demo: services-up  ## simulate a month end to end and show what the pipeline made of it
	$(BIN)/nyc311 db upgrade
	$(BIN)/nyc311 topics create
	$(BIN)/nyc311 simulate --month $(DEMO_MONTH) --requests $(DEMO_REQUESTS) --seed $(DEMO_SEED)
	$(BIN)/nyc311 run projector --until-caught-up --max-seconds 600
	@echo; echo "== what is in PostgreSQL now =="; $(BIN)/nyc311 db summary

clean:  ## remove the venv and caches (not the services' data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
