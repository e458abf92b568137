"""`ruledsl test`: run every rule's `tests:` cases (docs/language.md §7); exit 1 on a failure."""

from __future__ import annotations

from pathlib import Path

import typer

from ruledsl.authoring.rule_tests import ENGINES, run_rule_tests
from ruledsl.cli.app import app, fail
from ruledsl.lint.formats import shown_path
from ruledsl.model.loader import builtin_rules_dir, discover, read_rule_file


@app.command("test")
def test_rules(
    paths: list[Path] = typer.Argument(None, metavar="PATH…", help="Rule files or directories. Default: the builtin "
                                       "library."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="One line per case instead of one dot."),
) -> None:
    """Run each rule's tests: cases through every engine and compare the episodes.

    A case gives a small log and the episodes the rule must report on it:

    \b
      tests:
        - name: fires when the ratio collapses
          series: {importance_sampling_ratio: [1.0, 0.98, 0.2, 0.1]}
          expect: [{first_step: 2}]        # steps are 0, 1, 2, … unless `steps:` is given

    The report ends with one line "N passed, N failed". Exit status 1 when a case
    fails or a rule file cannot be loaded (run `ruledsl lint` for its problems).
    """
    targets = list(paths) if paths else [builtin_rules_dir()]
    for path in targets:
        if not path.exists():
            fail(f"no such file or directory: {path}")
    files = [read_rule_file(p) for p in discover(targets)]
    if not files:
        fail(f"no rule files (*.yaml, *.yml) under {', '.join(map(str, targets))}")
    passed, failures, untested = 0, [], []
    typer.echo(f"{len(files)} rule file(s), engines: {', '.join(ENGINES)}")
    for rule_file in files:
        line = shown_path(rule_file.path) + " "
        if rule_file.rule is None:
            failures.append((f"{shown_path(rule_file.path)}: cannot be loaded",
                             [str(p) for p in rule_file.problems]))
            typer.echo(line + "E" if not verbose else line + "LOAD ERROR")
            continue
        results = run_rule_tests(rule_file.rule)
        if not results:
            untested.append(rule_file.rule.name)
        marks = []
        for result in results:
            if result.passed:
                passed += 1
            else:
                failures.append((f"{rule_file.rule.name}: {result.name}",
                                 result.failures or [f"cannot run: {result.error}"]))
            marks.append("." if result.passed else "F")
            if verbose:
                typer.echo(f"{line}:: {result.name} {'PASSED' if result.passed else 'FAILED'}")
        if not verbose:
            typer.echo(line + "".join(marks))
    _summary(passed, failures, untested)


def _summary(passed: int, failures: list[tuple[str, list[str]]], untested: list[str]) -> None:
    if failures:
        typer.echo("\n=== FAILURES ===")
        for title, reasons in failures:
            typer.echo(f"\n___ {title} ___")
            typer.echo("".join(f"  {reason}\n" for reason in reasons), nl=False)
    if untested:
        typer.echo(f"\nno tests: {', '.join(untested)}")
    typer.echo(f"\n{passed} passed, {len(failures)} failed")
    if failures:
        raise typer.Exit(1)
