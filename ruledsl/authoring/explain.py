"""A rule in plain words, the log keys it resolves to, and the polars query it compiles to.

`meaning` reads the typed AST (a table from node type to its words, like the
engines' tables) and the statistics of ruledsl.lang.meaning, so what `explain`
says is what the engines do; the compiled query is the
backend's own plan for a one-row log holding the rule's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

from ruledsl.compile import bind, compile_rules
from ruledsl.engines.batch import polars_backend
from ruledsl.engines.batch.frames import to_log_frame
from ruledsl.lang import ast
from ruledsl.lang.configuration import NotEvaluated
from ruledsl.lang.meaning import FUNCTIONS, Statistic
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.model.rule import Rule

COMPARISON_WORDS = {"<": "is below", "<=": "is at most", ">": "is above", ">=": "is at least",
                    "==": "equals", "!=": "differs from"}


def meaning(rule: Rule) -> str:
    """When the rule fires, in one paragraph (docs/language.md §3)."""
    condition = rule.condition
    if condition.is_shorthand:
        text = _shorthand(condition.body, rule.metric or "?", rule.window)
    else:
        text = _predicate(condition.body)
    parts = [f"Fires when {text}"]
    if rule.sustain > 1:
        parts.append(f"and has held at every evaluation for at least {rule.sustain} training steps "
                     f"(the streak's last step minus its first is {rule.sustain - 1} or more)")
    sentence = " ".join(parts) + "."
    when = getattr(rule, "when", None)
    if when is not None:
        sentence += f" Applies only to runs whose configuration satisfies {when.text}."
    if rule.min_steps > 0:
        sentence += f" Never at a training step below {rule.min_steps}."
    return sentence + " Each run of consecutive firing evaluations is one alert episode."


def _shorthand(node: ast.Predicate, metric: str, window: int) -> str:
    if isinstance(node, ast.LOGIC):
        return _logic(node, lambda operand: _shorthand(operand, metric, window))

    def said(statistic: Statistic) -> str:  # "the mean of the last W values of loss", or just "loss"
        if statistic is Statistic.SMOOTHED and window == 1:
            return metric
        return statistic.words(metric, window)
    return TERM_WORDS[type(node)](node, said)


def _logic(node: ast.Predicate, say: Callable[[ast.Predicate], str]) -> str:
    if isinstance(node, ast.Not):
        return f"not ({say(node.operand)})"
    joiner = " and " if isinstance(node, ast.And) else " or "
    return joiner.join(f"({say(o)})" for o in node.operands)  # type: ignore[union-attr]


Said = Callable[[Statistic], str]
TERM_WORDS: dict[type, Callable[[Any, Said], str]] = {
    ast.ShorthandCompare: lambda n, said: f"{said(Statistic.SMOOTHED)} {COMPARISON_WORDS[n.op]} {_num(n.threshold)}",
    ast.Between: lambda n, said: (
        f"{said(Statistic.SMOOTHED)} is between {_num(n.low)} and {_num(n.high)} (inclusive)" if n.inside
        else f"{said(Statistic.SMOOTHED)} is below {_num(n.low)} or above {_num(n.high)}"),
    ast.Change: lambda n, said: (
        f"{said(Statistic.SMOOTHED)} has {'fallen' if n.direction == 'drop' else 'risen'} by at least "
        f"{_num(n.percent)}% relative to its baseline ({said(Statistic.FIRST_MEAN)})"),
    ast.Spike: lambda n, said: (
        f"{said(Statistic.LAST)} is at least {_num(n.factor)} times {said(Statistic.PREVIOUS_MEAN)} "
        f"(that mean being positive)"),
    ast.Flat: lambda n, said: f"{said(Statistic.SPREAD)} is at most {_num(n.tolerance)}",
    ast.NonFinite: lambda n, said: f"{said(Statistic.RAW)} is NaN or ±infinity",
    ast.Absent: lambda n, said: f"{said(Statistic.GAP)} is at least {_num(n.steps)} (it stopped arriving)",
}


def _predicate(node: ast.Predicate) -> str:
    if isinstance(node, ast.LOGIC):
        return _logic(node, _predicate)
    assert isinstance(node, ast.Comparison)
    return f"{_value(node.left)} {COMPARISON_WORDS[node.op]} {_value(node.right)}"


def _value(node: ast.Value) -> str:
    return VALUE_WORDS[type(node)](node)


def _call(node: ast.Call) -> str:
    if node.name == "abs":
        return f"the absolute value of {_value(node.args[0])}"
    if node.name == "delta":
        return f"[the change of {node.metric.name} over the last {node.window} values]"
    words = FUNCTIONS[node.name].meaning.replace("W", str(node.window))
    if node.lag:
        words += f" ending {node.lag} value{'s' if node.lag > 1 else ''} before the current one"
    return f"[{words} of {node.metric.name}]"


VALUE_WORDS: dict[type, Callable[[Any], str]] = {
    ast.Number: lambda n: _num(n),
    ast.MetricRef: lambda n: n.name,
    ast.StepRef: lambda n: "the training step",
    ast.ConfigRef: lambda n: f"the run's config.{n.key}",
    ast.Literal: lambda n: ("true" if n.value else "false") if isinstance(n.value, bool) else repr(n.value),
    ast.Negative: lambda n: f"minus {_value(n.operand)}",
    ast.BinaryOp: lambda n: f"({_value(n.left)} {n.op} {_value(n.right)})",
    ast.Call: _call,
}


def _num(number: ast.Number) -> str:
    return f"{number.value:g}"


def resolved_keys(rule: Rule, catalog: Catalog | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """trainer → metric as written → the log keys tried, in order (docs/language.md §2)."""
    catalog = catalog if catalog is not None else builtin_catalog()
    trainers = sorted(catalog.trainer_ids) if rule.applies_to_all else list(rule.trainers)
    return {t: {m: catalog.candidates(m, [t]) for m in rule.metrics} for t in trainers}


def compiled_plan(rule: Rule, trainer: str | None = None, catalog: Catalog | None = None,
                  config: Mapping[str, Any] | None = None) -> str:
    """The polars query plan the batch engine builds for the rule (over a one-row log of its keys).

    A rule that reads the run's configuration compiles only once bound to one (`config`): the
    query holds its values. Without the keys it needs, the answer says which to give.
    """
    compiled = compile_rules([rule], trainer=trainer, catalog=catalog).rules[0]
    if compiled.needs_config:
        bound = bind(compiled, config or {})
        if isinstance(bound, NotEvaluated):
            return (f"  none for this configuration: {bound.detail}. The query holds the run's configuration; "
                    "give it with --config KEY=VALUE (e.g. --config beta=0.1).")
        compiled, rule = bound, bound.rule
    keys = list(dict.fromkeys(k for candidates in compiled.candidates.values() for k in candidates))
    log = to_log_frame(pl.DataFrame({"run": ["run"] * len(keys), "step": [0] * len(keys),
                                     "key": keys, "value": [1.0] * len(keys)}))
    plans = [frame.explain(optimized=True) for frame, _ in
             polars_backend.rule_frames([polars_backend.RuleInput(rule, compiled.candidates)], log)]
    return "\n\n".join(plans)
