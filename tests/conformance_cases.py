"""The worked cases of the language reference (docs/language.md §9; tests/data/conformance.jsonl).

One JSON object a line: `condition`, `metric` (null for full expressions, or a
pattern like `rewards/*/std`), `window`, `min_steps`, `for`, `rows` (`[step,
{key: value}]` in file order; non-finite values as the strings "nan", "inf",
"-inf"; a JSON null is a null value, §2), optionally `when` and `config` (the
run's configuration), `id`, `what`, and `expect`: the episodes of the single run
(`first_step`, `last_step`, `n_evals`, `value`, and `metric` where the rule's
metric is a pattern; values compared with a relative tolerance of 1e-9).

Helpers for both sides of the comparison:
  * the real engines: `wide_frame`, `long_frame`, `rule_mapping` (with `when`);
  * the reference evaluator (tests/reference_evaluator.py): `reference_rows`,
    `reference_rule` (the Rule and its `when`), `config_of`;
  * both: `assert_episodes`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import polars as pl

import ruledsl
from ruledsl.lang import ast

CASES_FILE = Path(__file__).parent / "data" / "conformance.jsonl"
RUN = "run"  # the run id the reference gives the single run of a case


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def as_float(value) -> float | None:
    """float() reads the spec's "nan", "inf", "-inf" strings as well as plain numbers; null stays None."""
    return None if value is None else float(value)


# ---------------------------------------------------------------- the real engines


def wide_frame(case: dict) -> pl.DataFrame:
    """One column per key; a key a row lacks is null there (a frame cannot tell it from a JSON null)."""
    keys = sorted({k for _, values in case["rows"] for k in values})
    records = [{"step": step, **{k: as_float(values.get(k)) for k in keys}}
               for step, values in case["rows"]]
    return pl.DataFrame(records, schema={"step": pl.Int64, **{k: pl.Float64 for k in keys}})


def long_frame(case: dict) -> pl.DataFrame:
    """One row per (step, key, value); a JSON null is a row whose value is null."""
    records = [{"step": step, "key": k, "value": as_float(v)}
               for step, values in case["rows"] for k, v in values.items()]
    return pl.DataFrame(records, schema={"step": pl.Int64, "key": pl.String, "value": pl.Float64})


def rule_mapping(case: dict, *, with_when: bool = True) -> dict:
    """The case as a rule file's mapping (§1); `when` included where the case has one."""
    mapping = {"name": "case_" + case["id"], "trainers": ["all"], "condition": case["condition"],
               "severity": "high", "message": "{value}", "window": case["window"],
               "min_steps": case["min_steps"], "for": case["for"]}
    if case["metric"] is not None:
        mapping["metric"] = case["metric"]
    if with_when and case.get("when") is not None:
        mapping["when"] = case["when"]
    return mapping


def config_of(case: dict) -> dict | None:
    """The run's configuration (§2), None where the case gives none."""
    return case.get("config")


# ---------------------------------------------------------------- the reference evaluator


def reference_rows(case: dict) -> list:
    """The case's rows as the reference evaluator takes them: (run, step, {key: value}), nulls as None."""
    return [(RUN, step, {k: as_float(v) for k, v in values.items()}) for step, values in case["rows"]]


def rule_model_has_when() -> bool:
    return any(f.name == "when" for f in dataclasses.fields(ruledsl.Rule))


def reference_rule(case: dict) -> tuple[ruledsl.Rule, ast.Condition | None]:
    """The case's Rule and its parsed `when` (None where it has none), for reference_audit(…, when=…).

    While the rule model has no `when` field, the rule is built without it and `when`
    is parsed on its own; once it has one, the rule carries it.
    """
    text = case.get("when")
    if text is None or not rule_model_has_when():
        rule = ruledsl.Rule.from_dict(rule_mapping(case, with_when=False))
        if text is None:
            return rule, None
        from ruledsl.lang.read import parse_when

        return rule, parse_when(text)
    rule = ruledsl.Rule.from_dict(rule_mapping(case))
    return rule, rule.when


# ---------------------------------------------------------------- comparing


def same_value(got, expected) -> bool:
    """Values agree with a relative tolerance of 1e-9 (§9); NaN and ±inf exactly."""
    expected = as_float(expected)
    if got is None or expected is None:
        return got is None and expected is None
    if math.isnan(expected):
        return math.isnan(got)
    if math.isinf(expected):
        return got == expected
    return math.isclose(got, expected, rel_tol=1e-9)


def episode_summary(episodes: list[dict]) -> list[tuple]:
    return [(e["first_step"], e["last_step"], e["n_evals"], e["value"], e.get("metric")) for e in episodes]


def assert_episodes(got: list[dict], expected: list[dict], case_id: str) -> None:
    """The same episodes in the same order: steps, n_evals, value, and `metric` where the
    expectation gives it (a pattern rule, §2)."""
    shown = f"{case_id}: got {episode_summary(got)}, expected {episode_summary(expected)}"
    assert [(e["first_step"], e["last_step"], e["n_evals"]) for e in got] == \
        [(e["first_step"], e["last_step"], e["n_evals"]) for e in expected], shown
    for g, e in zip(got, expected):
        assert same_value(g["value"], e["value"]), shown
        if "metric" in e:
            assert g.get("metric") == e["metric"], shown
