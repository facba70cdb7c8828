# Parley in two commands:
#   make run    create .venv, install Parley, serve on 127.0.0.1:8000 (PARLEY_* env honoured)
#   make test   install with dev extras, then lint, format check, types and the test suite
# Needs only python3 (>= 3.11), make and network access to PyPI. Installs happen only when
# pyproject.toml changed since the last one (stamp files in .venv).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
PYTEST_ARGS ?=
SERVE_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test bench

run: $(VENV)/.installed-run
	exec $(BIN)/parley serve $(SERVE_ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/ruff check server streams tests
	$(BIN)/ruff format --check server streams tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

# A private Redis, Parley with 2 workers, the bare and naive-redis baselines: 1,000 and 2,000
# streams and a step search, then the targets table (6-10 minutes, both cores).
# BENCH_ARGS=--quick tries it in under a minute; BENCH_ARGS=--writers adds sse-starlette's writer;
# BENCH_ARGS=--cluster runs it on a private 3+3 Redis Cluster (naive-redis skipped).
bench: $(VENV)/.installed-run
	$(BIN)/python -m server.bench.suite $(BENCH_ARGS)

# Some distributions ship python3 without ensurepip: fall back to a bare venv plus the
# system pip installing pip into it.
$(BIN)/python:
	@echo "creating $(VENV)"
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV) && $(PYTHON) -m venv --without-pip $(VENV) \
		&& $(PYTHON) -m pip --python $(BIN)/python install --quiet pip; }

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "installing parley[embedded] into $(VENV)"
	$(PIP) install -e '.[embedded]'
	@touch $@

# The dev install is a superset of the run install, so it satisfies `make run` too.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "installing parley[dev,embedded] into $(VENV)"
	$(PIP) install -e '.[dev,embedded]'
	@touch $@ $(VENV)/.installed-run
