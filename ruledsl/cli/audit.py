"""`ruledsl audit`: stored training logs → alert episodes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import polars as pl
import typer

from ruledsl.alerts import SEVERITIES, at_least
from ruledsl.cli.app import app, fail
from ruledsl.cli.progress import ProgressLine
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.lang.errors import FrameError, RuleSyntaxError
from ruledsl.model.config import ConfigError, looks_like_config_file, parse_override, read_config_file
from ruledsl.model.loader import RuleLoadError, load_rules
from ruledsl.model.rule import rule_from_inline
from ruledsl.readers import read_archive
from ruledsl.report import Format, ReportContext, choose_format, render


@app.command()
def audit(
    paths: list[Path] = typer.Argument(..., help="Log files or directories: *.jsonl (metrics.jsonl), "
                                       "trainer_state.json (newest checkpoint), *.csv, *.parquet, TensorBoard "
                                       "event files, MLflow stores (mlruns/). Each run is found once."),
    rules: list[Path] = typer.Option([], "--rules", help="A rule file or directory (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
    trainer: str | None = typer.Option(None, "--trainer", help="Trainer id of every run (sft, dpo, grpo, …). "
                                          "Without it: the run's diagnostics/run.json, else a guess from its "
                                          "metric keys, else unknown: the rules of every trainer its keys fit, "
                                          "or every rule."),
    alert: list[str] = typer.Option([], "--alert", help="An inline alert, e.g. "
                                    "\"grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed\"."),
    output_format: Format | None = typer.Option(None, "--format", help="table (default), json (one array of "
                                                   "records, docs/language.md §4), jsonl, csv, markdown or "
                                                   "html (with charts); "
                                                   "without it, the --output suffix chooses (.json, .md, …)."),
    output: Path | None = typer.Option(None, "--output", help="Write the report here instead of stdout."),
    max_charts: int = typer.Option(100, "--max-charts", min=0, help="Charts in a markdown or html report at "
                                   "most: those of the most severe alerts; the report says how many it left "
                                   "out (every alert stays in its table)."),
    fail_on: str | None = typer.Option(None, "--fail-on", help="Exit 1 when an alert of this severity "
                                          "or worse is found (low, medium, high, critical)."),
    streaming: bool | None = typer.Option(None, "--streaming/--no-streaming", help="Run the query on polars' "
                                             "streaming engine (bounded memory). Default: only for archives "
                                             "larger than a quarter of the machine's memory."),
    config: list[str] = typer.Option([], "--config", metavar="KEY=VALUE|FILE", help="Set a key of every "
                                     "run's configuration, which rules read as config.KEY and in `when` "
                                     "(repeatable; later ones win, and all win over what the logs keep: "
                                     "run.json, MLflow params, W&B's config, TensorBoard's args). KEY=VALUE "
                                     "types VALUE as JSON or YAML: beta=0.1, use_vllm=true, loss_type=sigmoid, "
                                     "report_to=[wandb] (report_to.0); KEY=null removes the key. FILE: a "
                                     "YAML or JSON file of keys (nested keys join with '.'; W&B's "
                                     "config.yaml works too), any existing file or a name ending in .yaml, "
                                     ".yml or .json."),
) -> None:
    """Audit stored training logs with the builtin rules and your own."""
    if fail_on is not None and fail_on not in SEVERITIES:
        fail(f"--fail-on takes one of {', '.join(SEVERITIES)}, not {fail_on!r}")
    overrides = _config_options(config)
    try:
        rule_set = load_rules(rules, trainer=trainer, include_builtin=not no_builtin)
        rule_set += [rule_from_inline(text) for text in alert]
    except RuleLoadError as exc:
        fail(str(exc))
    except RuleSyntaxError as exc:
        fail(f"in --alert:\n{exc}")
    progress = ProgressLine("reading logs")
    archive = read_archive(list(paths), progress=progress)
    progress.close()
    for problem in archive.problems:
        typer.echo(f"warning: {problem}", err=True)
    for note in archive.notes:
        typer.echo(f"note: {note}", err=True)
    if not archive.sources:
        fail("no readable run under the given paths")
    try:
        audited = audit_archive(archive, rule_set, trainer=trainer, streaming=streaming, config=overrides)
    except FrameError as exc:
        fail(str(exc))
    except pl.exceptions.PolarsError as exc:  # a table damaged past the rows polars checked up front
        fail(f"reading the logs failed: {str(exc).strip().splitlines()[0]}")
    for note in audited.notes:
        typer.echo(f"note: {note}", err=True)
    records, frame, runs = audited.records, audited.frame, audited.runs
    chosen, mismatch = choose_format(output_format, output)
    if mismatch:
        typer.echo(f"warning: {mismatch}", err=True)
    context = ReportContext(frame, rule_set, n_runs=len(runs), trainer=trainer,
                            terminal=output is None and sys.stdout.isatty(), max_charts=max_charts)
    report = render(records, chosen, context)
    if output is not None:
        try:
            output.write_text(report, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write the report to {output}: {exc.strerror or exc}")
    else:
        typer.echo(report, nl=False)
    if fail_on is not None and any(at_least(s, fail_on) for s in records["severity"]):
        raise typer.Exit(1)


def _config_options(values: list[str]) -> dict[str, Any]:
    """The --config options as one set of keys, later ones winning; a null is kept (it removes
    the key from what the logs keep). A malformed one is a usage error naming it."""
    overrides: dict[str, Any] = {}
    for value in values:
        if looks_like_config_file(value):
            try:
                overrides.update(read_config_file(value))
            except ConfigError as exc:
                fail(f"--config: {exc}")
            continue
        try:
            overrides.update(parse_override(value))
        except ValueError as exc:
            fail(f"--config: {exc}")
    return overrides
