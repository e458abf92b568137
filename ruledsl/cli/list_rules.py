"""`ruledsl list`: the rule library, or the rules a run of one trainer is checked with.

The rules are the loader's (`load_rules`), selected for `--trainer` exactly as `ruledsl audit`
selects them, so the list is what would run. The rendering is ruledsl/docs/rule_library.py's,
which also writes docs/rules.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from enum import Enum
from pathlib import Path

import typer

from ruledsl.cli.app import app, check_rule_paths, fail
from ruledsl.cli.readable_help import choices
from ruledsl.docs import rule_library
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.loader import RuleLoadError, load_rules
from ruledsl.model.rule import Rule


class ListFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


FORMATS = choices(ListFormat)


@app.command("list")
def list_rules(
    trainer: str | None = typer.Option(None, "--trainer", metavar="ID", help="Only the rules a run of this "
                                          "trainer is checked with: those naming it and those for every "
                                          "trainer (sft, dpo, grpo, …; `all`: only those for every trainer)."),
    output_format: ListFormat = typer.Option(ListFormat.table, "--format", metavar=FORMATS,
                                             help="table (100 columns, or the terminal's width), json (an array "
                                             "of objects with every setting and the file) or markdown (as "
                                             "docs/rules.md)."),
    rules: list[Path] = typer.Option([], "--rules", metavar="PATH", help="A rule file or directory to list "
                                     "too (repeatable)."),
    no_builtin: bool = typer.Option(False, "--no-builtin", help="Leave out the builtin rule library."),
) -> None:
    """List rules, worst severity first: name, trainers, severity, metric, condition, what each catches.

    \b
    Examples:
      ruledsl list --trainer grpo            # the rules a GRPO run is checked with
      ruledsl list --rules my_rules/ --no-builtin --format json
    """
    _check_trainer(trainer)
    check_rule_paths(rules)
    if no_builtin and not rules:
        fail("--no-builtin leaves no rule to list: give --rules PATH too")
    try:
        selected = load_rules(rules, trainer=trainer, include_builtin=not no_builtin)
    except RuleLoadError as exc:
        fail(str(exc))
    typer.echo(_rendered(selected, output_format, trainer), nl=False)


def _rendered(rules: list[Rule], output_format: ListFormat, trainer: str | None) -> str:
    if output_format is ListFormat.json:
        return json.dumps(rule_library.records(rules), indent=2) + "\n"
    if output_format is ListFormat.markdown:
        return rule_library.markdown(rules, trainer)
    return rule_library.table(rules, trainer, width=_table_width())


def _table_width() -> int:
    """The terminal's width on a terminal; 100 columns for a pipe or a file, whatever the terminal."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size((rule_library.TABLE_WIDTH, 24)).columns
    return rule_library.TABLE_WIDTH


def _check_trainer(trainer: str | None) -> None:
    """An id the metric catalog does not know is a usage error that names the ones it does."""
    if trainer is None:
        return
    catalog = builtin_catalog()
    problem = catalog.unknown_trainer(trainer)
    if problem is not None:
        known = ", ".join(sorted(catalog.trainer_ids))
        fail(f"--trainer: {problem.message}\n" + textwrap.fill(
            f"known trainer ids: {known}; or all, for the rules of every trainer", width=100,
            initial_indent="  ", subsequent_indent="    "))
