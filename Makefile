# Switchyard: `make run` builds and starts the gateway on conf/switchyard.yaml;
# `make test` runs the whole test suite; `make bench` the benchmark.

CARGO ?= cargo
VENV := .venv
PYTHON ?= python3

.PHONY: run build test lint unit e2e bench deps venv

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build --release

run: build
	./target/release/switchyard -c conf/switchyard.yaml

$(VENV)/.installed: tests/e2e/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
	touch $@

venv: $(VENV)/.installed

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: deps
	$(CARGO) test --workspace

e2e: deps venv
	$(CARGO) build
	SWITCHYARD_BIN=$(CURDIR)/target/debug/switchyard $(VENV)/bin/python -m pytest -q tests/e2e

test: lint unit e2e

bench: deps
	bench/run.sh
