"""A wheel built from the repo works in a fresh virtual environment, data directories included."""

import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]  # pip builds a wheel into a fresh venv; its script runs


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("hatchling", reason="building the wheel without build isolation needs hatchling (the dev "
                        "extra)")
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(work / "dist")], check=True, timeout=300)
    wheel = next((work / "dist").glob("ruledsl-*.whl"))
    env_dir = work / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    # The dependencies come from the test environment's site-packages; ruledsl itself must come from
    # the fresh environment (PYTHONPATH does not read the editable install's .pth file).
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": f"{env_dir / 'bin'}:/usr/bin:/bin"}
    return python, env


def test_the_wheel_carries_grammar_rules_and_schemas(fresh_install, tmp_path):
    python, env = fresh_install
    script = """
import json, ruledsl, polars as pl
from ruledsl.resources import data_dir
from ruledsl.model.loader import load_rules
rules = load_rules()
frame = pl.DataFrame({"step": [1, 2, 3], "loss": [1.0, float("nan"), float("nan")]})
records = ruledsl.audit(frame, rules + ["sft: loss nonfinite -> critical: boom"], trainer="sft")
print(json.dumps({"file": ruledsl.__file__, "grammar": str(data_dir("grammar")),
                  "schema": (data_dir("schemas") / "rule.schema.json").is_file(), "rules": len(rules),
                  "fired": sorted(set(records["rule"]))}))
"""
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    site = str(python.parent.parent)
    assert facts["file"].startswith(site) and facts["grammar"].startswith(site)
    assert facts["schema"] and facts["rules"] >= 10
    assert "loss_nonfinite" in facts["fired"] and any(r.startswith("inline_loss_") for r in facts["fired"])


def test_the_console_script_runs_from_the_wheel(fresh_install, tmp_path):
    python, env = fresh_install
    result = subprocess.run([python.parent / "ruledsl", "audit", str(ROOT / "examples" / "runs" / "sft_nan"),
                             "--format", "json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert {r["rule"] for r in json.loads(result.stdout)} >= {"loss_nonfinite", "grad_norm_nonfinite"}


def test_lint_and_test_of_the_packaged_library(fresh_install, tmp_path):
    """The schema, the metric catalog and the rules' test cases are all found inside the wheel."""
    python, env = fresh_install
    lint = subprocess.run([python.parent / "ruledsl", "lint", "--strict"], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert lint.returncode == 0 and "no problems" in lint.stdout, lint.stdout + lint.stderr
    tests = subprocess.run([python.parent / "ruledsl", "test"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert tests.returncode == 0 and tests.stdout.splitlines()[-1].endswith("passed, 0 failed"), tests.stdout


def test_the_grammar_reference_generates_from_the_wheel(fresh_install, tmp_path):
    python, env = fresh_install
    result = subprocess.run([python.parent / "ruledsl", "grammar", "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "grammar.md").read_bytes() == (ROOT / "docs" / "grammar.md").read_bytes()
