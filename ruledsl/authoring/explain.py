"""A rule in plain words, the log keys it resolves to, and the polars query it compiles to.

`meaning` reads the typed AST (one function per node kind, like the backends),
so what `explain` says is what the engines do; the compiled query is the
backend's own plan for a one-row log holding the rule's keys.
"""

from __future__ import annotations

import polars as pl

from ruledsl.lang import ast
from ruledsl.engines.batch import polars_backend
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.compile import compile_rules
from ruledsl.engines.batch.frames import to_log_frame
from ruledsl.model.rule import Rule

COMPARISON_WORDS = {"<": "is below", "<=": "is at most", ">": "is above", ">=": "is at least",
                    "==": "equals", "!=": "differs from"}


def meaning(rule: Rule) -> str:
    """When the rule fires, in one paragraph (spec §3)."""
    condition = rule.condition
    if condition.is_shorthand:
        text = _shorthand(condition.body, rule.metric or "?", rule.window)
    else:
        text = _predicate(condition.body)
    parts = [f"Fires when {text}"]
    if rule.sustain > 1:
        parts.append(f"at {rule.sustain} consecutive evaluations")
    sentence = " ".join(parts) + "."
    if rule.min_steps > 0:
        sentence += f" Never before {rule.min_steps} values of the metric were seen."
    return sentence + " Each run of consecutive firing evaluations is one alert episode."


def _shorthand(node: ast.Predicate, metric: str, window: int) -> str:
    smoothed = metric if window == 1 else f"the mean of the last {window} values of {metric}"
    if isinstance(node, (ast.And, ast.Or)):
        joiner = " and " if isinstance(node, ast.And) else " or "
        return joiner.join(f"({_shorthand(o, metric, window)})" for o in node.operands)
    if isinstance(node, ast.Not):
        return f"not ({_shorthand(node.operand, metric, window)})"
    if isinstance(node, ast.ShorthandCompare):
        return f"{smoothed} {COMPARISON_WORDS[node.op]} {_num(node.threshold)}"
    if isinstance(node, ast.Between):
        low, high = _num(node.low), _num(node.high)
        return f"{smoothed} is between {low} and {high} (inclusive)" if node.inside else \
            f"{smoothed} is below {low} or above {high}"
    if isinstance(node, ast.Change):
        verb = "fallen" if node.direction == "drop" else "risen"
        return (f"{smoothed} has {verb} by at least {_num(node.percent)}% relative to its baseline "
                f"(the mean of the first {window} values of the run)")
    if isinstance(node, ast.Spike):
        return (f"a value of {metric} is at least {_num(node.factor)} times the mean of the {window} "
                f"values before it (that mean being positive)")
    if isinstance(node, ast.Flat):
        return f"the last {window} values of {metric} lie within {_num(node.tolerance)} of each other (max − min)"
    if isinstance(node, ast.NonFinite):
        return f"{metric} is logged as NaN or ±infinity"
    raise TypeError(f"not a shorthand term: {type(node).__name__}")


def _predicate(node: ast.Predicate) -> str:
    if isinstance(node, (ast.And, ast.Or)):
        joiner = " and " if isinstance(node, ast.And) else " or "
        return joiner.join(f"({_predicate(o)})" for o in node.operands)
    if isinstance(node, ast.Not):
        return f"not ({_predicate(node.operand)})"
    assert isinstance(node, ast.Comparison)
    return f"{_value(node.left)} {COMPARISON_WORDS[node.op]} {_value(node.right)}"


def _value(node: ast.Value) -> str:
    if isinstance(node, ast.Number):
        return _num(node)
    if isinstance(node, ast.MetricRef):
        return node.name
    if isinstance(node, ast.Negative):
        return f"minus {_value(node.operand)}"
    if isinstance(node, ast.BinaryOp):
        return f"({_value(node.left)} {node.op} {_value(node.right)})"
    if node.name == "abs":
        return f"the absolute value of {_value(node.args[0])}"
    if node.name == "delta":
        return f"[the change of {node.metric.name} over the last {node.window} values]"
    words = ast.FUNCTIONS[node.name].meaning.replace("W", str(node.window))
    return f"[{words} of {node.metric.name}]"


def _num(number: ast.Number) -> str:
    return f"{number.value:g}"


def resolved_keys(rule: Rule, catalog: Catalog | None = None) -> dict[str, dict[str, tuple[str, ...]]]:
    """trainer → metric as written → the log keys tried, in order (spec §2)."""
    catalog = catalog if catalog is not None else builtin_catalog()
    trainers = sorted(catalog.trainer_ids) if rule.applies_to_all else list(rule.trainers)
    return {t: {m: catalog.candidates(m, [t]) for m in rule.metrics} for t in trainers}


def compiled_plan(rule: Rule, trainer: str | None = None, catalog: Catalog | None = None) -> str:
    """The polars query plan the batch engine builds for the rule (over a one-row log of its keys)."""
    compiled = compile_rules([rule], trainer=trainer, catalog=catalog).rules[0]
    keys = list(dict.fromkeys(k for candidates in compiled.candidates.values() for k in candidates))
    log = to_log_frame(pl.DataFrame({"run": ["run"] * len(keys), "step": [0] * len(keys),
                                     "key": keys, "value": [1.0] * len(keys)}))
    plans = [frame.explain(optimized=True) for frame, _ in
             polars_backend.rule_frames([(rule, compiled.candidates)], log)]
    return "\n\n".join(plans)
