"""`ruledsl lint`: check rule files before review; exit 1 on errors."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path

import typer

from ruledsl.cli.app import app, fail, terminal_text
from ruledsl.cli.readable_help import choices
from ruledsl.lang.codes import CODES
from ruledsl.lint import formats
from ruledsl.lint import lint as lint_files
from ruledsl.model.loader import builtin_rules_dir


class LintFormat(str, Enum):
    human = "human"
    json = "json"
    github = "github"
    sarif = "sarif"


FORMATS = choices(LintFormat)


@app.command()
def lint(
    paths: list[Path] = typer.Argument(None, metavar="PATH…", help="Rule files or directories (searched recursively "
                                       "for *.yaml, *.yml). Default: the builtin library."),
    output_format: LintFormat = typer.Option(LintFormat.human, "--format", metavar=FORMATS, help="human (colour on a "
                                             "terminal), json, github (workflow annotations) or sarif (code "
                                             "scanning)."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too (exit 1)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Do not report names that the builtin library "
                                    "already uses (E003)."),
    no_tests: bool = typer.Option(False, "--no-tests", help="Do not run the rules' tests: cases."),
    output: Path | None = typer.Option(None, "--output", metavar="FILE", help="Write the report here instead of "
                                       "stdout (and say so on stderr)."),
    list_codes: bool = typer.Option(False, "--list-codes", help="Print every diagnostic code and exit."),
) -> None:
    """Check rule files: schema, condition syntax, templates, metrics, trainers, duplicate names, tests.

    Every problem has a code (see --list-codes), a file, line and column.
    Exit status: 0 clean (warnings allowed), 1 errors (or warnings with --strict), 2 usage error.

    \b
    Examples:
      ruledsl lint rules/my_rules/
      ruledsl lint --strict --format github rules/   # in a GitHub Actions job
    """
    if list_codes:
        typer.echo("".join(f"{c.code}  {c.severity:<7}  {c.title}: {c.explanation}\n" for c in CODES.values()),
                   nl=False)
        return
    targets = list(paths) if paths else [builtin_rules_dir()]
    for path in targets:
        if not path.exists():
            fail(f"no such file or directory: {path}")
    report = lint_files(targets, against_builtin=bool(paths) and not no_builtin, run_tests=not no_tests)
    if not report.files:
        fail(f"no rule files (*.yaml, *.yml) under {', '.join(map(str, targets))}")
    text = _rendered(report, output_format, colour=output is None and _colour_wanted())
    if output is not None:
        _write(output, text, output_format)
    else:
        typer.echo(text, nl=False)
    if report.errors or (strict and report.warnings):
        raise typer.Exit(1)


def _write(output: Path, text: str, output_format: LintFormat) -> None:
    """The report in `output`, and where it went on stderr: nothing else says the command did it."""
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write the report to {output}: {exc.strerror or exc}")
    typer.echo(terminal_text(f"report: {output_format.value} written to {output}"), err=True)


def _rendered(report, output_format: LintFormat, colour: bool) -> str:
    if output_format is LintFormat.human:
        return formats.human(report, colour)
    return {LintFormat.json: formats.as_json, LintFormat.github: formats.github,
            LintFormat.sarif: formats.sarif}[output_format](report)


def _colour_wanted() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ
