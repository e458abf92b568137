"""`ruledsl test`, `ruledsl new` and `ruledsl explain` through the command (in-process, see cli_helpers)."""

import json

import yaml

from cli_helpers import ROOT, ruledsl
from ruledsl.model.loader import builtin_rules_dir, read_rule_file

RULE = """\
name: sft_loss_high
trainers: [sft]
metric: loss
condition: "> 2"
window: 2
severity: medium
message: "loss {value:.2f} at step {step}"
tests:
  - name: fires on a high loss
    series: {loss: [1.0, 3.0, 3.0, 3.0, 1.0]}
    expect: [{first_step: 2, last_step: 3, message: "loss 3.00 at step 2"}]
  - name: silent on a low loss
    series: {loss: [1.0, 1.0, 1.0]}
    expect: []
"""


def test_the_builtin_library_passes_its_tests():
    result = ruledsl("test")
    assert result.returncode == 0, result.stdout
    cases = sum(len(yaml.safe_load(path.read_text()).get("tests", [])) for path in (ROOT / "rules").rglob("*.yaml"))
    assert cases > 100 and result.stdout.splitlines()[-1] == f"{cases} passed, 0 failed"
    assert "engines: batch, incremental" in result.stdout


def test_passing_and_failing_cases(tmp_path):
    (tmp_path / "good.yaml").write_text(RULE)
    result = ruledsl("test", "good.yaml", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "2 passed, 0 failed"
    assert "good.yaml .." in result.stdout

    wrong = RULE.replace("first_step: 2, last_step: 3", "first_step: 1, last_step: 3").replace(
        "silent on a low loss", "silent on a high loss").replace("[1.0, 1.0, 1.0]", "[3.0, 3.0, 3.0]")
    (tmp_path / "bad.yaml").write_text(wrong.replace("sft_loss_high", "sft_loss_high_2"))
    result = ruledsl("test", "-v", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "2 passed, 2 failed"
    assert "=== FAILURES ===" in result.stdout
    assert "expected episodes starting at steps [1], got [2]" in result.stdout
    assert "expected episodes starting at steps [], got [1] (step 1–2: loss 3.00 at step 1)" in result.stdout
    assert "bad.yaml :: silent on a high loss FAILED" in result.stdout


def test_a_wrong_message_or_last_step_fails(tmp_path):
    (tmp_path / "r.yaml").write_text(RULE.replace('"loss 3.00 at step 2"', '"loss 3.0 at step 2"'))
    result = ruledsl("test", "r.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "expected message 'loss 3.0 at step 2', got 'loss 3.00 at step 2'" in result.stdout


def test_steps_nonfinite_and_missing_values(tmp_path):
    rule = RULE.replace('condition: "> 2"', "condition: nonfinite").replace("window: 2\n", "").split("tests:")[0]
    rule += """tests:
  - series: {loss: [1.0, null, "nan", 2.0, "-inf"]}
    steps: [10, 20, 30, 40, 50]
    expect: [{first_step: 30, last_step: 30}, {first_step: 50}]
"""
    (tmp_path / "r.yaml").write_text(rule)
    result = ruledsl("test", "r.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout


def test_unloadable_files_and_untested_rules_are_reported(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [\n")
    (tmp_path / "untested.yaml").write_text(RULE.split("tests:")[0])
    result = ruledsl("test", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert "broken.yaml: cannot be loaded" in result.stdout and "[E002]" in result.stdout
    assert "no tests: sft_loss_high" in result.stdout
    assert result.stdout.splitlines()[-1] == "0 passed, 1 failed"


def test_new_scaffolds_a_rule_that_lints_and_passes(tmp_path):
    result = ruledsl("new", "grpo_reward_flat", "-t", "grpo", "-m", "reward", "-c", "flat(0.001)", "-w", "4",
                     "-s", "high", "--dir", "rules", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "rules" / "grpo" / "grpo_reward_flat.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    schema = (path.parent / text.splitlines()[0].split("$schema=")[1]).resolve()
    assert json.loads(schema.read_text())["$id"].endswith("rule.schema.json")
    cases = yaml.safe_load(text)["tests"]
    assert [bool(c["expect"]) for c in cases] == [True, False]  # one firing, one silent case
    assert ruledsl("lint", str(path), cwd=tmp_path).returncode == 0
    assert ruledsl("test", str(path), cwd=tmp_path).stdout.splitlines()[-1] == "2 passed, 0 failed"
    again = ruledsl("new", "grpo_reward_flat", "-t", "grpo", "-m", "reward", "-c", "flat(0.001)", cwd=tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr


def test_new_refuses_a_bad_rule_with_its_position(tmp_path):
    result = ruledsl("new", "x", "-t", "grpo", "-m", "reward", "-c", "< 0.5 andd", cwd=tmp_path)
    assert result.returncode == 2
    assert "condition (column 7)" in result.stderr and "andd" in result.stderr
    assert not (tmp_path / "rules").exists()


def test_new_full_expression(tmp_path):
    result = ruledsl("new", "dpo_loss_up", "-t", "dpo", "-c", "mean(loss, 3) > 2 * baseline(loss, 3)",
                     "--dir", "r", cwd=tmp_path)
    assert result.returncode == 0
    document = yaml.safe_load((tmp_path / "r" / "dpo" / "dpo_loss_up.yaml").read_text())
    assert "metric" not in document and "{metric}" not in document["message"]
    assert ruledsl("test", "r", cwd=tmp_path).returncode == 0


def test_explain_a_builtin_rule():
    builtin = read_rule_file(builtin_rules_dir() / "dpo" / "dpo_completions_fully_masked.yaml").rule
    result = ruledsl("explain", builtin.name)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert f"rule {builtin.name} [{builtin.severity}]" in text
    assert "dpo logps/chosen → logps/chosen" in text
    assert "Compiled polars query (trainer dpo):" in text and 'col("key").is_in' in text


def test_explain_a_rule_reading_the_configuration_compiles_with_it():
    alert = "dpo: rewards/margins < 0.15 * config.beta -> high: flat"
    without = ruledsl("explain", alert)
    assert without.returncode == 0, without.stderr
    assert "none for this configuration: the run's configuration has no beta" in " ".join(without.stdout.split())
    given = ruledsl("explain", alert, "--config", "beta=0.1")
    assert given.returncode == 0, given.stderr
    assert "0.015" in given.stdout and 'col("key").is_in' in given.stdout  # 0.15 * 0.1, folded in the query


def test_explain_resolves_aliases_per_trainer_for_a_file_and_an_inline_alert(tmp_path):
    (tmp_path / "r.yaml").write_text(RULE.replace("trainers: [sft]", "trainers: [grpo, rloo]").replace(
        "metric: loss", "metric: completion_length"))
    result = ruledsl("explain", "r.yaml", "--no-plan", cwd=tmp_path)
    assert result.returncode == 0
    assert "grpo                     completion_length → completion_length, completions/mean_length" in result.stdout
    assert "WITH_COLUMNS" not in result.stdout
    inline = ruledsl("explain", "grpo: importance_sampling_ratio < 0.5 for 3 steps -> high: IS collapsed")
    assert inline.returncode == 0
    assert "importance_sampling_ratio is below 0.5 and has held at every evaluation for at least 3 training " \
           "steps" in " ".join(inline.stdout.split())
    assert "sampling/importance_sampling_ratio/mean" in inline.stdout


def test_explain_unknown_and_broken(tmp_path):
    result = ruledsl("explain", "dpo_loss_stuck")
    assert result.returncode == 2 and "did you mean dpo_loss_stuck_ln2" in result.stderr
    (tmp_path / "bad.yaml").write_text("name: x\n")
    assert ruledsl("explain", "bad.yaml", cwd=tmp_path).returncode == 2
    assert "line 1, column 1" in ruledsl("explain", "x: loss < -> high: m").stderr


def test_pre_commit_hooks_call_real_commands():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} == {"ruledsl-lint", "ruledsl-test"}
    for hook in hooks:
        command = hook["entry"].split()[1:]
        assert ruledsl(*command, "--help").returncode == 0


def test_every_engine_is_asked_and_a_disagreeing_one_is_named(monkeypatch):
    from ruledsl.authoring import rule_tests
    from ruledsl.model.rule import Rule

    rule = Rule.from_dict(yaml.safe_load(RULE))
    assert all(r.passed for r in rule_tests.run_rule_tests(rule))
    monkeypatch.setitem(rule_tests.ENGINES, "incremental", lambda *args: [])  # an engine that never fires
    results = rule_tests.run_rule_tests(rule)
    assert results[0].failures == ["incremental engine: expected episodes starting at steps [2], got []"]
    assert results[1].passed


def test_explain_reads_full_expressions_in_words():
    from ruledsl.authoring.explain import meaning
    from ruledsl.model.rule import rule_from_inline

    rule = rule_from_inline("dpo: mean(loss, 20) > 2 * baseline(loss, 20) or delta(loss, 3) > 1 -> low: up")
    assert meaning(rule).startswith(
        "Fires when ([mean of the last 20 values of loss] is above (2 * [mean of the first 20 values of loss])) "
        "or ([the change of loss over the last 3 values] is above 1).")
