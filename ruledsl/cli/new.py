"""`ruledsl new`: scaffold a rule file, with test cases, where the library expects it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from ruledsl.alerts import SEVERITIES
from ruledsl.authoring.scaffold import scaffold
from ruledsl.cli.app import app, fail
from ruledsl.lang.errors import RuleValidationError
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.loader import read_rule_file
from ruledsl.model.rule import Rule
from ruledsl.resources import data_dir


@app.command()
def new(
    name: str = typer.Argument(..., metavar="NAME", help="The rule name: lower case letters, digits and _."),
    trainer: list[str] = typer.Option(..., "--trainer", "-t", metavar="ID", help="Trainer id (repeatable): grpo, "
                                      "dpo, …, or all (common is the same)."),
    condition: str = typer.Option(..., "--condition", "-c", metavar="CONDITION", help="e.g. \"< 0.5\", \"drop(50%)\", "
                                  "\"mean(loss, 20) > 2 * baseline(loss, 20)\"."),
    metric: str | None = typer.Option(None, "--metric", "-m", metavar="METRIC", help="The log key or alias a shorthand "
                                         "condition applies to."),
    severity: str = typer.Option("medium", "--severity", "-s", metavar="SEVERITY",
                                 help=f"One of {', '.join(SEVERITIES)}."),
    message: str | None = typer.Option(None, "--message", metavar="MESSAGE", help="Alert text; {value:.3f}, {step}, … "
                                          "Default: a plain sentence naming the rule."),
    window: int = typer.Option(1, "--window", "-w", min=1, metavar="W",
                               help="Smoothing window of a shorthand condition."),
    rules_dir: Path = typer.Option(Path("rules"), "--dir", metavar="DIR", help="The rule directory; the file goes to "
                                   "DIR/<first trainer>/NAME.yaml, or DIR/common/NAME.yaml for a rule of "
                                   "every trainer (-t all), as in the builtin library."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a new rule file with a schema line for editors and test cases that pass.

    The test cases are found by running the rule on series built from its own
    numbers; edit them into the story the rule tells. Then run
    `ruledsl lint` and `ruledsl test` on the file.

    \b
    Example:
      ruledsl new grpo_reward_flat -t grpo -m reward -c "flat(0.001)" -w 10 -s high
    """
    for trainer_id in trainer:  # exact ids (docs/language.md §8): `gpro` would write a rule that never runs
        unknown = builtin_catalog().unknown_trainer(trainer_id)
        if unknown is not None:
            fail(f"--trainer: {unknown.message}")
    fields: dict[str, Any] = {"name": name, "trainers": trainer, "condition": condition, "severity": severity,
              "message": message or _default_message(name, metric)}
    if metric is not None:
        fields |= {"metric": metric, "window": window}
    try:
        rule = Rule.from_dict(fields)
    except RuleValidationError as exc:
        fail(str(exc))
    folder = "common" if rule.applies_to_all else rule.trainers[0]
    path = rules_dir / folder / f"{name}.yaml"
    if path.exists() and not force:
        fail(f"{path} exists (use --force to overwrite it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = Path(os.path.relpath(data_dir("schemas") / "rule.schema.json", path.parent)).as_posix()
    path.write_text(scaffold(rule, schema), encoding="utf-8")
    problems = read_rule_file(path).problems
    typer.echo(f"wrote {path}")
    for problem in problems:  # never expected: the scaffold is built from a rule that validated
        typer.echo(f"warning: {problem}", err=True)
    typer.echo("next: fill in description and reference, edit the TODO test cases, then\n"
               f"  ruledsl lint {path}\n  ruledsl test {path}")


def _default_message(name: str, metric: str | None) -> str:
    subject = "{metric}" if metric is not None else "value"
    return f"{name} at step {{step}}: {subject} = {{value:.4g}}"
