"""The `ruledsl` command line."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import polars as pl
import typer

from . import engine
from .errors import FrameError, RuleSyntaxError
from .loader import RuleLoadError, load_rules
from .readers import read_runs
from .rule import SEVERITIES, rule_from_inline

app = typer.Typer(
    help="Declarative rules that catch broken TRL post-training runs.\n\n"
    "Example: ruledsl audit examples/runs --fail-on high",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
)

USAGE_ERROR = 2
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
ICONS = {"low": "·", "medium": "⚠", "high": "🚨", "critical": "🔥"}


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


@app.callback()
def _commands() -> None:
    """Declarative rules that catch broken TRL post-training runs."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


@app.command()
def audit(
    paths: List[Path] = typer.Argument(..., help="Log files or directories: *.jsonl (metrics.jsonl), "
                                       "trainer_state.json, *.csv, *.parquet. Each file is a run."),
    rules: List[Path] = typer.Option([], "--rules", help="A rule file or directory (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
    trainer: Optional[str] = typer.Option(None, "--trainer", help="Trainer id of the runs (sft, dpo, grpo, …); "
                                          "unknown: every rule runs."),
    alert: List[str] = typer.Option([], "--alert", help="An inline alert, e.g. "
                                    "\"grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed\"."),
    output_format: Format = typer.Option(Format.table, "--format", help="table, json (one array of spec §4 "
                                         "records) or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the report here instead of stdout."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when an alert of this severity "
                                          "or worse is found (low, medium, high, critical)."),
) -> None:
    """Audit stored training logs with the builtin rules and your own."""
    if fail_on is not None and fail_on not in SEVERITY_RANK:
        _fail(f"--fail-on takes one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    try:
        rule_set = load_rules(rules, trainer=trainer, include_builtin=not no_builtin)
        rule_set += [rule_from_inline(text) for text in alert]
    except RuleLoadError as exc:
        _fail(str(exc))
    except RuleSyntaxError as exc:
        _fail(f"in --alert:\n{exc}")
    frame, runs, problems = read_runs(list(paths))
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    if not runs:
        _fail("no readable run under the given paths")
    try:
        records = engine.audit(frame, rule_set, trainer=trainer)
    except FrameError as exc:
        _fail(str(exc))
    report = _render(records, output_format, len(runs), len(rule_set), trainer)
    if output is not None:
        output.write_text(report, encoding="utf-8")
    else:
        typer.echo(report, nl=False)
    if fail_on is not None and any(SEVERITY_RANK[s] >= SEVERITY_RANK[fail_on] for s in records["severity"]):
        raise typer.Exit(1)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _json_records(records: pl.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in records.iter_rows(named=True)]


def _render(records: pl.DataFrame, output_format: Format, n_runs: int, n_rules: int, trainer: str | None) -> str:
    if output_format is Format.json:
        return json.dumps(_json_records(records), indent=2) + "\n"
    if output_format is Format.jsonl:
        return "".join(json.dumps(r) + "\n" for r in _json_records(records))
    return _table(records, n_runs, n_rules, trainer)


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


def main() -> None:  # pragma: no cover - console entry point
    app()
