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
from dataclasses import dataclass
from typing import Callable, Sequence

from ruledsl.lang import ast
from ruledsl.engines.live.series import Series
from ruledsl.engines.live.shorthand import COMPARE

SeriesTuple = Sequence[Series]
ValueFn = Callable[[SeriesTuple], float]
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
    holds: Callable[[SeriesTuple], bool]
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


_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class _Compiler:
    def __init__(self, metrics: list[str]):
        self.positions = {name: j for j, name in enumerate(metrics)}
        self.functions: list[FunctionUse] = []
        self.capacities = [1] * len(metrics)
        self.baselines: list[set[int]] = [set() for _ in metrics]

    def predicate(self, node: ast.Predicate) -> Callable[[SeriesTuple], bool]:
        if isinstance(node, (ast.And, ast.Or)):
            parts = [self.predicate(o) for o in node.operands]
            if isinstance(node, ast.And):
                return lambda s: all([p(s) for p in parts])
            return lambda s: any([p(s) for p in parts])
        if isinstance(node, ast.Not):
            inner = self.predicate(node.operand)
            return lambda s: not inner(s)
        if not isinstance(node, ast.Comparison):
            raise TypeError(f"not a full-expression predicate: {type(node).__name__}")
        test, left, right = COMPARE[node.op], self.value(node.left), self.value(node.right)

        def compare(s: SeriesTuple) -> bool:
            a, b = left(s), right(s)
            return not (a != a or b != b) and test(a, b)  # NaN on either side: false
        return compare

    def value(self, node: ast.Value) -> ValueFn:
        if isinstance(node, ast.Number):
            constant = float(node.value)
            return lambda s: constant
        if isinstance(node, ast.MetricRef):
            j = self.positions[node.name]
            return lambda s: s[j].last
        if isinstance(node, ast.Negative):
            inner = self.value(node.operand)
            return lambda s: -inner(s)
        if isinstance(node, ast.BinaryOp):
            return self._binary(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise TypeError(f"not a value: {type(node).__name__}")

    def _binary(self, node: ast.BinaryOp) -> ValueFn:
        left, right = self.value(node.left), self.value(node.right)
        if node.op == "/":
            def divide(s: SeriesTuple) -> float:
                denominator = right(s)
                numerator = left(s)
                return NAN if denominator == 0 else numerator / denominator  # spec: comparison false
            return divide
        combine = _ARITHMETIC[node.op]
        return lambda s: combine(left(s), right(s))

    def _call(self, node: ast.Call) -> ValueFn:
        if node.name == "abs":
            inner = self.value(node.args[0])
            return lambda s: abs(inner(s))
        j, w = self.positions[node.metric.name], node.window
        first = ast.FUNCTIONS[node.name].first_index(w)
        self.functions.append(FunctionUse(j, first))
        self.capacities[j] = max(self.capacities[j], first + 1)  # values from x_(i-first) to x_i
        if node.name == "baseline":
            self.baselines[j].add(w)
        read = {
            "mean": lambda s: s[j].mean(w), "sum": lambda s: s[j].sum(w), "std": lambda s: s[j].std(w),
            "min": lambda s: s[j].minimum(w), "max": lambda s: s[j].maximum(w),
            "delta": lambda s: s[j].delta(w), "baseline": lambda s: s[j].baseline(w),
        }
        return read[node.name]
