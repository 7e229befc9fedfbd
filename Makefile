# Quickstart on a fresh machine (Python 3.11 with venv):
#   make demo   # install into .venv, run the demo sweep, print its summary, write its report
#   make test   # install into .venv (with test tools), run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-all lint list clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The report is written even when a cell failed (it lists the failure); the exit code is then
# the sweep's.
demo: install
	$(BIN)/nlt-run -m +sweep=demo store=results/demo; status=$$?; \
	$(BIN)/nlt-report results/demo --out reports/demo && exit $$status

test: install
	$(BIN)/python -m pytest -q

# in-process tests only (no CLI processes): the tier to run while developing
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not cli"

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check .

list: install
	$(BIN)/nlt-list

clean:
	rm -rf results outputs multirun reports/latest reports/demo .pytest_cache
