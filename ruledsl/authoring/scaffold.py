"""`ruledsl new`: a rule file to start from, with test cases that already pass.

The test cases are found, not invented: candidate series built from the
condition's own numbers (constant levels around each number, a step from one
level to another, two levels alternating, a jump, a NaN) are run through the batch engine; the first
one on which the rule fires and the first on which it stays silent become the
cases, with the episodes the engine reported. The author then edits them into
cases that tell the rule's story.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from ruledsl.authoring.rule_tests import ENGINES, case_rows
from ruledsl.lang import ast
from ruledsl.model.rule import Rule

SCHEMA_LINE = "# yaml-language-server: $schema={schema}\n"


@dataclass(frozen=True)
class FoundCase:
    name: str
    values: list[Any]
    episodes: list[dict[str, int]]


def scaffold(rule: Rule, schema_path: str) -> str:
    """The YAML text of a new rule file for `rule`, with found test cases."""
    document: dict[str, Any] = {
        "name": rule.name, "trainers": list(rule.trainers), "metric": rule.metric,
        "condition": rule.condition.text, "window": rule.window, "severity": rule.severity,
        "message": rule.message.source,
        "description": "TODO: what goes wrong in training when this fires, and what to do about it.",
        "reference": ["TODO: the paper, doc or issue that backs the threshold"],
        "tests": [_case_entry(rule, case) for case in find_cases(rule)],
    }
    if rule.metric is None:
        del document["metric"], document["window"]
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None)
    return SCHEMA_LINE.format(schema=schema_path) + body


def _case_entry(rule: Rule, case: FoundCase) -> dict[str, Any]:
    metric = rule.metric or next(iter(rule.metrics))
    expect = [{"first_step": e["first_step"], "last_step": e["last_step"]} for e in case.episodes]
    return {"name": case.name, "series": {metric: case.values}, "expect": expect}


def find_cases(rule: Rule) -> list[FoundCase]:
    """A firing case and a silent case, where the candidate series give them."""
    firing = silent = None
    run = ENGINES["batch"]
    for name, values in candidate_series(rule):
        metrics = rule.metrics or (rule.metric,)
        rows = case_rows({"series": {m: values for m in metrics}})
        episodes = run(rule, rows, None if rule.applies_to_all else rule.trainers[0], None)
        if episodes and firing is None:
            firing = FoundCase(f"TODO fires: {name}", values, episodes)
        if not episodes and silent is None:
            silent = FoundCase(f"TODO silent: {name}", values, [])
        if firing and silent:
            break
    return [c for c in (firing, silent) if c is not None]


def candidate_series(rule: Rule) -> Iterator[tuple[str, list[Any]]]:
    """Short series around the condition's numbers, long enough for its windows."""
    length = 3 * max(_windows(rule)) + rule.sustain + rule.min_steps + 2
    levels = sorted({round(v, 6) for n in _numbers(rule.condition) for v in (n, n - 1, n + 1, n / 2, n * 2,
                                                                                  n * 0.9, n * 1.1)} | {0.0, 1.0})
    for level in levels:
        yield f"constant {level:g}", [level] * length
    for before, after in itertools.permutations(levels, 2):
        yield f"from {before:g} to {after:g}", [before] * (length // 2) + [after] * (length - length // 2)
    for low, high in itertools.combinations(levels, 2):
        yield f"alternating {low:g} and {high:g}", [low if i % 2 else high for i in range(length)]
    yield "a jump", [1.0] * (length - 1) + [1000.0]
    yield "a NaN", [1.0] * (length - 1) + ["nan"]


def _windows(rule: Rule) -> list[int]:
    calls = [n.window for n in ast.walk(rule.condition.body) if isinstance(n, ast.Call) and n.name != "abs"]
    return [rule.window, *calls]


def _numbers(condition: ast.Condition) -> list[float]:
    return [n.value for n in ast.walk(condition.body) if isinstance(n, ast.Number)] or [1.0]
