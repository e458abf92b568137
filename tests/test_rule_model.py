"""The Rule model (docs/language.md §1) and message templates (§5)."""

import math
from pathlib import Path

import pytest
import yaml

from ruledsl import Rule, RuleSyntaxError, RuleValidationError
from ruledsl.lang.errors import Diagnostic
from ruledsl.lang.templates import parse_template

BASE = {"name": "is_ratio_low", "trainers": ["grpo", "ppo"], "metric": "importance_sampling_ratio",
        "condition": "< 0.5", "severity": "high", "message": "IS ratio at {value:.3f}"}


def test_every_field_of_spec_section_1():
    rule = Rule.from_dict(BASE | {
        "description": "why", "window": 20, "min_steps": 30, "for": 3, "reference": "paper",
        "enabled": False, "tags": ["grpo"], "tests": [{"series": {"m": [1]}, "expect": []}],
        "x-owner": "team-a"})
    assert rule.name == "is_ratio_low" and rule.trainers == ("grpo", "ppo")
    assert rule.metric == "importance_sampling_ratio" and rule.condition.kind == "shorthand"
    assert (rule.window, rule.min_steps, rule.sustain, rule.enabled) == (20, 30, 3, False)
    assert rule.reference == ("paper",) and rule.tags == ("grpo",) and len(rule.tests) == 1
    assert rule.extensions == {"x-owner": "team-a"}
    assert Rule.from_dict(rule.to_dict()) == rule


def test_defaults():
    rule = Rule.from_dict(BASE)
    assert (rule.window, rule.min_steps, rule.sustain, rule.enabled) == (1, 0, 1, True)


def test_common_is_a_synonym_of_all():
    assert Rule.from_dict(BASE | {"trainers": ["common"]}).trainers == ("all",)
    assert Rule.from_dict(BASE | {"trainers": ["all"]}).applies_to("anything")


def test_for_in_the_condition():
    assert Rule.from_dict(BASE | {"condition": "< 0.5 for 4 steps"}).sustain == 4


def test_full_expression_without_metric():
    rule = Rule.from_dict({k: v for k, v in BASE.items() if k != "metric"} | {
        "condition": "logps/chosen < 0 and logps/rejected < 0"})
    assert rule.metric is None and rule.metrics == ("logps/chosen", "logps/rejected")


def test_all_problems_are_reported_at_once():
    with pytest.raises(RuleValidationError) as info:
        Rule.from_dict({"name": "Bad Name", "trainers": [], "condition": "<", "severity": "urgent",
                        "message": "{valu}", "window": 0, "min_steps": -1, "colour": "red"})
    fields = {d.field for d in info.value.diagnostics}
    assert {"name", "trainers", "condition", "severity", "message", "window", "min_steps", "colour"} <= fields
    condition = next(d for d in info.value.diagnostics if d.field == "condition")
    assert condition.span.column == 2  # the position inside the condition string
    assert "Bad Name" in str(info.value) and "did you mean" in str(info.value)


def test_shorthand_needs_a_metric():
    with pytest.raises(RuleValidationError, match="needs the rule's `metric`"):
        Rule.from_dict({k: v for k, v in BASE.items() if k != "metric"})


def test_for_twice_is_an_error():
    with pytest.raises(RuleValidationError, match="both the `for` field"):
        Rule.from_dict(BASE | {"condition": "< 0.5 for 2 steps", "for": 2})


def test_unquoted_yaml_number_condition_gets_a_hint():
    with pytest.raises(RuleValidationError, match="quote it"):
        Rule.from_dict(BASE | {"condition": 0.5})


def test_booleans_are_not_integers():
    with pytest.raises(RuleValidationError, match="whole number"):
        Rule.from_dict(BASE | {"window": True})


def test_a_whole_float_is_a_whole_number():
    """JSON Schema's integer takes 20.0 as 20, and so does the model (tests/test_rule_contract.py)."""
    rule = Rule.from_dict(BASE | {"window": 20.0, "min_steps": 0.0})
    assert (rule.window, rule.min_steps) == (20, 0) and type(rule.window) is int


def only_problem(mapping) -> Diagnostic:
    with pytest.raises(RuleValidationError) as info:
        Rule.from_dict(mapping)
    assert len(info.value.diagnostics) == 1, info.value.diagnostics
    return info.value.diagnostics[0]


@pytest.mark.parametrize("change, code, words, hint", [
    ({"trainers": "*"}, "E301", "must be a list of trainer ids, got the string '*'", "trainers: [all]"),
    ({"trainers": "dpo"}, "E301", "must be a list of trainer ids", "trainers: [dpo]"),
    ({"trainers": ["grpo", "*"]}, "E301", "trainers[1]: '*' is not a trainer id", "`all`"),
    ({"trainers": ["DPO"]}, "E301", "'DPO' is not a trainer id", "lower case, without spaces: dpo"),
    ({"trainers": []}, "E301", "non-empty list", "[all]"),
    ({"tags": "a"}, "E301", "'tags' must be a list of strings, got the string 'a'", "tags: [a]"),
    ({"tags": ["a", 3]}, "E301", "tags[1] must be a string, got 3", 'quote it in YAML: "3"'),
    ({"severity": "HIGH"}, "E301", "must be one of low, medium, high, critical, got 'HIGH'", "severity: high"),
    ({"name": None}, "E301", "'name' has no value (null)", "the field is required"),
    ({"description": None}, "E301", "'description' has no value (null)", "or remove the line"),
    ({"metric": "  "}, "E301", "'metric' is blank", "write the text"),
    ({"condition": " "}, "E301", "'condition' is blank", 'condition: "< 0.5"'),
    ({"name": 12}, "E301", "'name' must be a string, got 12", 'quote it in YAML, e.g. name: "12"'),
    ({"window": "20"}, "E304", "'window' must be a whole number, got '20'", "without quotes: window: 20"),
    ({"window": 1.5}, "E304", "'window' must be a whole number, got 1.5", "window: 2"),
    ({"enabled": "yes"}, "E301", "'enabled' must be true or false, got 'yes'", "without quotes"),
    ({"reference": 3}, "E301", "'reference' must be a string or a list of strings, got 3", None),
])
def test_a_wrong_field_is_named_with_a_hint(change, code, words, hint):
    problem = only_problem(BASE | change)
    assert (problem.code, problem.field) == (code, next(iter(change)))
    assert words in problem.message
    assert (problem.hint is None) if hint is None else (hint in problem.hint), problem.hint


@pytest.mark.parametrize("tests, words", [
    ([{"expect": []}], "tests[0]: the required field 'series' is missing"),
    ([{"series": {}, "expect": []}, {"series": {"m": [True]}, "expect": []}],
     "tests[1].series.m[0] must be a number, 'nan', 'inf', '-inf' or null, got True"),
    ([{"series": {}, "expect": [{"first_step": 1, "last": 2}]}],
     "tests[0].expect[0]: unknown field 'last' (known: first_step, last_step, message, metric)"),
    ([{"series": {}, "steps": [0.5], "expect": []}], "tests[0].steps[0] must be a whole number, got 0.5"),
])
def test_a_malformed_test_case_is_named_by_its_path(tests, words):
    problem = only_problem(BASE | {"tests": tests})
    assert (problem.code, problem.field, problem.message) == ("E301", "tests", words)
    assert "docs/language.md §7" in problem.hint


def test_compatibility_format_loads(tmp_path: Path):
    """A rule in the earlier tool's format (fixture of our own, same fields)."""
    text = """\
name: yaml_margin_collapse_fixture
description: Reward margin falls too low
trainers: [dpo, orpo, cpo]
metric: reward_margin
condition: "< 0.1"
window: 20
severity: high
message: "Reward margin collapsed to {value:.3f}"
reference: "https://arxiv.org/abs/2305.18290"
min_steps: 30
enabled: true
"""
    rule = Rule.from_dict(yaml.safe_load(text))
    assert rule.window == 20 and rule.min_steps == 30


# ---------------------------------------------------------------- templates (§5)

FIELDS = {"value": 0.12345, "metric": "loss", "step": 1200, "run": "r1", "name": "n", "severity": "high",
          "trainer": "dpo", "window": 20, "threshold": 0.5, "baseline": None}


@pytest.mark.parametrize("template, rendered", [
    ("{value:.3f}", "0.123"), ("{value:.1%}", "12.3%"), ("{value:.2e}", "1.23e-01"), ("{step:,}", "1,200"),
    ("{metric} at {step} in {run} ({name}, {severity}, {trainer}, W={window})",
     "loss at 1200 in r1 (n, high, dpo, W=20)"),
    ("{baseline:.2f}", "n/a"), ("{threshold}", "0.5"), ("{{literal}} {value:>8.2f}", "{literal}     0.12"),
    ("no fields", "no fields"),
])
def test_rendering(template, rendered):
    assert parse_template(template).render(FIELDS) == rendered


def test_non_finite_values_render_plainly():
    assert parse_template("{value:.3f}").render({"value": math.nan}) == "nan"
    assert parse_template("{value}").render({"value": -math.inf}) == "-inf"


@pytest.mark.parametrize("template, words", [
    ("{value.__class__}", "unknown template field"), ("{value[0]}", "unknown template field"),
    ("{value!r}", "unknown template field"), ("{0}", "unknown template field"), ("{}", "unknown template field"),
    ("{secret}", "unknown template field"), ("{value:d}", "bad format spec"),
    ("{value:.3q}", "bad format spec"), ("{metric:.3f}", "is text"), ("{value:999999999f}", "larger than"),
    ("{value", "not closed"), ("value}", "no matching"),
])
def test_hostile_or_wrong_templates_are_errors(template, words):
    with pytest.raises(RuleSyntaxError) as info:
        parse_template(template)
    assert words in str(info.value)


def test_a_rendered_template_never_raises_on_odd_values():
    template = parse_template("{value:,.2f} {step:.1f} {threshold:.0%} {baseline:e}")
    assert template.render({"value": "text", "step": None, "threshold": math.inf, "baseline": object()}) \
        == "text n/a inf% n/a"
