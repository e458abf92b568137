"""`ruledsl audit`: stored training logs → alert episodes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import engine
from ..errors import FrameError, RuleSyntaxError
from ..loader import RuleLoadError, load_rules
from ..readers import read_runs
from ..report import SEVERITY_RANK, Format, ReportContext, choose_format, render
from ..rule import SEVERITIES, rule_from_inline
from .app import app, fail


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
    output_format: Optional[Format] = typer.Option(None, "--format", help="table (default), json (one array of "
                                                   "spec §4 records), jsonl, csv, markdown or html (with charts); "
                                                   "without it, the --output suffix chooses (.json, .md, …)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Write the report here instead of stdout."),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="Exit 1 when an alert of this severity "
                                          "or worse is found (low, medium, high, critical)."),
) -> None:
    """Audit stored training logs with the builtin rules and your own."""
    if fail_on is not None and fail_on not in SEVERITY_RANK:
        fail(f"--fail-on takes one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    try:
        rule_set = load_rules(rules, trainer=trainer, include_builtin=not no_builtin)
        rule_set += [rule_from_inline(text) for text in alert]
    except RuleLoadError as exc:
        fail(str(exc))
    except RuleSyntaxError as exc:
        fail(f"in --alert:\n{exc}")
    frame, runs, problems = read_runs(list(paths))
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)
    if not runs:
        fail("no readable run under the given paths")
    try:
        records = engine.audit(frame, rule_set, trainer=trainer)
    except FrameError as exc:
        fail(str(exc))
    chosen, mismatch = choose_format(output_format, output)
    if mismatch:
        typer.echo(f"warning: {mismatch}", err=True)
    context = ReportContext(frame, rule_set, n_runs=len(runs), trainer=trainer,
                            terminal=output is None and sys.stdout.isatty())
    report = render(records, chosen, context)
    if output is not None:
        try:
            output.write_text(report, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write the report to {output}: {exc.strerror or exc}")
    else:
        typer.echo(report, nl=False)
    if fail_on is not None and any(SEVERITY_RANK[s] >= SEVERITY_RANK[fail_on] for s in records["severity"]):
        raise typer.Exit(1)
