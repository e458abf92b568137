"""Full expressions (docs/language.md §3) compiled to functions of the metrics' `Series`.

`compile_expression(body)` returns what the runner needs: the window functions
with the first index each is defined at, and functions giving whether the
condition holds and the reported value (`meaning.reported_operand`, docs/language.md §4).
Metrics are read through a tuple of series in the order of
`ast.metric_names(body)`.

Semantics follow the batch engine: a division by zero gives NaN, and a
comparison with a NaN on either side is false (so `not` of it is true). A
comparison with a literal (`true`, `false`, a text) is decided by kinds
(`configuration.literal_compare`: a number is never equal to a boolean or a
text), so it is a constant; the row is still an evaluation. The rule comes
bound to the run's configuration (`ruledsl.compile.bind`): `config.KEY` has
become a number or a literal before it gets here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ruledsl.engines.live.series import Series
from ruledsl.engines.live.shorthand import COMPARE
from ruledsl.lang import ast, meaning
from ruledsl.lang.configuration import Scalar, literal_compare

SeriesTuple = Sequence[Series]
ValueFn = Callable[[SeriesTuple], float]
Holds = Callable[[SeriesTuple], bool]
NAN = math.nan


@dataclass(frozen=True)
class FunctionUse:
    """A window function reading metric number `position`: defined from series index `first`."""

    position: int
    first: int


@dataclass(frozen=True)
class CompiledExpression:
    metrics: tuple[str, ...]  # metric names as written, in source order
    functions: tuple[FunctionUse, ...]
    holds: Holds
    value: ValueFn | None  # None where the reported operand is not a number (a literal): n/a
    capacities: tuple[int, ...]  # values each metric's series must keep
    baselines: tuple[frozenset[int], ...]  # first-W means each metric's series must keep

    def defined(self, series: SeriesTuple) -> bool:
        return all(series[f.position].count - 1 >= f.first for f in self.functions)


def compile_expression(body: ast.Predicate) -> CompiledExpression:
    compiler = _Compiler(ast.metric_names(body))
    holds = compiler.predicate(body)
    reported = meaning.reported_operand(body)
    value = None if isinstance(reported, ast.Literal) else compiler.value(reported)
    return CompiledExpression(tuple(compiler.positions), tuple(compiler.functions), holds, value,
                              tuple(compiler.capacities), tuple(frozenset(b) for b in compiler.baselines))


class _Compiler:
    def __init__(self, metrics: list[str]):
        self.positions = {name: j for j, name in enumerate(metrics)}
        self.functions: list[FunctionUse] = []
        self.capacities = [1] * len(metrics)
        self.baselines: list[set[int]] = [set() for _ in metrics]

    def predicate(self, node: ast.Predicate) -> Holds:
        return PREDICATES[type(node)](self, node)

    def value(self, node: ast.Value) -> ValueFn:
        return VALUES[type(node)](self, node)


def _all(c: _Compiler, node: ast.And) -> Holds:
    parts = [c.predicate(o) for o in node.operands]
    return lambda s: all([p(s) for p in parts])  # a list: every part is evaluated, as in the batch engine


def _any(c: _Compiler, node: ast.Or) -> Holds:
    parts = [c.predicate(o) for o in node.operands]
    return lambda s: any([p(s) for p in parts])


def _not(c: _Compiler, node: ast.Not) -> Holds:
    inner = c.predicate(node.operand)
    return lambda s: not inner(s)


def _comparison(c: _Compiler, node: ast.Comparison) -> Holds:
    if isinstance(node.left, ast.Literal) or isinstance(node.right, ast.Literal):
        return _literal_comparison(c, node)
    test, left, right = COMPARE[node.op], c.value(node.left), c.value(node.right)

    def compare(s: SeriesTuple) -> bool:
        a, b = left(s), right(s)
        return not (a != a or b != b) and test(a, b)  # NaN on either side: false
    return compare


def _literal_comparison(c: _Compiler, node: ast.Comparison) -> Holds:
    """`==`/`!=` with `true`, `false` or a text: decided by the kinds and values of the constants,
    any other operand being a number (the checker and `bind` keep literals out of other places)."""
    if node.op not in ("==", "!="):
        raise TypeError(f"a literal is compared with == or != only, not {node.op}")
    for side in (node.left, node.right):  # a number operand's window functions still must be defined
        if not isinstance(side, ast.Literal):
            c.value(side)

    def constant(side: ast.Value) -> Scalar:
        return side.value if isinstance(side, (ast.Literal, ast.Number)) else 0.0  # any number: its kind
    verdict = literal_compare(node.op, constant(node.left), constant(node.right))
    return lambda s: verdict


def _number(c: _Compiler, node: ast.Number) -> ValueFn:
    constant = float(node.value)
    return lambda s: constant


def _step(c: _Compiler, node: ast.StepRef) -> ValueFn:
    # The row's step: an evaluation is at a row where every metric has a value, so the step of the
    # first metric's last value is the row's (a condition names at least one metric).
    return lambda s: float(s[0].step)  # type: ignore[arg-type]


def _unbound(c: _Compiler, node: ast.ConfigRef) -> ValueFn:
    raise TypeError(f"config.{node.key} not bound")  # rules are bound to a run's configuration first


def _literal(c: _Compiler, node: ast.Literal) -> ValueFn:
    raise TypeError("a literal is compared with == or != only")  # and those comparisons never read it


def _metric(c: _Compiler, node: ast.MetricRef) -> ValueFn:
    j = c.positions[node.name]
    return lambda s: s[j].last


def _negative(c: _Compiler, node: ast.Negative) -> ValueFn:
    inner = c.value(node.operand)
    return lambda s: -inner(s)


def _binary(c: _Compiler, node: ast.BinaryOp) -> ValueFn:
    left, right = c.value(node.left), c.value(node.right)
    if node.op == "/":
        def divide(s: SeriesTuple) -> float:
            denominator = right(s)
            numerator = left(s)
            return NAN if denominator == 0 else numerator / denominator  # spec: comparison false
        return divide
    combine = ARITHMETIC[node.op]
    return lambda s: combine(left(s), right(s))


def _call(c: _Compiler, node: ast.Call) -> ValueFn:
    if node.name == "abs":
        inner = c.value(node.args[0])
        return lambda s: abs(inner(s))
    j, w, lag = c.positions[node.metric.name], node.window, node.lag
    signature = meaning.FUNCTIONS[node.name]
    c.functions.append(FunctionUse(j, signature.first_index(w, lag)))
    c.capacities[j] = max(c.capacities[j], signature.keeps(w, lag))
    if node.name == "baseline":
        c.baselines[j].add(w)
    read = WINDOW_FUNCTIONS[node.name]
    return lambda s: read(s[j], w, lag)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
PREDICATES: dict[type, Callable[[_Compiler, Any], Holds]] = {
    ast.And: _all, ast.Or: _any, ast.Not: _not, ast.Comparison: _comparison}
VALUES: dict[type, Callable[[_Compiler, Any], ValueFn]] = {
    ast.Number: _number, ast.MetricRef: _metric, ast.StepRef: _step, ast.ConfigRef: _unbound, ast.Literal: _literal,
    ast.Negative: _negative, ast.BinaryOp: _binary, ast.Call: _call}
# A window function read off its metric's series, for window W and lag L (delta and baseline take no lag).
WINDOW_FUNCTIONS: dict[str, Callable[[Series, int, int], float]] = {
    "mean": Series.mean, "sum": Series.sum, "std": Series.std, "min": Series.minimum, "max": Series.maximum,
    "delta": lambda s, k, lag: s.delta(k), "baseline": lambda s, w, lag: s.baseline(w),
}
