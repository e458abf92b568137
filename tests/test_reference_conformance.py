"""The reference evaluator (tests/reference_evaluator.py) reproduces every worked case of docs/language.md §9.

This is what lets the property tests trust it as the other side of a comparison.
A few plain tests below pin the parts of the reference API the cases do not reach
(a configuration per run, nulls in merging, the older call forms).
"""

from __future__ import annotations

import math

import pytest

import ruledsl
from conformance_cases import (
    RUN,
    assert_episodes,
    config_of,
    episode_summary,
    load_cases,
    reference_rows,
    reference_rule,
)
from reference_evaluator import left_to_right_sum, merge_rows, reference_audit, reference_evaluations

CASES = load_cases()
IDS = [c["id"] for c in CASES]


def audit_case(case: dict) -> list[dict]:
    rule, when = reference_rule(case)
    return reference_audit(reference_rows(case), rule, config=config_of(case), when=when)


def evaluate_case(case: dict) -> list[dict]:
    rule, when = reference_rule(case)
    return reference_evaluations(reference_rows(case), rule, config=config_of(case), when=when)


def test_every_case_is_read():
    assert len(CASES) == 92
    assert len(set(IDS)) == len(CASES)


def test_the_cases_cover_the_v2_constructs():
    conditions = " ".join(c["condition"] for c in CASES)
    for construct in ("step", "config.", "absent(", ", 1)", ", 2)"):
        assert construct in conditions, construct
    assert any("*" in (c["metric"] or "") for c in CASES)
    assert any("when" in c for c in CASES)
    assert any(any("metric" in e for e in c["expect"]) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_reproduces_the_worked_case(case):
    got = audit_case(case)
    assert_episodes(got, case["expect"], f"{case['id']} ({case['what']})")
    for episode in got:
        assert episode["run"] == RUN
        if case["metric"] is None:
            assert episode["metric"] is None  # full expressions report no metric (§4)
        elif "*" not in case["metric"]:
            assert episode["metric"] == case["metric"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_evaluations_agree_with_its_episodes(case):
    """The firing evaluations are exactly the ones the episodes count, key by key."""
    evaluations = evaluate_case(case)
    episodes = audit_case(case)
    assert sum(e["fired"] for e in evaluations) == sum(e["n_evals"] for e in episodes)
    firsts = []
    for metric in sorted({e["metric"] or "" for e in evaluations}):
        mine = [e for e in evaluations if (e["metric"] or "") == metric]
        firsts += [(e["step"], metric) for j, e in enumerate(mine)
                   if e["fired"] and (j == 0 or not mine[j - 1]["fired"])]
    assert sorted(firsts) == [(e["first_step"], e["metric"] or "") for e in episodes], \
        episode_summary(episodes)


# ---------------------------------------------------------------- the API beyond the cases


def rule(condition: str, metric: str | None = "m", **fields) -> ruledsl.Rule:
    mapping = {"name": "r", "trainers": ["all"], "severity": "high", "message": "{value}",
               "condition": condition, **fields}
    if metric is not None:
        mapping["metric"] = metric
    return ruledsl.Rule.from_dict(mapping)


def steps_of(episodes: list[dict]) -> list[tuple]:
    return [(e["run"], e["first_step"], e["last_step"], e["n_evals"]) for e in episodes]


def test_old_call_forms_still_work():
    rows = [("r", 0, {"m": 0.1}), ("r", 1, {"m": 0.9})]
    assert steps_of(reference_audit(rows, rule("< 0.5"))) == [("r", 0, 0, 1)]
    assert steps_of(reference_audit(rows, rule("< 0.5"), None)) == [("r", 0, 0, 1)]
    assert [e["fired"] for e in reference_evaluations(rows, rule("< 0.5"), {})] == [True, False]


def test_a_configuration_per_run_and_when_as_text():
    rows = [(run, step, {"m": 0.0}) for run in ("a", "b", "c") for step in (0, 1)]
    configs = {"a": {"beta": 0.1, "loss_type": "ipo"}, "b": {"beta": 0.1, "loss_type": "sigmoid"}}
    got = reference_audit(rows, rule("m < config.beta", metric=None), config=configs.get,
                          when="config.loss_type != 'sigmoid'")
    assert steps_of(got) == [("a", 0, 1, 2)]  # b: when is false; c: no configuration at all


def test_a_config_value_of_the_wrong_kind_means_the_rule_is_not_evaluated():
    rows = [("r", 0, {"m": 0.0})]
    for config in ({"beta": "high"}, {"beta": True}, {"beta": None}, {}):
        assert reference_audit(rows, rule("m < config.beta", metric=None), config=config) == [], config
    # == and != between kinds are defined: false and true (§3)
    assert steps_of(reference_audit(rows, rule("(m < 1) and (config.beta != 1)", metric=None),
                                    config={"beta": True})) == [("r", 0, 0, 1)]
    assert reference_audit(rows, rule("(m < 1) and (config.beta == 1)", metric=None),
                           config={"beta": True}) == []
    assert reference_audit(rows, rule("< 1"), config={"flag": "x"}, when="config.flag > 1") == []


def test_a_later_null_overrides_and_the_key_is_absent():
    rows = [("r", 0, {"m": 1.0}), ("r", 1, {"m": 1.0}), ("r", 2, {"m": 5.0}), ("r", 2, {"m": None}),
            ("r", 3, {"m": None}), ("r", 3, {"m": 0.5})]
    assert merge_rows(rows) == {"r": [(0, {"m": 1.0}), (1, {"m": 1.0}), (2, {}), (3, {"m": 0.5})]}
    assert steps_of(reference_audit(rows, rule("> 2"))) == []
    got = reference_audit(rows, rule("absent(1)"))
    assert steps_of(got) == [("r", 2, 2, 1)] and got[0]["value"] == 1.0


def test_a_sum_of_one_value_is_that_value():
    assert math.copysign(1.0, left_to_right_sum([-0.0])) == -1.0
    got = reference_audit([("r", 0, {"m": -0.0})], rule("sum(m, 1) < 1", metric=None))
    assert math.copysign(1.0, got[0]["value"]) == -1.0
