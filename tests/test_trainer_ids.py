"""Trainer ids are checked wherever they enter (docs/language.md §8): a misspelled id (`dop`, `DPO`,
`gpro`) is an error with a did-you-mean, never a rule that silently matches nothing.

Rule files (E020 at the list item, on every path that loads them), inline alerts (RuleSyntaxError
E020 at the id), the Python API (`compile_rules`, `audit`, `evaluate`, `Monitor`: ValueError) and
the commands (`new`, `explain`, `test`, `lint`, `audit --rules/--alert`: exit 2, or 1 for a failing
file, with the did-you-mean).
"""

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pytest

import ruledsl
from cli_helpers import EXAMPLES
from cli_helpers import ruledsl as run_cli
from ruledsl.compile import compile_rules
from ruledsl.lang.errors import RuleSyntaxError
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.model.loader import RuleLoadError, builtin_rules_dir, discover, load_rules, read_rule_file
from ruledsl.model.rule import rule_from_inline

# misspelled id → the id the did-you-mean names
MISSPELLED = {"dop": "dpo", "DPO": "dpo", "gpro": "grpo"}

RULE = """\
name: {name}
trainers: [sft, {trainer}]
metric: loss
condition: "> 1"
severity: high
message: "loss {{value}} at step {{step}}"
tests:
  - series: {{loss: [0.5, 2.0]}}
    expect: [{{first_step: 1}}]
"""
TRAINER_COLUMN = len("trainers: [sft, ") + 1  # the misspelled id is the second item of line 2


def rule_file(folder: Path, trainer: str, name: str = "loss_high") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(RULE.format(name=name, trainer=trainer), encoding="utf-8")
    return path


def did_you_mean(trainer: str) -> str:
    return f"did you mean '{MISSPELLED[trainer]}'?"


# ---------------------------------------------------------------- rule files (the loader)


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
@pytest.mark.parametrize("check_schema", [True, False], ids=["schema", "builtin_path"])
def test_a_rule_file_with_an_unknown_trainer_has_one_e020_at_the_item(tmp_path, trainer, check_schema):
    loaded = read_rule_file(rule_file(tmp_path, trainer), check_schema=check_schema)
    assert loaded.rule is None
    [problem] = loaded.problems  # `DPO`: no second word from the schema's or the model's pattern
    d = problem.diagnostic
    assert (d.code, d.field, d.span.line, d.span.column) == ("E020", "trainers", 2, TRAINER_COLUMN)
    assert d.message == f"'{trainer}' is not a TRL trainer id"
    assert d.hint == did_you_mean(trainer)
    assert loaded.text[d.span.start:d.span.end] == trainer


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_load_rules_refuses_the_file(tmp_path, trainer):
    rule_file(tmp_path, trainer)
    with pytest.raises(RuleLoadError) as caught:
        load_rules([tmp_path], include_builtin=False)
    [problem] = caught.value.problems
    assert problem.diagnostic.code == "E020"
    assert f"loss_high.yaml:2:{TRAINER_COLUMN}: [E020]" in str(caught.value)
    assert did_you_mean(trainer) in str(caught.value)


def test_wildcards_and_known_ids_load(tmp_path):
    for index, trainers in enumerate(["all", "common", "grpo, online_dpo"]):
        (tmp_path / f"r{index}.yaml").write_text(RULE.replace("[sft, {trainer}]", f"[{trainers}]").format(
            name=f"r{index}"))
    assert [r.trainers for r in load_rules([tmp_path], include_builtin=False)] == [
        ("all",), ("all",), ("grpo", "online_dpo")]


def test_an_item_that_is_no_word_keeps_its_shape_error(tmp_path):
    """`*` is the inline alerts' wildcard: the rule model says so, not a did-you-mean."""
    problems = read_rule_file(rule_file(tmp_path, '"*"'), check_schema=False).problems
    assert [(p.diagnostic.code, p.diagnostic.field) for p in problems] == [("E301", "trainers")]
    assert "`all`" in problems[0].diagnostic.hint


def test_the_builtin_library_names_only_catalog_trainers():
    known = builtin_catalog().trainer_ids | {"all"}
    files = [read_rule_file(path, check_schema=False) for path in discover([builtin_rules_dir()])]
    assert files and all(f.problems == [] for f in files)
    assert all(set(f.rule.trainers) <= known for f in files if f.rule is not None)
    assert load_rules()


@pytest.mark.parametrize("trainer", ["ppo", "minillm", "ssd", "dppo"])
def test_trainers_trl_removed_keep_their_ids(tmp_path, trainer):
    """docs/language.md §8: a removed trainer's id stays valid, so that its rules and old logs still work."""
    assert builtin_catalog().removed_in(trainer) is not None
    assert load_rules([rule_file(tmp_path, trainer)], include_builtin=False)[0].trainers == ("sft", trainer)
    assert len(compile_rules([ALERT], trainer=trainer)) == 1


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_load_rules_for_an_unknown_trainer_is_a_value_error(trainer):
    with pytest.raises(ValueError, match=re.escape(did_you_mean(trainer))):
        load_rules(trainer=trainer)


def test_load_rules_for_a_wildcard_or_none_keeps_working():
    every, for_all = load_rules(trainer=None), load_rules(trainer="all")
    assert for_all and all(r.applies_to_all for r in for_all) and len(every) > len(for_all)
    assert [r.name for r in load_rules(trainer="common")] == [r.name for r in for_all]


# ---------------------------------------------------------------- inline alerts


@pytest.mark.parametrize("text, trainer, column", [
    ("dop: loss > 1 -> high: x", "dop", 1),
    ("DPO: loss > 1 -> high: x", "DPO", 1),
    ("grpo, gpro: loss > 1 -> high: x", "gpro", 7),
    ("  sft,DPO : loss > 1 -> high: x", "DPO", 7),
])
def test_an_inline_alert_with_an_unknown_trainer_is_e020_at_the_id(text, trainer, column):
    with pytest.raises(RuleSyntaxError) as caught:
        rule_from_inline(text)
    error = caught.value
    assert (error.code, error.line, error.column, error.offending) == ("E020", 1, column, trainer)
    assert error.hint == did_you_mean(trainer)
    assert f"'{trainer}' is not a TRL trainer id" in str(error) and "^" * len(trainer) in str(error)


def test_parse_inline_alert_is_the_same_check():
    with pytest.raises(RuleSyntaxError) as caught:
        ruledsl.parse_inline_alert("gpro: kl > 0.5 -> high: KL")
    assert caught.value.code == "E020" and caught.value.hint == "did you mean 'grpo'?"


def test_common_is_a_rule_file_wildcard_only():
    with pytest.raises(RuleSyntaxError) as caught:
        rule_from_inline("common: loss > 1 -> high: x")
    assert caught.value.code == "E020" and "`*` or `all`" in caught.value.hint
    assert rule_from_inline("*: loss > 1 -> high: x").trainers == ("all",)
    assert rule_from_inline("all, dpo: loss > 1 -> high: x").trainers == ("all", "dpo")


def test_an_inline_alert_checks_against_the_catalog_it_is_compiled_with():
    catalog = Catalog(trainer_keys={"my_trainer": ("loss",)})
    assert compile_rules(["my_trainer: loss > 1 -> high: x"], catalog=catalog).rules
    with pytest.raises(RuleSyntaxError):
        compile_rules(["my_trainer: loss > 1 -> high: x"])


# ---------------------------------------------------------------- the Python API

FRAME = pl.DataFrame({"step": [0, 1, 2], "loss": [0.5, 2.0, 3.0]})
ALERT = "all: loss > 1 -> high: loss {value}"


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_compile_rules_refuses_an_unknown_trainer(trainer):
    with pytest.raises(ValueError, match=re.escape(f"'{trainer}' is not a TRL trainer id; {did_you_mean(trainer)}")):
        compile_rules([ALERT], trainer=trainer)


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_audit_evaluate_and_monitor_refuse_an_unknown_trainer(trainer):
    with pytest.raises(ValueError, match=re.escape(did_you_mean(trainer))):
        ruledsl.audit(FRAME, [ALERT], trainer=trainer)
    with pytest.raises(ValueError, match=re.escape(did_you_mean(trainer))):
        ruledsl.evaluate(FRAME, [ALERT], trainer=trainer)
    with pytest.raises(ValueError, match=re.escape(did_you_mean(trainer))):
        ruledsl.Monitor([ALERT], trainer=trainer)


def test_none_and_all_stay_valid_trainers():
    assert len(compile_rules([ALERT], trainer=None)) == 1
    assert len(compile_rules([ALERT], trainer="all")) == 1
    assert ruledsl.audit(FRAME, [ALERT], trainer="dpo")["first_step"].to_list() == [1]


def test_a_catalog_of_aliases_only_leaves_trainer_ids_to_the_builtin_one():
    aliases = Catalog({"l": {"all": ["loss"]}})
    assert len(compile_rules([ALERT], trainer="grpo", catalog=aliases)) == 1
    with pytest.raises(ValueError, match="did you mean 'grpo'"):
        compile_rules([ALERT], trainer="gpro", catalog=aliases)


@pytest.mark.parametrize("trainer", ["dop", "gpro"])
def test_a_rule_mapping_in_code_with_an_unknown_trainer_is_refused(trainer):
    mapping = {"name": "x", "trainers": ["sft", trainer], "condition": "loss > 1", "severity": "low",
               "message": "m"}
    with pytest.raises(ValueError, match=rf"rule 'x' \(code\): trainers: '{trainer}' is not a TRL trainer id; "
                       + re.escape(did_you_mean(trainer))):
        compile_rules([mapping])


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_a_rule_object_with_an_unknown_trainer_is_refused(trainer):
    rule = dataclasses.replace(rule_from_inline(ALERT), trainers=("sft", trainer))
    with pytest.raises(ValueError, match=rf"\(inline\): trainers: '{trainer}' .*{re.escape(did_you_mean(trainer))}"):
        ruledsl.audit(FRAME, [rule])


# ---------------------------------------------------------------- the commands


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_new_refuses_an_unknown_trainer(tmp_path, trainer):
    result = run_cli("new", "x_rule", "-t", "sft", "-t", trainer, "-m", "loss", "-c", "> 1", cwd=tmp_path)
    assert result.returncode == 2
    assert f"--trainer: '{trainer}' is not a TRL trainer id; {did_you_mean(trainer)}" in result.stderr
    assert not (tmp_path / "rules").exists()


@pytest.mark.parametrize("given", ["all", "common"])
def test_new_for_every_trainer_writes_where_its_help_says(tmp_path, given):
    result = run_cli("new", "x_rule", "-t", given, "-m", "loss", "-c", "> 1", "--dir", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "mine" / "common" / "x_rule.yaml"
    assert f"wrote {Path('mine', 'common', 'x_rule.yaml')}" in result.stdout and path.is_file()
    assert "trainers: [all]" in path.read_text()
    assert "DIR/common/NAME.yaml" in " ".join(run_cli("new", "--help").stdout.split())


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_explain_refuses_an_unknown_trainer(trainer):
    result = run_cli("explain", "grpo_kl_high", "--trainer", trainer)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"'{trainer}' is not a TRL trainer id; {did_you_mean(trainer)}" in result.stderr


def test_explain_for_a_trainer_the_rule_does_not_apply_to_says_so():
    result = run_cli("explain", "grpo_kl_high", "--trainer", "dpo")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "Rule grpo_kl_high does not apply to trainer dpo" in result.stdout
    assert "Compiled polars query" not in result.stdout
    applies = run_cli("explain", "grpo_kl_high", "--trainer", "gmpo")
    assert applies.returncode == 0 and "Compiled polars query (trainer gmpo):" in applies.stdout


def test_explain_an_inline_alert_with_an_unknown_trainer():
    result = run_cli("explain", "DPO: loss > 1 -> high: x")
    assert result.returncode == 2
    assert "'DPO' is not a TRL trainer id" in result.stderr and "did you mean 'dpo'?" in result.stderr


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_ruledsl_test_fails_the_file_with_e020(tmp_path, trainer):
    rule_file(tmp_path, trainer)
    result = run_cli("test", "loss_high.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert f"loss_high.yaml:2:{TRAINER_COLUMN}: [E020]" in result.stdout and did_you_mean(trainer) in result.stdout
    assert result.stdout.splitlines()[-1] == "0 passed, 1 failed"


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_lint_reports_e020_exactly_once(tmp_path, trainer):
    rule_file(tmp_path, trainer)
    result = run_cli("lint", "--format", "json", "loss_high.yaml", cwd=tmp_path)
    assert result.returncode == 1
    problems = json.loads(result.stdout)
    assert [(p["code"], p["line"], p["column"], p["hint"]) for p in problems] == [
        ("E020", 2, TRAINER_COLUMN, did_you_mean(trainer))]


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_audit_refuses_a_rule_file_with_an_unknown_trainer(tmp_path, trainer):
    rule_file(tmp_path, trainer)
    result = run_cli("audit", str(EXAMPLES / "dpo_stuck"), "--rules", str(tmp_path), "--fail-on", "high")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "[E020]" in result.stderr and did_you_mean(trainer) in result.stderr


@pytest.mark.parametrize("trainer", sorted(MISSPELLED))
def test_audit_refuses_an_inline_alert_with_an_unknown_trainer(trainer):
    result = run_cli("audit", str(EXAMPLES / "dpo_stuck"), "--alert", f"{trainer}: loss > 1 -> high: x",
                     "--fail-on", "high")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"'{trainer}' is not a TRL trainer id" in result.stderr and did_you_mean(trainer) in result.stderr
