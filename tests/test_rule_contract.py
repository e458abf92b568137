"""One contract for rule files (docs/language.md §1): the JSON Schema and the rule model give the same verdict.

schemas/rule.schema.json is what `ruledsl lint` and editors check; `Rule.from_dict` is the only
check when the builtin library loads (`read_rule_file(check_schema=False)`). Every case of
tests/data/rule_contract_cases.yaml goes through both, each must give the case's verdict and name
the same fields; a property test then throws random values of every JSON type at both. The model
may reject more only where a schema cannot see: the condition and template grammars, a shorthand
without `metric`, and `for` given twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruledsl import Rule, RuleValidationError
from ruledsl.alerts import SEVERITIES
from ruledsl.authoring.scaffold import RuleDumper
from ruledsl.lang.errors import Diagnostic
from ruledsl.model.loader import read_rule_file
from ruledsl.model.rule import FIELDS, NAME_PATTERN, NOT_BLANK, REQUIRED, TRAINER_PATTERN
from ruledsl.model.schema import rule_schema, schema_problems
from ruledsl.model.yaml_source import read_yaml

CASES_FILE = Path(__file__).parent / "data" / "rule_contract_cases.yaml"
TABLE = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
BASE: dict[str, Any] = TABLE["base"]
CASES: list[dict[str, Any]] = TABLE["cases"]


def mapping_of(case: dict[str, Any]) -> Any:
    """The rule a case describes: its own `rule`, or the base with `without` removed and `with` set."""
    if "rule" in case:
        return case["rule"]
    removed = set(case.get("without", []))
    return {k: v for k, v in BASE.items() if k not in removed} | case.get("with", {})


def expected_fields(case: dict[str, Any]) -> tuple[set, set]:
    """(the fields the schema must name, the fields the model must name); empty when valid."""
    if case.get("valid"):
        return set(), set()
    invalid = case["invalid"]
    fields = set(invalid) if isinstance(invalid, list) else {invalid}
    only_model = case.get("only_model", False)
    return fields - (fields if only_model is True else set(only_model or ())), fields


def schema_fields(mapping: Any) -> set:
    """The fields `ruledsl lint`'s schema check names, the mapping written as a YAML file."""
    # written out in full: rule files have no aliases, and a value shared by two fields would make one
    document = read_yaml(yaml.dump(mapping, Dumper=RuleDumper, sort_keys=False, allow_unicode=True))
    assert document.data == mapping, "the case did not survive YAML"
    return {d.field for d in schema_problems(document)}


def model_problems(mapping: Any) -> list[Diagnostic]:
    try:
        Rule.from_dict(mapping)
    except RuleValidationError as exc:
        assert exc.diagnostics, "a RuleValidationError without a diagnostic"
        return list(exc.diagnostics)
    return []


def beyond_schema(diagnostic: Diagnostic) -> bool:
    """A problem no JSON Schema can see: grammar (E1xx, E2xx), a shorthand without metric, `for` twice."""
    return diagnostic.code.startswith(("E1", "E2")) or diagnostic.code == "E305" \
        or (diagnostic.code, diagnostic.field) == ("E302", "metric")


# ---------------------------------------------------------------- the table


def test_the_table_is_well_formed():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), "case ids repeat"
    for case in CASES:
        assert case.get("valid") is True or "invalid" in case, case["id"]
        assert not (case.get("valid") and "invalid" in case), case["id"]
        assert set(case) <= {"id", "rule", "with", "without", "valid", "invalid", "only_model"}, case["id"]
        assert set(case.get("without", [])) <= set(BASE), case["id"]
    assert Rule.from_dict(BASE) and not schema_fields(BASE)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_schema_gives_the_case_s_verdict(case):
    schema_expected, _ = expected_fields(case)
    assert schema_fields(mapping_of(case)) == schema_expected


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_rule_model_gives_the_case_s_verdict(case):
    schema_expected, model_expected = expected_fields(case)
    problems = model_problems(mapping_of(case))
    assert {d.field for d in problems} == model_expected
    # What the schema also rejects is a bad field (E3xx); only what it cannot see is anything else.
    assert {d.field for d in problems if not beyond_schema(d)} == schema_expected
    assert all(d.code.startswith("E3") for d in problems if not beyond_schema(d)), problems
    assert all(d.message for d in problems)


@pytest.mark.parametrize("case", [c for c in CASES if c.get("valid")], ids=lambda c: c["id"])
def test_a_valid_rule_writes_back_a_rule_the_schema_accepts(case):
    rule = Rule.from_dict(mapping_of(case))
    assert schema_fields(rule.to_dict()) == set()
    assert Rule.from_dict(rule.to_dict()) == rule


@pytest.mark.parametrize("case", [c for c in CASES if isinstance(mapping_of(c), dict)], ids=lambda c: c["id"])
def test_the_builtin_library_s_loading_path_names_the_same_fields(case, tmp_path):
    """`check_schema=False`, as the builtin library loads: the rule model alone, placed in the file."""
    path = tmp_path / "rule.yaml"
    path.write_text(yaml.safe_dump(mapping_of(case), sort_keys=False, allow_unicode=True), encoding="utf-8")
    # the shape of the file, not whether the catalog knows a trainer (E020, tested in test_trainer_ids.py)
    # (a malformed id such as DPO is reported once, as E020 with its did-you-mean)
    expected = expected_fields(case)[1]
    problems = [p for p in read_rule_file(path, check_schema=False).problems
                if p.diagnostic.code != "E020" or "trainers" in expected]
    assert {p.diagnostic.field for p in problems} == expected
    assert all(p.diagnostic.span is not None for p in problems)


def test_the_model_uses_the_schema_s_own_fields_patterns_and_names():
    schema = rule_schema()
    properties = schema["properties"]
    assert set(FIELDS) == set(properties) and set(REQUIRED) == set(schema["required"])
    assert NAME_PATTERN.pattern == properties["name"]["pattern"]
    assert TRAINER_PATTERN.pattern == properties["trainers"]["items"]["pattern"]
    assert all(properties[name]["pattern"] == NOT_BLANK.pattern
               for name in ("metric", "condition", "description", "when"))
    assert tuple(properties["severity"]["enum"]) == SEVERITIES
    assert list(schema["patternProperties"]) == ["^x-"] and schema["additionalProperties"] is False


def test_a_key_that_is_not_text_is_an_unknown_field_for_both(tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False) + "1: x\n", encoding="utf-8")
    assert {p.diagnostic.field for p in read_rule_file(path, check_schema=False).problems} == {"1"}
    assert {p.diagnostic.field for p in read_rule_file(path).problems} == {"1"}


@pytest.mark.parametrize("text", ["", "- name\n- trainers\n", "just text\n"])
def test_a_file_that_is_not_a_mapping_is_a_problem_without_the_schema_too(text, tmp_path):
    path = tmp_path / "rule.yaml"
    path.write_text(text, encoding="utf-8")
    assert read_rule_file(path).problems
    assert read_rule_file(path, check_schema=False).problems


# ---------------------------------------------------------------- random rules

TEXT = st.text(alphabet="ab_Z1 -*/<>.{}\n", max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 2.0, 0.5, -1.0, 1e12])
           | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=6)
# Values that sit on an edge of some field's contract.
TRICKY = st.sampled_from(["*", "DPO", "", " ", "abc\n", "HIGH", "yes", "20", 1.5, 2.0, 0, -1, True, None, [], {},
                          ["*"], ["a", 1]])


def near(good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a value of the right shape; one time in six any JSON value, or one on an edge."""
    return st.sampled_from([good] * 10 + [TRICKY, JSON]).flatmap(lambda chosen: chosen)  # shrinks to `good`


WHOLE = st.integers(0, 60) | st.integers(0, 5).map(float)
EPISODE = st.fixed_dictionaries({"first_step": near(WHOLE)}, optional={
    "last_step": near(WHOLE), "message": near(TEXT), "metric": near(TEXT), "last": JSON})
CONFIG_VALUE = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | TEXT
LOG_VALUE = st.floats(allow_nan=False) | st.none() | TEXT  # NaN would not equal itself after the YAML round trip
CASE = st.fixed_dictionaries({
    "series": near(st.dictionaries(TEXT, near(st.lists(near(LOG_VALUE), max_size=3)), max_size=2)),
    "expect": near(st.lists(near(EPISODE), max_size=2)),
}, optional={"name": near(TEXT), "steps": near(st.lists(near(WHOLE), max_size=3)),
             "config": near(st.dictionaries(TEXT, near(CONFIG_VALUE), max_size=2)), "colour": JSON})
GOOD = {  # a valid value of each field
    "name": st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
    "trainers": st.lists(near(st.sampled_from(["grpo", "dpo", "all", "common"])), min_size=1, max_size=3),
    "metric": st.sampled_from(["loss", "rewards/margins", "my metric"]),
    "condition": st.sampled_from(["< 0.5", "loss > 2", "drop(50%)", "< 0.5 for 2 steps"]),
    "severity": st.sampled_from(SEVERITIES),
    "message": st.sampled_from(["", "{value:.3f}", "loss at {step}"]),
    "description": TEXT.filter(NOT_BLANK.search),
    "window": WHOLE.filter(bool),
    "min_steps": WHOLE,
    "for": WHOLE.filter(bool),
    "when": st.sampled_from(["config.beta > 0", "config.loss_type == 'sigmoid'", "loss > 0", "config.x >"]),
    "reference": TEXT | st.lists(near(TEXT), max_size=2),
    "enabled": st.booleans(),
    "tags": st.lists(near(TEXT), max_size=2),
    "tests": st.lists(near(CASE), max_size=2),
}
OTHER_KEYS = ("x-owner", "x-", "colour", "config", "Name")


@st.composite
def rule_mappings(draw) -> dict[str, Any]:
    mapping = {name: draw(near(GOOD[name])) for name in REQUIRED}
    for name in draw(st.lists(st.sampled_from(REQUIRED), max_size=2)):
        mapping.pop(name, None)  # sometimes a required field is missing
    for name in draw(st.lists(st.sampled_from([f for f in FIELDS if f not in REQUIRED]), max_size=4)):
        mapping[name] = draw(near(GOOD[name]))
    for key in draw(st.lists(st.sampled_from(OTHER_KEYS), max_size=1)):
        mapping[key] = draw(JSON)
    return mapping


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_mappings())
def test_the_schema_and_the_model_agree_on_any_rule(mapping):
    problems = model_problems(mapping)
    assert schema_fields(mapping) == {d.field for d in problems if not beyond_schema(d)}, problems


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(FIELDS)), JSON)
def test_the_schema_and_the_model_agree_on_any_value_of_one_field(name, value):
    mapping = BASE | {name: value}
    problems = model_problems(mapping)
    assert schema_fields(mapping) == {d.field for d in problems if not beyond_schema(d)}, problems
