"""Full expressions (spec §3) compiled to functions of the metrics' `Series`.

`compile_expression(body)` returns what the runner needs: the window functions
with the first index each is defined at, and functions giving whether the
condition holds and the reported value (the left operand of the first
comparison, spec §4). Metrics are read through a tuple of series in the order
of `ast.metric_names(body)`.

Semantics follow the batch engine: a division by zero gives NaN, and a
comparison with a NaN on either side is false (so `not` of it is true).
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
    value: ValueFn
    capacities: tuple[int, ...]  # values each metric's series must keep
    baselines: tuple[frozenset[int], ...]  # first-W means each metric's series must keep

    def defined(self, series: SeriesTuple) -> bool:
        return all(series[f.position].count - 1 >= f.first for f in self.functions)


def compile_expression(body: ast.Predicate) -> CompiledExpression:
    compiler = _Compiler(ast.metric_names(body))
    holds = compiler.predicate(body)
    first_comparison = next(n for n in ast.walk(body) if isinstance(n, ast.Comparison))
    value = compiler.value(first_comparison.left)
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
    test, left, right = COMPARE[node.op], c.value(node.left), c.value(node.right)

    def compare(s: SeriesTuple) -> bool:
        a, b = left(s), right(s)
        return not (a != a or b != b) and test(a, b)  # NaN on either side: false
    return compare


def _number(c: _Compiler, node: ast.Number) -> ValueFn:
    constant = float(node.value)
    return lambda s: constant


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
    j, w = c.positions[node.metric.name], node.window
    signature = meaning.FUNCTIONS[node.name]
    c.functions.append(FunctionUse(j, signature.first_index(w)))
    c.capacities[j] = max(c.capacities[j], signature.keeps(w))
    if node.name == "baseline":
        c.baselines[j].add(w)
    read = WINDOW_FUNCTIONS[node.name]
    return lambda s: read(s[j], w)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}
PREDICATES: dict[type, Callable[[_Compiler, Any], Holds]] = {
    ast.And: _all, ast.Or: _any, ast.Not: _not, ast.Comparison: _comparison}
VALUES: dict[type, Callable[[_Compiler, Any], ValueFn]] = {
    ast.Number: _number, ast.MetricRef: _metric, ast.Negative: _negative, ast.BinaryOp: _binary, ast.Call: _call}
# A window function read off its metric's series, for window W.
WINDOW_FUNCTIONS: dict[str, Callable[[Series, int], float]] = {
    "mean": Series.mean, "sum": Series.sum, "std": Series.std, "min": Series.minimum, "max": Series.maximum,
    "delta": Series.delta, "baseline": Series.baseline,
}
