"""The worked cases of the spec (tests/data/conformance.jsonl) as frames and rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

CASES_FILE = Path(__file__).parent / "data" / "conformance.jsonl"


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()]


def as_float(value) -> float:
    return float(value)  # float("nan"), float("inf"), float("-inf") read the spec's strings


def wide_frame(case: dict) -> pl.DataFrame:
    keys = sorted({k for _, values in case["rows"] for k in values})
    records = [{"step": step, **{k: as_float(values[k]) if k in values else None for k in keys}}
               for step, values in case["rows"]]
    return pl.DataFrame(records, schema={"step": pl.Int64, **{k: pl.Float64 for k in keys}})


def long_frame(case: dict) -> pl.DataFrame:
    records = [{"step": step, "key": k, "value": as_float(v)}
               for step, values in case["rows"] for k, v in values.items()]
    return pl.DataFrame(records, schema={"step": pl.Int64, "key": pl.String, "value": pl.Float64})


def rule_mapping(case: dict) -> dict:
    mapping = {"name": "case_" + case["id"], "trainers": ["all"], "condition": case["condition"],
               "severity": "high", "message": "{value}", "window": case["window"],
               "min_steps": case["min_steps"], "for": case["for"]}
    if case["metric"] is not None:
        mapping["metric"] = case["metric"]
    return mapping


def same_value(got: float, expected) -> bool:
    expected = as_float(expected)
    if math.isnan(expected):
        return math.isnan(got)
    return math.isclose(got, expected, rel_tol=1e-9)


def assert_episodes(got: list[dict], expected: list[dict], case_id: str) -> None:
    assert [(e["first_step"], e["last_step"], e["n_evals"]) for e in got] == \
        [(e["first_step"], e["last_step"], e["n_evals"]) for e in expected], case_id
    for g, e in zip(got, expected):
        assert same_value(g["value"], e["value"]), (case_id, g["value"], e["value"])
