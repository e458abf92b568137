# `make demo`: set up .venv (the package alone) and audit the bundled example runs.
# `make test`: set up .venv with every extra the tests use (CPU torch first, then TRL, trackers) and run them.
# `make docs`: regenerate docs/grammar.md and docs/diagrams/ from the grammar, and the code table.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-full

.PHONY: demo test bench docs clean

$(CORE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(CORE)

# torch before trl/transformers: the pinned version is a CPU build; installed later, pip would pull CUDA.
$(FULL): $(CORE)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,trl,tensorboard,mlflow,wandb]"
	touch $(FULL)

demo: $(CORE)
	$(BIN)/ruledsl audit examples/runs

# Two workers: most tests start the real command in a subprocess, and this machine has two cores.
test: $(FULL)
	$(BIN)/python -m pytest -q -n 2

docs: $(CORE)
	$(BIN)/ruledsl grammar --format markdown --output docs
	$(BIN)/python tools/update_docs.py

bench: $(FULL)
	$(BIN)/python benchmarks/batch.py --quick
	$(BIN)/python benchmarks/audit.py --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis
