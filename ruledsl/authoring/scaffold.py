"""`ruledsl new`: a rule file to start from, with test cases that already pass.

The test cases are found, not invented: candidate series built from the
condition's own numbers (constant levels around each number, a step from one
level to another, two levels alternating, a jump, a NaN) are run through the batch engine; the first
one on which the rule fires and the first on which it stays silent become the
cases, with the episodes the engine reported. The author then edits them into
cases that tell the rule's story.

A case stays a few dozen values (`MAX_CASE_VALUES`) whatever the rule's counts: a `for` or
`min_steps` longer than that is met by logging the values some steps apart (the case's
`steps:`), since both count training steps. A window counts values, so a rule whose first
evaluation needs more values than that gets no firing case: the file says so in a comment.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from ruledsl.authoring.rule_tests import ENGINES, case_rows
from ruledsl.lang import ast, meaning
from ruledsl.model.rule import Rule

SCHEMA_LINE = "# yaml-language-server: $schema={schema}\n"
# The most values a candidate series has. A found case is written into the file and read by people;
# windows go up to 100,000 values and `for`/`min_steps` to 10^12 steps, and series that long made
# `ruledsl new -w 100000` write 3 MB in 28 s (and `for 10^9 steps` run out of memory).
MAX_CASE_VALUES = 64
# The most candidate series run. Each is an engine run of a few ms; their number grows with the square of
# the condition's numbers, so a long condition that never fires on them would otherwise search for hours.
MAX_CANDIDATES = 500


class RuleDumper(yaml.SafeDumper):
    """The safe dumper, writing a value used twice out twice: rule files have no anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class FoundCase:
    name: str
    values: list[Any]
    episodes: list[dict[str, int]]
    steps: list[int] | None = None  # None: one value per step from step 0


@dataclass(frozen=True)
class CaseShape:
    """How candidate series are laid out: `length` values, logged every `stride` training steps."""

    length: int
    stride: int = 1

    @property
    def steps(self) -> list[int] | None:
        """The case's `steps:`, None for the default (one value per step from step 0)."""
        return None if self.stride == 1 else [i * self.stride for i in range(self.length)]


def scaffold(rule: Rule, schema_path: str) -> str:
    """The YAML text of a new rule file for `rule`, with found test cases."""
    document: dict[str, Any] = {
        "name": rule.name, "trainers": list(rule.trainers), "metric": rule.metric,
        "condition": rule.condition.text, "window": rule.window, "severity": rule.severity,
        "message": rule.message.source,
        "description": "TODO: what goes wrong in training when this fires, and what to do about it.",
        "reference": ["TODO: the paper, doc or issue that backs the threshold"],
    }
    if rule.metric is None:
        del document["metric"], document["window"]
    cases = find_cases(rule)
    tests = {"tests": [_case_entry(rule, case) for case in cases]}
    return SCHEMA_LINE.format(schema=schema_path) + _dumped(document) + _missing_firing_case(rule, cases) + \
        _dumped(tests)


def _dumped(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=RuleDumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None)


def _case_entry(rule: Rule, case: FoundCase) -> dict[str, Any]:
    expect = [{"first_step": e["first_step"], "last_step": e["last_step"]} for e in case.episodes]
    entry: dict[str, Any] = {"name": case.name, "series": {_metric(rule): case.values}}
    if case.steps is not None:
        entry["steps"] = case.steps
    return entry | {"expect": expect}


def _metric(rule: Rule) -> str:
    return rule.metric or next(iter(rule.metrics))


def _missing_firing_case(rule: Rule, cases: list[FoundCase]) -> str:
    """A YAML comment before `tests:` when no firing case was found, saying what was tried; else nothing."""
    if any(case.episodes for case in cases):
        return ""
    length = case_shape(rule).length
    sentences = [f"No firing case: none of the series tried ({length} values each) made the rule fire."]
    needed = values_to_evaluate(rule)
    if needed > length:
        sentences.append(f"Its windows need {needed:,} values of {_metric(rule)} before it is evaluated in full"
                         + ("; the silent case below is shorter than that." if cases else "."))
        sentences.append(f"A firing case needs {needed:,}+ values: write one, or try the condition with a smaller "
                         "window first.")
    else:
        sentences.append("Write one that does.")
    return "".join(f"# {line}\n" for line in textwrap.wrap(" ".join(sentences), width=98))


def find_cases(rule: Rule) -> list[FoundCase]:
    """A firing case and a silent case, where the candidate series give them."""
    firing = silent = None
    run = ENGINES["batch"]
    shape = case_shape(rule)
    logged = "" if shape.stride == 1 else f", logged every {shape.stride:,} steps"
    for name, values in itertools.islice(candidate_series(rule), MAX_CANDIDATES):
        metrics = rule.metrics or (rule.metric,)
        rows = case_rows({"series": {m: values for m in metrics}, "steps": shape.steps})
        episodes = run(rule, rows, None if rule.applies_to_all else rule.trainers[0], None)
        if episodes and firing is None:
            firing = FoundCase(f"TODO fires: {name}{logged}", values, episodes, shape.steps)
        if not episodes and silent is None:
            silent = FoundCase(f"TODO silent: {name}{logged}", values, [], shape.steps)
        if firing and silent:
            break
    return [c for c in (firing, silent) if c is not None]


def case_shape(rule: Rule) -> CaseShape:
    """Enough values for the rule's windows and steps for its `for` and `min_steps`, within MAX_CASE_VALUES."""
    warm_up = 3 * max(_windows(rule)) + 2  # values: a window counts values, however far apart they are logged
    wait = rule.sustain + rule.min_steps  # training steps
    if warm_up + wait <= MAX_CASE_VALUES:
        return CaseShape(warm_up + wait)  # logged every step, as every short case is
    # Logged `stride` steps apart, a quarter of the values spans the wait: enough for it to pass
    # after a change at mid-series, once the windows have filled again.
    return CaseShape(MAX_CASE_VALUES, max(1, math.ceil(wait / (MAX_CASE_VALUES // 4))))


def values_to_evaluate(rule: Rule) -> int:
    """How many values of its metric the rule's windows need before its condition is evaluated in full
    (docs/language.md §3): a window of W needs W values, drop/rise 2W, a lagged mean(m, W, L) W + L.
    (A full expression may fire sooner where `or` joins a shorter window: this is an upper bound there.)"""
    if rule.condition.is_shorthand:
        return 1 + meaning.first_index(rule.condition.body, rule.window)
    calls = [n for n in ast.walk(rule.condition.body) if isinstance(n, ast.Call) and n.name in meaning.SERIES_FUNCTIONS]
    return 1 + max((meaning.FUNCTIONS[c.name].first_index(c.window, c.lag) for c in calls), default=0)


def candidate_series(rule: Rule) -> Iterator[tuple[str, list[Any]]]:
    """Short series around the condition's numbers, long enough for its windows (within MAX_CASE_VALUES)."""
    length = case_shape(rule).length
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
    """The rule's window and each function's, a lagged one's lag included: the values each one spans."""
    calls = [n.window + n.lag for n in ast.walk(rule.condition.body) if isinstance(n, ast.Call) and n.name != "abs"]
    return [rule.window, *calls]


def _numbers(condition: ast.Condition) -> list[float]:
    return [n.value for n in ast.walk(condition.body) if isinstance(n, ast.Number)] or [1.0]
