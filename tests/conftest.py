"""Test-suite configuration: the markers that let a contributor pick the fast core.

    pytest -m "not slow and not trl and not subprocess"   # the fast core
    pytest -m "not slow"                                  # everything but the slow tests
    pytest -n 2                                           # everything (`make test`)

The same markers are listed in pyproject.toml ([tool.pytest.ini_options]), where
--strict-markers turns a misspelt marker into an error; registering them here too
keeps them known when pytest is run with another configuration file (-c).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

MARKERS = {
    "trl": "needs the TRL extra (torch, transformers, trl, accelerate, datasets); skipped without it",
    "slow": "takes more than a few seconds (a real training run, a wheel build, a long property search)",
    "subprocess": "starts the real `ruledsl` console script or another process (pty, fresh interpreter, venv)",
}

# Modules marked `trl` and `slow` as a whole, which import torch and trl when they are collected
# (seconds). When the -m expression cannot select any of their tests, they are not even imported.
TRL_MODULES = {"test_callback_trl.py", "test_callback_trackers.py"}
TRL_MODULE_MARKS = frozenset({"trl", "slow"})


def pytest_configure(config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    if collection_path.name in TRL_MODULES and selects_none(config.getoption("markexpr"), TRL_MODULE_MARKS):
        return True
    return None  # pytest decides, as without this hook


def selects_none(markexpr: str, marks: frozenset[str]) -> bool:
    """True when no test carrying `marks` can match the -m expression, whatever other marks it has
    (every combination of the other names in the expression is tried). False when unsure."""
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression  # pytest's own parser of -m (not public API)

        expression = Expression.compile(markexpr)
    except Exception:  # moved in this pytest, or a malformed expression (which pytest itself reports)
        return False
    others = sorted(set(re.findall(r"[A-Za-z_][\w.]*", markexpr)) - marks - {"and", "or", "not"})
    if len(others) > 8:
        return False
    for values in itertools.product((False, True), repeat=len(others)):
        present = marks | {name for name, value in zip(others, values) if value}

        def matcher(name: str, /, present: frozenset[str] = present, **kwargs) -> bool:
            return name in present and not (kwargs and name in marks)  # the module marks take no arguments

        try:
            if expression.evaluate(matcher):
                return False
        except Exception:
            return False
    return True
