# `make demo`: set up .venv and audit the bundled example runs.
# `make test`: set up .venv and run the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ruledsl audit examples/runs

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/batch.py --quick
	$(BIN)/python benchmarks/audit.py --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
