"""The `ruledsl` command on real files: in-process (cli_helpers.ruledsl), and a few smoke tests
of the real console script and of `python -m ruledsl` in a subprocess (marked `subprocess`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import EXAMPLES, ROOT, ruledsl
from ruledsl import __version__

REAL_LOGS = Path(__file__).parent / "data" / "real_trl_logs"
BROKEN_RULE = "name: bad\ntrainers: [all]\nmetric: loss\ncondition: '<'\nseverity: high\nmessage: m\n"


def test_help_teaches():
    result = ruledsl("audit", "--help")
    assert result.returncode == 0
    for option in ("--rules", "--alert", "--format", "--fail-on", "--trainer", "--no-builtin"):
        assert option in result.stdout


def test_audit_examples_as_json():
    result = ruledsl("audit", str(EXAMPLES), "--format", "json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert all(list(r) == ["run", "rule", "severity", "trainer", "metric", "first_step", "last_step",
                           "n_evals", "value", "message"] for r in records)
    found = {(r["run"], r["rule"], r["first_step"]) for r in records}
    assert ("grpo_is_collapse", "grpo_is_ratio_collapse", 440) in found
    assert ("sft_nan", "loss_nonfinite", 520) in found
    assert ("dpo_stuck", "dpo_loss_stuck_ln2", 220) in found  # 80 steps after the warm-up: examples/README.md
    assert not any(r["run"] == "dpo_healthy" for r in records)
    nan_values = [r["value"] for r in records if r["rule"] == "loss_nonfinite"]
    assert nan_values == ["nan"]  # non-finite values as strings in JSON (docs/language.md §4)
    assert records == sorted(records, key=lambda r: (r["run"], r["first_step"], r["rule"]))


def test_fail_on_gates():
    assert ruledsl("audit", str(EXAMPLES), "--fail-on", "high").returncode == 1
    healthy = EXAMPLES / "dpo_healthy"
    assert ruledsl("audit", str(healthy), "--trainer", "dpo", "--fail-on", "low").returncode == 0
    assert ruledsl("audit", str(EXAMPLES), "--fail-on", "urgent").returncode == 2


def test_inline_alert_on_a_real_log():
    result = ruledsl("audit", str(REAL_LOGS / "grpo.jsonl"), "--no-builtin", "--format", "jsonl",
                     "--alert", "grpo: entropy > 5 -> high: entropy {value:.2f} at {step}")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["first_step"], r["last_step"], r["metric"]) for r in records] == [(1, 5, "entropy")]
    assert records[0]["message"].startswith("entropy 5.94 at 1")


def test_bad_inline_alert_is_a_usage_error_with_a_caret():
    result = ruledsl("audit", str(EXAMPLES), "--alert", "dpo: loss < 0.5 -> hgh: x")
    assert result.returncode == 2
    assert "expected a severity" in result.stderr and "^^^" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_rule_file_is_reported_with_its_path(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("name: bad\ntrainers: [all]\nmetric: loss\ncondition: '<'\n"
                                       "severity: high\nmessage: m\n")
    result = ruledsl("audit", str(EXAMPLES), "--rules", str(tmp_path))
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "condition" in result.stderr and "Traceback" not in result.stderr


def test_python_tags_are_never_executed(tmp_path: Path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\ntrainers: [all]\n")
    result = ruledsl("audit", str(EXAMPLES), "--rules", str(tmp_path))
    assert result.returncode == 2 and not marker.exists()
    assert "not allowed" in result.stderr


def test_truncated_line_is_reported_and_the_rest_audited(tmp_path: Path):
    lines = (REAL_LOGS / "sft.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:3] + [lines[3][:25]] + lines[4:]) + "\n")
    result = ruledsl("audit", str(tmp_path / "metrics.jsonl"), "--no-builtin", "--format", "json",
                     "--alert", "sft: loss > 0 -> low: m")
    assert result.returncode == 3  # audited, but an input was only partly read
    assert "metrics.jsonl:4: truncated or corrupt line" in result.stderr
    assert json.loads(result.stdout)[0]["n_evals"] == 4  # steps 1, 2, 3, 5 (step 4 lost)


def test_table_output_groups_by_run():
    result = ruledsl("audit", str(EXAMPLES))
    assert result.returncode == 0
    assert "sft_nan" in result.stdout and "[CRITICAL] loss_nonfinite" in result.stdout
    assert "alert episode(s)" in result.stdout


def test_missing_path():
    result = ruledsl("audit", "no/such/dir")
    assert result.returncode == 2 and "no such file" in result.stderr


# ---------------------------------------------------------------- the real console script


def console_script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The `ruledsl` script pip installed beside this interpreter, in a process of its own."""
    script = Path(sys.executable).parent / "ruledsl"
    assert script.is_file(), f"no console script at {script}: is ruledsl installed (pip install -e .)?"
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=180,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.mark.subprocess
def test_the_console_script_runs():
    result = console_script("--help")
    assert result.returncode == 0, result.stderr
    for command in ("audit", "lint", "test", "new", "explain", "grammar"):
        assert command in result.stdout
    version = console_script("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"ruledsl {__version__}"


@pytest.mark.subprocess
def test_python_m_ruledsl_runs():
    result = ruledsl("--help", subprocess=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: ruledsl" in result.stdout and "audit" in result.stdout
    audit = ruledsl("audit", str(EXAMPLES / "sft_nan"), "--format", "json", subprocess=True)
    assert audit.returncode == 0, audit.stderr
    assert {"loss_nonfinite", "grad_norm_nonfinite"} <= {r["rule"] for r in json.loads(audit.stdout)}


@pytest.mark.subprocess
@pytest.mark.parametrize("args, status", [
    (("audit", str(EXAMPLES / "dpo_healthy"), "--trainer", "dpo", "--fail-on", "low"), 0),
    (("audit", str(EXAMPLES), "--fail-on", "high"), 1),
    (("audit", str(EXAMPLES), "--fail-on", "urgent"), 2),
    (("audit", "no/such/dir"), 2),
    (("lint", "--strict"), 0),
    (("lint", "bad.yaml"), 1),
    (("lint", "--format", "xml"), 2),
], ids=["audit-clean", "audit-alerts", "audit-usage", "audit-missing", "lint-clean", "lint-errors", "lint-usage"])
def test_exit_status_of_the_console_script(tmp_path: Path, args: tuple[str, ...], status: int):
    (tmp_path / "bad.yaml").write_text(BROKEN_RULE)
    cwd = tmp_path if "bad.yaml" in args else ROOT  # `lint --strict` alone: the builtin library
    result = console_script(*args, cwd=cwd)
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
