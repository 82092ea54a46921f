# Two entry points: `make run` (agent on built-in defaults) and `make test` (everything the
# tests need, then the whole suite). Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Real tools the tests run against (Debian packages).
TEST_PACKAGES := prometheus prometheus-node-exporter wrk

.PHONY: run test test-deps lint bench clean

$(BIN)/hostagent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/hostagent
	$(BIN)/hostagent

test-deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES)

lint: $(BIN)/hostagent
	$(BIN)/ruff check agent tests bench
	$(BIN)/mypy

test: test-deps $(BIN)/hostagent lint
	$(BIN)/pytest -q

bench: $(BIN)/hostagent
	$(BIN)/python bench/scrape.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
