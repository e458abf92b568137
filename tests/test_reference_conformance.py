"""The reference evaluator (tests/reference_evaluator.py) reproduces every worked case of spec §9.

This is what lets the property tests trust it as the other side of a comparison.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import ruledsl
from reference_evaluator import reference_audit, reference_evaluations

CASES_FILE = Path(__file__).parent / "data" / "conformance.jsonl"
CASES = [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def rule_of(case: dict) -> ruledsl.Rule:
    mapping = {"name": "case_" + case["id"], "trainers": ["all"], "severity": "high", "message": "{value}",
               "condition": case["condition"], "window": case["window"], "min_steps": case["min_steps"],
               "for": case["for"]}
    if case["metric"] is not None:
        mapping["metric"] = case["metric"]
    return ruledsl.Rule.from_dict(mapping)


def rows_of(case: dict) -> list:
    # float() reads the spec's "nan", "inf", "-inf" strings as well as plain numbers
    return [("run", step, {k: float(v) for k, v in values.items()}) for step, values in case["rows"]]


def same_value(got: float, expected) -> bool:
    expected = float(expected)
    if math.isnan(expected):
        return math.isnan(got)
    if math.isinf(expected):
        return got == expected
    return math.isclose(got, expected, rel_tol=1e-9)


def test_every_case_is_read():
    assert len(CASES) == 76
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reference_reproduces_the_worked_case(case):
    got = reference_audit(rows_of(case), rule_of(case))
    expected = case["expect"]
    shown = [(e["first_step"], e["last_step"], e["n_evals"], e["value"]) for e in got]
    assert len(got) == len(expected), f"{case['id']} ({case['what']}): got {shown}"
    for episode, want in zip(got, expected):
        assert episode["run"] == "run"
        assert (episode["first_step"], episode["last_step"], episode["n_evals"]) == \
            (want["first_step"], want["last_step"], want["n_evals"]), f"{case['id']}: got {shown}"
        assert same_value(episode["value"], want["value"]), f"{case['id']}: got {shown}"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reference_evaluations_agree_with_its_episodes(case):
    """The firing evaluations are exactly the ones the episodes count."""
    evaluations = reference_evaluations(rows_of(case), rule_of(case))
    episodes = reference_audit(rows_of(case), rule_of(case))
    assert sum(e["fired"] for e in evaluations) == sum(e["n_evals"] for e in episodes)
    firsts = [e["step"] for j, e in enumerate(evaluations)
              if e["fired"] and (j == 0 or not evaluations[j - 1]["fired"])]
    assert firsts == [e["first_step"] for e in episodes]
