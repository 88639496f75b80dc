# The two entry points a newcomer needs: `make reproduce` and `make test`.
# Both create or reuse .venv in the repository root and install the pinned dependencies.
# `make test` also builds the documentation site (mkdocs.yml, docs/) into site/, strictly.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ephys2tx-installed
# Read the public tables from the local mirror when one sits beside the repository.
MIRROR ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),)
export EPHYS2TX_MIRROR ?= $(MIRROR)
OUT ?= results
# pytest-xdist workers for `make test` (tests/conftest.py groups the tests that share a model)
TEST_WORKERS ?= 2

.PHONY: install reproduce quick demo test docs lint format bench

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	# compile UMAP's numba functions into their disk cache once (~20 s of CPU), not in a first run
	$(BIN)/python -c "from ephys2tx.representations.embedding import compile_umap; compile_umap()"
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/ephys2tx reproduce --out $(OUT)

quick: $(STAMP)
	$(BIN)/ephys2tx reproduce --quick --out $(OUT)-quick

demo: $(STAMP)
	$(BIN)/ephys2tx demo --out demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_forest.py
