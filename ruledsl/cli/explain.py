"""`ruledsl explain`: a rule in plain words, its log keys per trainer, its compiled polars query."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
import yaml

from ruledsl.authoring.explain import compiled_plan, meaning, resolved_keys
from ruledsl.cli.app import app, fail
from ruledsl.cli.audit import config_options
from ruledsl.lang.errors import RuleSyntaxError
from ruledsl.model.catalog import builtin_catalog
from ruledsl.model.loader import RuleLoadError, load_rules, read_rule_file
from ruledsl.model.rule import Rule, rule_from_inline


@app.command()
def explain(
    rule_or_file: str = typer.Argument(..., metavar="RULE_OR_FILE", help="A builtin rule's name, a rule file, "
                                       "or an inline alert (\"grpo: importance_sampling_ratio < 0.5 -> high: "
                                       "collapsed\")."),
    trainer: str | None = typer.Option(None, "--trainer", metavar="ID", help="Compile for this trainer id (default: "
                                          "the rule's first trainer); a trainer the rule does not apply to is "
                                          "said so."),
    no_plan: bool = typer.Option(False, "--no-plan", help="Leave out the compiled polars query."),
    config: list[str] = typer.Option([], "--config", metavar="KEY=VALUE|FILE", help="The run configuration "
                                     "to compile for, as `ruledsl audit --config` takes it: a rule reading "
                                     "config.KEY compiles only with its value."),
) -> None:
    """Show what a rule means, which log keys it reads, and the polars query it compiles to.

    \b
    Examples:
      ruledsl explain dpo_loss_stuck_ln2
      ruledsl explain rules/grpo/grpo_is_ratio_collapse.yaml
      ruledsl explain "dpo: loss > 0.6 for 3 steps -> low: still high"
      ruledsl explain dpo_margin_near_zero --config beta=0.1
    """
    if trainer is not None:
        problem = builtin_catalog().unknown_trainer(trainer)
        if problem is not None:
            fail(f"--trainer: {problem.message}")
    rule = _find(rule_or_file)
    lines = [f"rule {rule.name}  [{rule.severity}]  trainers: {', '.join(rule.trainers)}",
             f"  condition: {rule.condition.text}" + (f"   (metric: {rule.metric}, window: {rule.window})"
                                                        if rule.condition.is_shorthand else ""),
             f"  message:   {rule.message.source}", "", meaning(rule)]
    if rule.description:
        lines += ["", " ".join(rule.description.split())]
    lines += ["", "Log keys tried, in order (the first one that appears in a run is used):"]
    for trainer_id, per_metric in resolved_keys(rule).items():
        shown = "; ".join(f"{m} → {', '.join(keys)}" for m, keys in per_metric.items())
        lines.append(f"  {trainer_id:<24} {shown}")
    if trainer is not None and not rule.applies_to(trainer):
        lines += ["", _not_applied(rule, trainer)]
    elif not no_plan:
        target = trainer or (None if rule.applies_to_all else rule.trainers[0])
        plan = compiled_plan(rule, target, config=config_options(config))
        lines += ["", f"Compiled polars query (trainer {target or 'unknown'}):", plan]
    typer.echo("\n".join(lines))


def _not_applied(rule: Rule, trainer: str) -> str:
    """Why there is no query for `trainer`: the rule never runs on its runs."""
    trainers = ", ".join(rule.trainers)
    why = f"it is a rule of {trainers} only, not one for every trainer" if trainer in ("all", "common") \
        else f"it runs for {trainers} only, never on a {trainer} run"
    return f"Rule {rule.name} does not apply to trainer {trainer}: {why}. No query is compiled for it."


def _find(text: str) -> Rule:
    if "->" in text:
        try:
            return rule_from_inline(text)
        except RuleSyntaxError as exc:
            fail(f"the inline alert cannot be read:\n{exc}")
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        rule_file = read_rule_file(path)
        if rule_file.rule is None:
            fail("\n".join(["the rule file has problems (see `ruledsl lint`):", *map(str, rule_file.problems)]))
        return rule_file.rule
    try:
        by_name = {r.name: r for r in load_rules(trainer=None)}
    except (RuleLoadError, yaml.YAMLError) as exc:
        fail(str(exc))
    if text not in by_name:
        close = difflib.get_close_matches(text, list(by_name), n=3)
        fail(f"no builtin rule named {text!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                   " (give a file path or an inline alert)"))
    return by_name[text]
