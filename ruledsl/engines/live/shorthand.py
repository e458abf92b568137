"""Shorthand conditions (spec §3) compiled to functions of a rule's `Series`.

`compile_shorthand(body, window)` walks the checked AST once and returns the
first series index at which the condition is defined and a function that, at
such an index, returns (holds, value, baseline) as spec §4 reports them. The
formulas are the batch engine's (ruledsl/engines/batch/polars_backend.py), written
with the same operations in the same order so that both give the same bits.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

from ruledsl.lang import ast
from ruledsl.engines.live.series import Series

Outcome = tuple[bool, float, "float | None"]  # holds, value, baseline

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True)
class CompiledShorthand:
    defined_from: int  # first series index i with an evaluation
    evaluate: Callable[[Series], Outcome]
    raw: bool  # True for `nonfinite`: the series of every row with the key, non-finite included


def compile_shorthand(body: ast.Predicate, window: int) -> CompiledShorthand:
    # As the batch engine: only a bare `nonfinite` reads the raw rows (combining it is an error).
    defined_from, evaluate = _compile(body, window)
    return CompiledShorthand(defined_from, evaluate, isinstance(body, ast.NonFinite))


def _compile(node: ast.Predicate, w: int) -> tuple[int, Callable[[Series], Outcome]]:
    compiler = _COMPILERS.get(type(node))
    if compiler is None:
        raise TypeError(f"not a shorthand term: {type(node).__name__}")
    return compiler(node, w)


def _compare(node: ast.ShorthandCompare, w: int):
    test, c = COMPARE[node.op], float(node.threshold.value)

    def evaluate(series: Series) -> Outcome:
        v = series.mean(w)
        return test(v, c), v, None
    return w - 1, evaluate


def _between(node: ast.Between, w: int):
    low, high, inside = float(node.low.value), float(node.high.value), node.inside

    def evaluate(series: Series) -> Outcome:
        v = series.mean(w)
        holds = (low <= v and v <= high) if inside else (v < low or v > high)
        return holds, v, None
    return w - 1, evaluate


def _change(node: ast.Change, w: int):
    fraction = node.percent.value / 100
    drop = node.direction == "drop"

    def evaluate(series: Series) -> Outcome:
        v, b = series.mean(w), series.baseline(w)
        if b == 0:
            return False, v, b
        moved = (b - v) if drop else (v - b)
        return moved / abs(b) >= fraction, v, b
    return 2 * w - 1, evaluate


def _spike(node: ast.Spike, w: int):
    factor = float(node.factor.value)

    def evaluate(series: Series) -> Outcome:
        m, x = series.previous_mean(w), series.last
        return m > 0 and x >= factor * m, x, m
    return w, evaluate


def _flat(node: ast.Flat, w: int):
    tolerance = float(node.tolerance.value)

    def evaluate(series: Series) -> Outcome:
        spread = series.spread(w)
        return spread <= tolerance, spread, None
    return w - 1, evaluate


def _nonfinite(node: ast.NonFinite, w: int):
    def evaluate(series: Series) -> Outcome:
        x = series.raw_last
        return not math.isfinite(x), x, None
    return 0, evaluate


def _logic(node, w: int):
    """and / or / not: defined where every term is; value and baseline of the first term."""
    operands = node.operands if isinstance(node, (ast.And, ast.Or)) else (node.operand,)
    compiled = [_compile(operand, w) for operand in operands]
    defined_from = max(d for d, _ in compiled)
    functions = [f for _, f in compiled]
    first, rest = functions[0], functions[1:]

    if isinstance(node, ast.Not):
        def evaluate(series: Series) -> Outcome:
            holds, value, baseline = first(series)
            return not holds, value, baseline
    elif isinstance(node, ast.And):
        def evaluate(series: Series) -> Outcome:
            holds, value, baseline = first(series)
            for f in rest:  # every term is evaluated: each must be defined, none may be skipped
                holds = f(series)[0] and holds
            return holds, value, baseline
    else:
        def evaluate(series: Series) -> Outcome:
            holds, value, baseline = first(series)
            for f in rest:
                holds = f(series)[0] or holds
            return holds, value, baseline
    return defined_from, evaluate


_COMPILERS = {
    ast.ShorthandCompare: _compare, ast.Between: _between, ast.Change: _change, ast.Spike: _spike,
    ast.Flat: _flat, ast.NonFinite: _nonfinite, ast.And: _logic, ast.Or: _logic, ast.Not: _logic,
}


def window_needs(body: ast.Predicate, window: int) -> tuple[int, frozenset[int]]:
    """What a shorthand condition needs its series to keep: values, and first-W means."""
    capacity, baselines = 1, set()
    for leaf in ast.leaves(body):
        if isinstance(leaf, ast.Spike):
            capacity = max(capacity, window + 1)
        else:
            capacity = max(capacity, window)
        if isinstance(leaf, ast.Change):
            baselines.add(window)
    return capacity, frozenset(baselines)
