# `make demo`: set up .venv with the TRL extra (CPU torch first) and run demo/huggingface_demo.py, the
#             ten-minute tour (offline, under a minute once installed; `--section N`, `--real`: see its --help).
# `make test`: install Chromium and a Java runtime when missing (Debian packages, tools/system_packages.sh),
#              set up .venv with every extra the tests use (CPU torch first, then TRL, trackers, Spark, Ray),
#              then `make lint`, `make docs-check`, `make pins-check` and the test suite; the first failure stops it.
# `make lint`: ruff and mypy (settings in pyproject.toml). `make docs-check`: docs/ is what the code generates.
# `make pins-check`: constraints.txt pins what is installed (tools/update_constraints.py rewrites it).
# `make docs`: regenerate docs/grammar.md and docs/diagrams/ from the grammar, and the code table.
# Installs are held to constraints.txt: the versions CI tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
CORE := $(VENV)/.installed-core
FULL := $(VENV)/.installed-full
DEMO := $(VENV)/.installed-demo

.PHONY: demo test system-packages lint docs-check pins-check bench docs clean

$(CORE): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(PIP) -e .
	touch $(CORE)

# torch before trl/transformers: the pinned version is a CPU build; installed later, pip would pull CUDA.
$(FULL): $(CORE)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev,trl,tensorboard,mlflow,wandb,spark,ray]"
	touch $(FULL)

# The demo builds a real GRPOConfig and calls the callback with transformers' TrainerState: the TRL extra,
# torch first for the same reason as above.
$(DEMO): $(CORE)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[trl]"
	touch $(DEMO)

demo: $(DEMO)
	$(BIN)/python demo/huggingface_demo.py

lint: $(FULL)
	$(BIN)/ruff check .
	$(BIN)/mypy

docs-check: $(FULL)
	$(BIN)/python tools/update_docs.py --check
	$(BIN)/python tools/build_metric_catalog.py --check

pins-check: $(FULL)
	$(BIN)/python tools/update_constraints.py --check

# Chromium (the report's browser tests) and a Java runtime (Spark), from Debian's packages when missing.
system-packages:
	tools/system_packages.sh

# Two workers: most tests start the real command in a subprocess, and this machine has two cores.
# pytest exits 5 when it collected no test: that fails here like any other non-zero status.
test: system-packages lint docs-check pins-check
	$(BIN)/python -m pytest -q -n 2

docs: $(CORE)
	$(BIN)/ruledsl grammar --format markdown --output docs
	$(BIN)/python tools/update_docs.py

bench: $(FULL)
	$(BIN)/python benchmarks/batch.py --quick
	$(BIN)/python benchmarks/audit.py --quick

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis .mypy_cache .ruff_cache
