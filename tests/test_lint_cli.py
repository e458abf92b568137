"""`ruledsl lint` on real rule files, good and broken: in-process, and on a real terminal (a pty)."""

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import ROOT, ruledsl
from ruledsl.model.loader import read_rule_file

LEGACY = Path(__file__).parent / "data" / "lint" / "legacy_format"

GOOD = """\
name: grpo_ratio_low
trainers: [grpo]
metric: importance_sampling_ratio
condition: "< 0.5"
window: 3
severity: high
message: "IS ratio {value:.3f} at step {step}"
tests:
  - series: {importance_sampling_ratio: [1.0, 1.0, 0.1, 0.1, 0.1]}
    expect: [{first_step: 3, last_step: 4}]
"""

# file name → (text, code, line, column) of the one problem it must produce
BROKEN = {
    "yaml_syntax.yaml": ("name: x\ntrainers: [grpo\nseverity: high\n", "E002", 3, 9),
    "python_tag.yaml": (GOOD.replace("name: grpo_ratio_low",
                                     "name: !!python/object/apply:os.system ['touch PWNED']"), "E002", 1, 7),
    "two_documents.yaml": (GOOD + "---\n" + GOOD, "E002", 11, 1),
    "duplicate_key.yaml": (GOOD.replace("window: 3\n", "window: 3\nwindow: 5\n"), "E004", 6, 1),
    "unknown_field.yaml": (GOOD.replace("window: 3\n", "windw: 3\n"), "E010", 5, 1),
    "bad_severity.yaml": (GOOD.replace("severity: high", "severity: hihg"), "E010", 6, 11),
    "window_type.yaml": (GOOD.replace("window: 3", "window: three"), "E010", 5, 9),
    "missing_message.yaml": (GOOD.replace('message: "IS ratio {value:.3f} at step {step}"\n', ""), "E010", 1, 1),
    "bad_name.yaml": (GOOD.replace("name: grpo_ratio_low", "name: Grpo-Ratio"), "E010", 1, 7),
    "empty.yaml": ("", "E010", 1, 1),
    "a_list.yaml": ("- name: x\n", "E010", 1, 1),
    "condition_syntax.yaml": (GOOD.replace('"< 0.5"', '"< 0.5 andd > 2"'), "E101", 4, 19),
    "condition_block.yaml": (GOOD.replace('condition: "< 0.5"', "condition: |\n  < 0.5 or\n  > )"), "E101", 6, 5),
    "condition_escapes.yaml": (GOOD.replace('"< 0.5"', '"\\u003c 0.5 or spike(3%)"'), "E105", 4, 33),
    "unknown_function.yaml": (GOOD.replace('metric: importance_sampling_ratio\ncondition: "< 0.5"',
                                           'condition: "meen(loss, 3) > 1"'), "E102", 3, 13),
    "range_reversed.yaml": (GOOD.replace('"< 0.5"', "'range(2, 1)'"), "E105", 4, 13),
    "template_field.yaml": (GOOD.replace("{value:.3f}", "{valeu:.3f}"), "E201", 7, 20),
    "template_attr.yaml": (GOOD.replace("{value:.3f}", "{value.__class__}"), "E201", 7, 20),
    "for_twice.yaml": (GOOD.replace('"< 0.5"', '"< 0.5 for 3 steps"\nfor: 2'), "E305", 5, 6),
    "unknown_trainer.yaml": (GOOD.replace("[grpo]", "[grpo, gpro]"), "E020", 2, 18),
    "failing_test.yaml": (GOOD.replace("first_step: 3", "first_step: 2"), "E401", 9, 5),
    "bad_test_case.yaml": (GOOD.replace("expect:", "steps: [0, 1]\n    expect:"), "E402", 9, 5),
    "unknown_metric.yaml": (GOOD.replace("importance_sampling_ratio", "importance_sampling_ration"), "W001", 3, 9),
    "exact_compare.yaml": (GOOD.replace('"< 0.5"', '"== 0.5"').replace("tests:", "x-tests:"), "W002", 4, 13),
    "min_steps_useless.yaml": (GOOD.replace("window: 3", "window: 3\nmin_steps: 2"), "W003", 6, 12),
    "window_ignored.yaml": (GOOD.replace('metric: importance_sampling_ratio\ncondition: "< 0.5"',
                                         'condition: "loss < 0.5"').replace("tests:", "x-tests:"), "W004", 4, 9),
    "baseline_na.yaml": (GOOD.replace("at step {step}", "vs {baseline}"), "W005", 7, 35),
    "removed_only.yaml": (GOOD.replace("[grpo]", "[ppo, bco]").replace("importance_sampling_ratio", "loss"),
                          "W006", 2, 11),
    "eval_mixed.yaml": (GOOD.replace('metric: importance_sampling_ratio\ncondition: "< 0.5"',
                                     'condition: "eval_loss > 2 * loss"').replace("window: 3\n", "")
                        .replace("tests:", "x-tests:"), "W007", 3, 12),
}


@pytest.fixture(scope="module")
def broken_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("broken")
    for name, (text, *_rest) in BROKEN.items():  # each file its own rule name: no E003 between them
        unique = text.replace("name: grpo_ratio_low", f"name: {name.removesuffix('.yaml')}")
        (folder / name).write_text(unique, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def broken_report(broken_dir) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = ruledsl("lint", "--format", "json", str(broken_dir), cwd=broken_dir)
    return result, json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_file_reports_its_problem_at_its_place(broken_report, name):
    _, problems = broken_report
    text, code, line, column = BROKEN[name]
    found = [p for p in problems if p["path"] == name]
    assert [(p["code"], p["line"], p["column"]) for p in found] == [(code, line, column)], found
    assert found[0]["severity"] == ("warning" if code.startswith("W") else "error")
    assert found[0]["message"]


def test_broken_folder_exits_1_and_nothing_is_executed(broken_report, broken_dir):
    result, problems = broken_report
    assert result.returncode == 1
    assert not (broken_dir / "PWNED").exists()
    assert {p["path"] for p in problems} == set(BROKEN)  # no file dropped silently


def test_human_report_shows_snippet_caret_and_hint(broken_dir):
    result = ruledsl("lint", "condition_syntax.yaml", "unknown_trainer.yaml", cwd=broken_dir)
    assert result.returncode == 1
    assert "condition_syntax.yaml:4:19: error[E101]" in result.stdout
    assert '  condition: "< 0.5 andd > 2"\n                    ^^^^' in result.stdout
    assert "hint: did you mean 'grpo'?" in result.stdout
    assert result.stdout.rstrip().endswith("2 file(s) checked: 2 error(s), 0 warning(s).")
    assert "\x1b[" not in result.stdout  # no colour when not on a terminal


@pytest.mark.subprocess  # a real process whose stdout is a pty: colour is for terminals only
def test_colour_on_a_terminal(broken_dir):
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    process = subprocess.run([sys.executable, "-m", "ruledsl", "lint", "condition_syntax.yaml"], cwd=broken_dir,
                             stdout=secondary, stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.returncode == 1
    assert b"\x1b[31m" in output and b"error[E101]" in output


def test_the_builtin_library_lints_clean():
    result = ruledsl("lint", "--strict")
    assert result.returncode == 0, result.stdout
    files = len(list((ROOT / "rules").rglob("*.yaml")))
    assert f"{files} file(s) checked: no problems." in result.stdout


def test_a_folder_in_the_earlier_tools_format_reports_exactly_its_duplicate_name():
    result = ruledsl("lint", "--format", "json", str(LEGACY))
    problems = json.loads(result.stdout)
    errors = [p for p in problems if p["severity"] == "error"]
    assert result.returncode == 1
    assert [(e["code"], Path(e["path"]).name, e["line"]) for e in errors] == [("E003", "reward_gap_tiny.yaml", 1)]
    assert "reward_gap_small.yaml" in errors[0]["message"]
    # TRL 1.16's GRPO logs no per-group reward std (async GRPO does), and PPO is gone since TRL 1.13
    assert sorted((p["code"], Path(p["path"]).name) for p in problems if p["severity"] == "warning") == \
        [("W001", "no_group_variance.yaml"), ("W006", "value_loss_high.yaml")]


def test_every_file_of_that_folder_loads_as_it_stands():
    files = [read_rule_file(path) for path in sorted(LEGACY.rglob("*.yaml"))]
    assert len(files) == 8 and all(f.rule is not None and not f.problems for f in files)


def test_warnings_pass_unless_strict(broken_dir):
    assert ruledsl("lint", "exact_compare.yaml", cwd=broken_dir).returncode == 0
    assert ruledsl("lint", "--strict", "exact_compare.yaml", cwd=broken_dir).returncode == 1


def test_a_rule_name_the_builtin_library_uses(tmp_path):
    text = (ROOT / "rules" / "sft" / "sft_loss_flat.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text)
    result = ruledsl("lint", "mine.yaml", cwd=tmp_path)
    assert result.returncode == 1 and "[E003]" in result.stdout and "sft_loss_flat.yaml" in result.stdout
    assert ruledsl("lint", "--no-builtin", "mine.yaml", cwd=tmp_path).returncode == 0


def test_usage_errors_exit_2(tmp_path):
    assert ruledsl("lint", str(tmp_path / "missing")).returncode == 2
    assert ruledsl("lint", str(tmp_path)).returncode == 2  # no rule files there
    assert ruledsl("lint", "--format", "xml").returncode == 2


def test_github_annotations(broken_dir):
    result = ruledsl("lint", "--format", "github", "condition_syntax.yaml", "unknown_metric.yaml", cwd=broken_dir)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("::error file=condition_syntax.yaml,line=4,col=19,endLine=4,endColumn=23,"
                               "title=E101 condition syntax::expected ")
    assert lines[1].startswith("::warning file=unknown_metric.yaml,line=3,col=9,")
    assert "%0A" not in lines[0] and len(lines) == 2


def test_sarif_report(broken_dir):
    result = ruledsl("lint", "--format", "sarif", "condition_syntax.yaml", "unknown_metric.yaml", cwd=broken_dir)
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["E101", "W001"]
    first, second = run["results"]
    assert rules[first["ruleIndex"]]["id"] == first["ruleId"] == "E101" and first["level"] == "error"
    location = first["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "condition_syntax.yaml"
    assert location["region"] == {"startLine": 4, "startColumn": 19, "endLine": 4, "endColumn": 23}
    assert second["level"] == "warning"


def test_output_file_and_list_codes(tmp_path, broken_dir):
    report = tmp_path / "lint.json"
    result = ruledsl("lint", "--format", "json", "--output", str(report), "bad_name.yaml", cwd=broken_dir)
    assert result.returncode == 1 and result.stdout == ""
    assert json.loads(report.read_text())[0]["code"] == "E010"
    codes = ruledsl("lint", "--list-codes").stdout
    assert "E401" in codes and "W003" in codes


def test_help_teaches():
    text = " ".join(ruledsl("lint", "--help").stdout.split())
    for part in ("--format", "--strict", "github", "sarif", "Exit status: 0 clean", "ruledsl lint rules/my_rules/"):
        assert part in text


def test_a_file_allows_a_warning_its_author_accepted(tmp_path: Path):
    mixed = BROKEN["eval_mixed.yaml"][0]
    (tmp_path / "mixed.yaml").write_text(mixed + "x-lint-allow: [W007, E101]\n", encoding="utf-8")
    assert ruledsl("lint", "--strict", "--no-tests", str(tmp_path)).returncode == 0
    broken = mixed.replace("eval_loss > 2 * loss", "eval_loss >> 2")
    (tmp_path / "mixed.yaml").write_text(broken + "x-lint-allow: [W007, E101]\n", encoding="utf-8")
    result = ruledsl("lint", "--no-tests", str(tmp_path))
    assert result.returncode == 1 and "E101" in result.stdout  # errors are never allowed
