# `make demo`: set up .venv and audit the bundled example runs.
# `make test`: set up .venv and run the whole test suite.
# `make docs`: regenerate docs/grammar.md and docs/diagrams/ from the grammar, and the code table.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,trl,tensorboard,mlflow,wandb]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ruledsl audit examples/runs

test: $(STAMP)
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	$(BIN)/ruledsl grammar --format markdown --output docs
	$(BIN)/python tools/update_docs.py

bench: $(STAMP)
	$(BIN)/python benchmarks/batch.py --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
