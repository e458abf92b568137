"""`ruledsl report PATH`: the HTML report of a finished run's diagnostics/ folder (or of any
input `ruledsl audit` reads), written to a file. It opens nothing: it says where it wrote."""

from __future__ import annotations

from pathlib import Path

import typer

from ruledsl.cli.app import app, check_rule_paths, fail
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.loader import RuleLoadError
from ruledsl.report.standalone import NothingToReport, build_html, default_output, write_text_atomically
from ruledsl.report.text import printable


@app.command()
def report(
    path: Path = typer.Argument(..., metavar="PATH", help=(
        "A run's diagnostics/ folder, an output directory, or any log file or folder `ruledsl audit` reads.")),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help=(
        "Where to write the report (default: report.html in PATH, or beside it when PATH is a file).")),
    rules: list[Path] = typer.Option([], "--rules", metavar="PATH", help="A rule file or directory (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
    trainer: str | None = typer.Option(None, "--trainer", metavar="ID", help=(
        "Trainer id of every run (default: run.json's, else guessed from the metric keys).")),
    max_charts: int = typer.Option(100, "--max-charts", min=0, metavar="N", help="Charts of alerted metrics at most."),
) -> None:
    """Write the HTML report of stored logs (opens nothing; prints where it wrote)."""
    if not path.exists():
        fail(f"{path}: no such file or directory")
    check_rule_paths(rules)
    if trainer is not None:
        unknown = builtin_catalog().unknown_trainer(trainer)
        if unknown is not None:
            fail(f"--trainer: {unknown.message}")
    target = output if output is not None else default_output(path)
    try:
        built = build_html([path], rules, builtin=not no_builtin, trainer=trainer, max_charts=max_charts)
    except (NothingToReport, RuleLoadError) as exc:
        fail(str(exc))
    for problem in built.problems:
        typer.echo(printable(f"warning: {problem}"), err=True)
    try:
        write_text_atomically(target, built.html)
    except OSError as exc:
        fail(f"cannot write the report to {target}: {exc.strerror or exc}")
    typer.echo(printable(f"report: {built.n_runs} run(s), {built.n_alerts} alert episode(s), written to {target}"))
