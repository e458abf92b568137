"""Shorthand conditions (docs/language.md §3) compiled to functions of a rule's `Series`.

`compile_shorthand(body, window)` walks the checked AST once and returns the
first series index at which the condition is defined, what it is evaluated on
(`reads`: the finite values, the raw rows for `nonfinite`, every logged step for
`absent`) and a function that, at an evaluation, returns (holds, value,
baseline) as docs/language.md §4 reports them. What a
term reads and reports is its row in ruledsl.lang.meaning.TERMS; this module
computes each statistic (`STATISTICS`) and each term's condition (`TERM_HOLDS`)
with the batch engine's operations in the same order (ruledsl/engines/batch/
polars_backend.py), so that both give the same bits.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ruledsl.engines.live.series import Series
from ruledsl.lang import ast, meaning
from ruledsl.lang.meaning import Statistic

Outcome = tuple[bool, float, "float | None"]  # holds, value, baseline
Evaluate = Callable[[Series], Outcome]

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
}


# What a shorthand condition is evaluated on (docs/language.md §3, "defined from"):
VALUES_READ = "values"  # each finite value of the key (a series index)
RAW_READ = "raw"  # each row holding the key, non-finite values included (`nonfinite`)
STEPS_READ = "steps"  # each logged step of the run after the key's first (`absent`)


@dataclass(frozen=True)
class CompiledShorthand:
    defined_from: int  # first index (of what `reads` counts) with an evaluation
    evaluate: Evaluate
    reads: str  # VALUES_READ, RAW_READ or STEPS_READ


def compile_shorthand(body: ast.Predicate, window: int) -> CompiledShorthand:
    # As the batch engine: only a bare `nonfinite` or `absent` reads other than the finite values
    # (they stand alone: combining them is an error of the condition).
    reads = RAW_READ if isinstance(body, ast.NonFinite) else STEPS_READ if isinstance(body, ast.Absent) \
        else VALUES_READ
    return CompiledShorthand(meaning.first_index(body, window), _compile(body, window), reads)


def window_needs(body: ast.Predicate, window: int) -> tuple[int, frozenset[int]]:
    """What a shorthand condition needs its series to keep: values, and first-W means."""
    signatures = [meaning.term(leaf) for leaf in ast.leaves(body)]  # type: ignore[arg-type]
    capacity = max(s.keeps(window) for s in signatures)
    first_means = any(Statistic.FIRST_MEAN in s.reads for s in signatures)
    return capacity, frozenset({window} if first_means else ())


def _compile(node: ast.Predicate, w: int) -> Evaluate:
    if isinstance(node, ast.LOGIC):
        return LOGIC[type(node)](node, w)
    signature = meaning.term(node)  # type: ignore[arg-type]
    holds = TERM_HOLDS[type(node)](node)
    # A term reads its value, then its baseline when it has one (meaning.TERMS; a test keeps it so).
    if signature.baseline is None:  # the usual term (this runs on every row)
        statistic = STATISTICS[signature.value]

        def evaluate_one(series: Series) -> Outcome:
            value = statistic(series, w)
            return holds(value), value, None
        return evaluate_one
    value_of, baseline_of = STATISTICS[signature.value], STATISTICS[signature.baseline]

    def evaluate_two(series: Series) -> Outcome:
        value, baseline = value_of(series, w), baseline_of(series, w)
        return holds(value, baseline), value, baseline
    return evaluate_two


# Methods of Series called as functions (one call frame fewer on the per-row path).
STATISTICS: dict[Statistic, Callable[[Series, int], float]] = {
    Statistic.SMOOTHED: Series.mean,
    Statistic.PREVIOUS_MEAN: Series.previous_mean,
    Statistic.SPREAD: Series.spread,
    Statistic.LAST: lambda s, w: s.last,
    Statistic.RAW: lambda s, w: s.raw_last,
    Statistic.FIRST_MEAN: Series.baseline,
    Statistic.GAP: lambda s, w: s.gap(),
}


# Each term's condition, a function of the statistics it reads in the order of its `reads`.
def _compare(node: ast.ShorthandCompare) -> Callable[[float], bool]:
    test, c = COMPARE[node.op], float(node.threshold.value)
    return lambda v: test(v, c)


def _between(node: ast.Between) -> Callable[[float], bool]:
    low, high = float(node.low.value), float(node.high.value)
    if node.inside:
        return lambda v: low <= v and v <= high
    return lambda v: v < low or v > high


def _change(node: ast.Change) -> Callable[[float, float], bool]:
    fraction, drop = node.percent.value / 100, node.direction == "drop"

    def holds(v: float, b: float) -> bool:
        if b == 0:
            return False
        moved = (b - v) if drop else (v - b)
        return moved / abs(b) >= fraction
    return holds


def _spike(node: ast.Spike) -> Callable[[float, float], bool]:
    factor = float(node.factor.value)
    return lambda x, m: m > 0 and x >= factor * m


def _flat(node: ast.Flat) -> Callable[[float], bool]:
    tolerance = float(node.tolerance.value)
    return lambda spread: spread <= tolerance


def _nonfinite(node: ast.NonFinite) -> Callable[[float], bool]:
    return lambda raw: not math.isfinite(raw)


def _absent(node: ast.Absent) -> Callable[[float], bool]:
    steps = float(node.steps.value)
    return lambda gap: gap >= steps


TERM_HOLDS: dict[type, Callable[[Any], Callable[..., bool]]] = {
    ast.ShorthandCompare: _compare, ast.Between: _between, ast.Change: _change,
    ast.Spike: _spike, ast.Flat: _flat, ast.NonFinite: _nonfinite, ast.Absent: _absent,
}


def _negate(node: ast.Not, w: int) -> Evaluate:
    inner = _compile(node.operand, w)

    def evaluate(series: Series) -> Outcome:
        holds, value, baseline = inner(series)
        return not holds, value, baseline
    return evaluate


def _combine(node: ast.And | ast.Or, w: int) -> Evaluate:
    """Value and baseline of the first term (docs/language.md §4); every term is evaluated: each must be
    defined, none may be skipped."""
    first, *rest = [_compile(operand, w) for operand in node.operands]
    join: Callable[[bool, bool], bool] = (lambda a, b: a and b) if isinstance(node, ast.And) else (lambda a, b: a or b)

    def evaluate(series: Series) -> Outcome:
        holds, value, baseline = first(series)
        for f in rest:
            holds = join(f(series)[0], holds)
        return holds, value, baseline
    return evaluate


LOGIC: dict[type, Callable[[Any, int], Evaluate]] = {ast.And: _combine, ast.Or: _combine, ast.Not: _negate}
