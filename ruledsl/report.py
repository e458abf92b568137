"""Alert records → the text people read: a table, JSON or JSON Lines."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum

import polars as pl

from .rule import SEVERITIES

SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
ICONS = {"low": "·", "medium": "⚠", "high": "🚨", "critical": "🔥"}


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def render(records: pl.DataFrame, output_format: Format, n_runs: int, n_rules: int, trainer: str | None) -> str:
    if output_format is Format.json:
        return json.dumps(_json_records(records), indent=2) + "\n"
    if output_format is Format.jsonl:
        return "".join(json.dumps(r) + "\n" for r in _json_records(records))
    return _table(records, n_runs, n_rules, trainer)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _json_records(records: pl.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in records.iter_rows(named=True)]


def _table(records: pl.DataFrame, n_runs: int, n_rules: int, trainer: str | None) -> str:
    plain = not sys.stdout.isatty()
    lines = [f"Audited {n_runs} run(s) with {n_rules} rule(s)"
             + (f" for trainer {trainer}" if trainer else " (trainer unknown: every rule runs)") + "."]
    if records.is_empty():
        return "\n".join(lines + ["No alerts."]) + "\n"
    ordered = records.with_columns(
        pl.col("severity").replace_strict(SEVERITY_RANK, return_dtype=pl.Int64).alias("_rank")
    ).sort(["run", "_rank", "first_step"], descending=[False, True, False])
    for (run,), group in ordered.group_by("run", maintain_order=True):
        lines.append(f"\n{run}")
        for row in group.iter_rows(named=True):
            mark = f"[{row['severity'].upper()}]" if plain else f"{ICONS[row['severity']]} [{row['severity'].upper()}]"
            steps = f"steps {row['first_step']}–{row['last_step']} ({row['n_evals']} evaluations)"
            lines.append(f"  {mark} {row['rule']}  {steps}")
            lines.append(f"      {row['message']}")
    counts = records.group_by("severity").len()
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.iter_rows(), key=lambda r: -SEVERITY_RANK[r[0]]))
    lines.append(f"\n{len(records)} alert episode(s): {summary}.")
    return "\n".join(lines) + "\n"
