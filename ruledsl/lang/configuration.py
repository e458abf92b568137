"""A condition bound to one run's configuration (docs/language.md §2, §3).

`config.KEY` is a constant for a whole run, so both engines evaluate a rule
on a run as the same rule with every `config.KEY` replaced by the run's value
(a number, or a boolean or text literal). Binding is where the configuration's
problems are found, once per run and the same for both engines: a key the run
lacks, or a value of a kind its place cannot take (text in arithmetic or with
`<`), makes the rule not evaluated on the run (coverage reason
`config_unknown`); a `when` that does not hold makes it not apply
(`when_false`).

Comparisons with a literal keep their meaning in the engines (LITERAL_COMPARE):
`==` between values of different kinds is false and `!=` true.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ruledsl.lang import ast

Scalar = bool | int | float | str
WHEN_FALSE, CONFIG_UNKNOWN = "when_false", "config_unknown"


@dataclass(frozen=True)
class NotEvaluated:
    """Why a rule is not evaluated on a run: a coverage reason and its detail (docs/language.md §4)."""

    reason: str
    detail: str


def kind_of(value: Scalar) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "text" if isinstance(value, str) else "number"


def literal_compare(op: str, left: Scalar, right: Scalar) -> bool:
    """`==`/`!=` of two constants: values of different kinds are never equal (`true == 1` is false)."""
    same = kind_of(left) == kind_of(right) and left == right
    return same if op == "==" else not same


def bind(condition: ast.Condition, config: Mapping[str, Any]) -> ast.Condition | NotEvaluated:
    """The condition with every `config.KEY` replaced by the run's value, or why it cannot be."""
    keys = ast.config_keys(condition.body)
    if not keys:
        return condition
    missing = [k for k in keys if config.get(k) is None]
    if missing:
        return NotEvaluated(CONFIG_UNKNOWN, f"the run's configuration has no {', '.join(missing)}")
    values = {k: config[k] for k in keys}
    wrong = _misplaced(condition.body, values)
    if wrong is not None:
        return wrong
    body = _substitute(condition.body, values)
    return dataclasses.replace(condition, body=body)  # type: ignore[arg-type]


def holds(when: ast.Condition, config: Mapping[str, Any]) -> bool | NotEvaluated:
    """Whether a rule's `when` holds on a run's configuration (or why it cannot be said)."""
    bound = bind(when, config)
    if isinstance(bound, NotEvaluated):
        return bound
    return _truth(bound.body)


def _misplaced(body: ast.Node, values: Mapping[str, Any]) -> NotEvaluated | None:
    """A text or boolean value where a number is needed: in arithmetic, a function or an ordering."""
    for node in ast.walk(body):
        if isinstance(node, ast.Comparison) and node.op in ("==", "!="):
            sides = [s for s in (node.left, node.right) if not isinstance(s, ast.ConfigRef)]
            numeric_places = [n for side in sides for n in ast.walk(side) if isinstance(n, ast.ConfigRef)]
        elif isinstance(node, (ast.Comparison, ast.BinaryOp, ast.Negative, ast.Call)):
            numeric_places = [n for n in ast.children(node) if isinstance(n, ast.ConfigRef)]
        else:
            continue
        for ref in numeric_places:
            value = values[ref.key]
            if kind_of(value) != "number":
                return NotEvaluated(CONFIG_UNKNOWN, f"config.{ref.key} is {kind_of(value)} ({value!r}): "
                                                    "the rule uses it as a number")
    return None


def _substitute(node: ast.Node, values: Mapping[str, Any]) -> ast.Node:
    """A copy of the tree with config references replaced by constants (spans kept)."""
    if isinstance(node, ast.ConfigRef):
        value = values[node.key]
        if kind_of(value) == "number":
            return ast.Number(float(value), node.span)
        return ast.Literal(value, node.span)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(node):
        child = getattr(node, field.name)
        if isinstance(child, tuple) and child and all(_is_node(c) for c in child):
            changes[field.name] = tuple(_substitute(c, values) for c in child)
        elif _is_node(child):
            changes[field.name] = _substitute(child, values)
    return dataclasses.replace(node, **changes) if changes else node


def _is_node(value: object) -> bool:
    return dataclasses.is_dataclass(value) and hasattr(value, "span") and not isinstance(value, type)


# ---------------------------------------------------------------- a `when` after binding: constants only


def _truth(node: ast.Node) -> bool:
    if isinstance(node, ast.And):
        return all([_truth(o) for o in node.operands])
    if isinstance(node, ast.Or):
        return any([_truth(o) for o in node.operands])
    if isinstance(node, ast.Not):
        return not _truth(node.operand)
    assert isinstance(node, ast.Comparison)
    left, right = _constant(node.left), _constant(node.right)
    if node.op in ("==", "!=") and (kind_of(left) != "number" or kind_of(right) != "number"):
        return literal_compare(node.op, left, right)
    a, b = float(left), float(right)
    return not (math.isnan(a) or math.isnan(b)) and ORDER[node.op](a, b)


def _constant(node: ast.Node) -> Scalar:
    if isinstance(node, ast.Literal):
        return node.value
    if isinstance(node, ast.Number):
        return node.value
    if isinstance(node, ast.Negative):
        return -float(_constant(node.operand))
    if isinstance(node, ast.BinaryOp):
        a, b = float(_constant(node.left)), float(_constant(node.right))
        if node.op == "/":
            return math.nan if b == 0 else a / b
        return ARITHMETIC[node.op](a, b)
    raise TypeError(f"not a constant: {type(node).__name__}")  # the checker keeps metrics out of `when`


ORDER: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
ARITHMETIC: dict[str, Callable[[float, float], float]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
