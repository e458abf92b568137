"""The layout's arrows, read off the import graph: which stage may import which.

Every `import`/`from … import` of a module under ruledsl/ counts, at any depth of
the file (a lazy import inside a function is still a dependency), except those
under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ruledsl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The ruledsl modules `path` imports (absolute names), TYPE_CHECKING blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
               for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the code uses absolute ruledsl.… imports)"
            found.add(node.module or "")
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name == "ruledsl" or name.startswith("ruledsl.")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def importers(prefix: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in GRAPH.items() if m == prefix or m.startswith(prefix + ".")}


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# stage → what it may import besides itself (the arrows of the README's layout)
ALLOWED = {
    "ruledsl.lang": ("ruledsl.resources",),
    "ruledsl.alerts": (),
    "ruledsl.model": ("ruledsl.lang", "ruledsl.alerts", "ruledsl.resources"),
    "ruledsl.compile": ("ruledsl.lang", "ruledsl.model"),
    "ruledsl.engines.live": ("ruledsl.lang", "ruledsl.model", "ruledsl.compile", "ruledsl.alerts"),
    "ruledsl.engines.batch": ("ruledsl.lang", "ruledsl.model", "ruledsl.compile", "ruledsl.alerts",
                              "ruledsl.readers"),
}


@pytest.mark.parametrize("stage", ALLOWED)
def test_a_stage_imports_only_what_comes_before_it(stage):
    allowed = (stage, *ALLOWED[stage])
    wrong = {f"{m} imports {d}" for m, deps in importers(stage).items() for d in deps
             if not within(d, *allowed) and d != "ruledsl"}
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("one, other", [("ruledsl.engines.batch", "ruledsl.engines.live"),
                                        ("ruledsl.engines.live", "ruledsl.engines.batch")])
def test_the_engines_never_import_each_other(one, other):
    wrong = {f"{m} imports {d}" for m, deps in importers(one).items() for d in deps if within(d, other)}
    assert not wrong, sorted(wrong)


def test_the_graph_is_read():
    """The test above would pass on an empty graph: make sure it saw the real arrows."""
    assert "ruledsl.lang.ast" in GRAPH["ruledsl.lang.checker"]
    assert "ruledsl.compile" in GRAPH["ruledsl.engines.live.monitor"]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.subprocess  # a fresh interpreter: this one has imported everything already
def test_import_ruledsl_loads_nothing_heavy():
    loaded = _modules_after("import ruledsl")
    assert not loaded & {"polars", "jsonschema", "lark", "transformers", "yaml"}


@pytest.mark.subprocess
def test_the_live_path_loads_neither_polars_nor_jsonschema():
    """What a training process runs: the builtin rules compiled and evaluated by the Monitor."""
    loaded = _modules_after("import ruledsl; m = ruledsl.Monitor(ruledsl.load_rules(), trainer='grpo'); "
                            "m.update(1, {'loss': 1.0})")
    assert "ruledsl.engines.live.monitor" in loaded
    assert not loaded & {"polars", "jsonschema", "ruledsl.engines.batch"}


@pytest.mark.subprocess
@pytest.mark.trl
def test_the_callback_module_loads_neither_polars_nor_jsonschema():
    pytest.importorskip("transformers")
    loaded = _modules_after("import ruledsl.integrations.callback")
    assert "transformers" in loaded
    assert not loaded & {"polars", "jsonschema"}
