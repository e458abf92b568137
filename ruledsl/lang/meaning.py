"""What each construct of a checked condition means: one table, read by every engine and tool.

A shorthand term (`< 0.5`, `drop(50%)`, `spike(3x)`, …) compares a few window
statistics of its rule's series x (docs/language.md §3). Its row in `TERMS` says which
statistics it reads, from which series index it is defined, which quantity
`{value}` and `{baseline}` report and which number `{threshold}` is (docs/language.md §5).
A window function of a full expression (`mean(loss, 20)`, …) has its row in
`FUNCTIONS`. The engines (ruledsl/engines/batch, ruledsl/engines/live) compute
each `Statistic` and each function and decide `holds` per node type; lint and
`explain` read the same rows. tests/test_meaning_tables.py fails when a node
type or a statistic is missing from any of them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from ruledsl.lang import ast


class Statistic(enum.Enum):
    """A quantity of a series at index i, for the rule's window W (docs/language.md §3)."""

    SMOOTHED = "v"  # v_i: the mean of x_(i-W+1) … x_i
    PREVIOUS_MEAN = "m"  # m_i: the mean of x_(i-W) … x_(i-1), the W values before x_i
    SPREAD = "spread"  # max − min of x_(i-W+1) … x_i
    LAST = "x"  # x_i itself
    RAW = "raw"  # the key's last logged value, NaN and ±inf included (a series of its own)
    FIRST_MEAN = "B"  # the mean of the first W values of the run
    GAP = "gap"  # s − L: the steps since the key was last present, at a row of step s

    @property
    def keeps(self) -> Callable[[int], int]:
        """W → how many of the last values a live series keeps to compute it."""
        return _KEEPS[self]

    def words(self, metric: str, window: int) -> str:
        return _WORDS[self].format(metric=metric, W=window)


_KEEPS: dict[Statistic, Callable[[int], int]] = {
    Statistic.SMOOTHED: lambda w: w,
    Statistic.PREVIOUS_MEAN: lambda w: w + 1,
    Statistic.SPREAD: lambda w: w,
    Statistic.LAST: lambda w: 1,
    Statistic.RAW: lambda w: 1,
    Statistic.FIRST_MEAN: lambda w: 1,  # recorded once, when the W-th value arrives
    Statistic.GAP: lambda w: 1,  # the step it was last present at
}
_WORDS: dict[Statistic, str] = {
    Statistic.SMOOTHED: "the mean of the last {W} values of {metric}",
    Statistic.PREVIOUS_MEAN: "the mean of the {W} values of {metric} before it",
    Statistic.SPREAD: "max − min of the last {W} values of {metric}",
    Statistic.LAST: "a value of {metric}",
    Statistic.RAW: "{metric} as logged",
    Statistic.FIRST_MEAN: "the mean of the first {W} values of {metric} in the run",
    Statistic.GAP: "the number of steps since {metric} was last logged",
}


@dataclass(frozen=True)
class TermSignature:
    """What one kind of shorthand term means over its rule's series, window W."""

    name: str  # as written
    reads: tuple[Statistic, ...]  # what `holds` compares: the value, then the baseline when there is one
    first_index: Callable[[int], int]  # W → the first series index at which the term is defined
    value: Statistic  # what {value} reports
    baseline: Statistic | None  # what {baseline} reports (None: n/a)
    threshold: Callable[[ast.ShorthandTerm], float | None]  # the number {threshold} reports

    def keeps(self, window: int) -> int:
        """How many of the last values a live series keeps for this term."""
        return max(s.keeps(window) for s in self.reads)


# Each row's `threshold` is called only with its key's node type (see `term`), hence the casts.
TERMS: dict[type, TermSignature] = {
    ast.ShorthandCompare: TermSignature(
        "< c", (Statistic.SMOOTHED,), lambda w: w - 1, Statistic.SMOOTHED, None,
        lambda t: cast(ast.ShorthandCompare, t).threshold.value),
    ast.Between: TermSignature(
        "range/outside", (Statistic.SMOOTHED,), lambda w: w - 1, Statistic.SMOOTHED, None,
        lambda t: cast(ast.Between, t).low.value),
    # B is v at index W-1; the term waits for a second, disjoint window of values
    ast.Change: TermSignature(
        "drop/rise", (Statistic.SMOOTHED, Statistic.FIRST_MEAN), lambda w: 2 * w - 1, Statistic.SMOOTHED,
        Statistic.FIRST_MEAN, lambda t: cast(ast.Change, t).percent.value),
    ast.Spike: TermSignature(
        "spike", (Statistic.LAST, Statistic.PREVIOUS_MEAN), lambda w: w, Statistic.LAST,
        Statistic.PREVIOUS_MEAN, lambda t: cast(ast.Spike, t).factor.value),
    ast.Flat: TermSignature(
        "flat", (Statistic.SPREAD,), lambda w: w - 1, Statistic.SPREAD, None,
        lambda t: cast(ast.Flat, t).tolerance.value),
    ast.NonFinite: TermSignature(
        "nonfinite", (Statistic.RAW,), lambda w: 0, Statistic.RAW, None, lambda t: None),
    # evaluated at every logged step of the run after the key's first appearance (not a series index)
    ast.Absent: TermSignature(
        "absent", (Statistic.GAP,), lambda w: 0, Statistic.GAP, None,
        lambda t: cast(ast.Absent, t).steps.value),
}


@dataclass(frozen=True)
class FunctionSignature:
    """A function of full expressions: `mean(m, W)` and friends over a series, or `abs(e)`."""

    name: str
    arity: int
    over_series: bool  # True: (metric, integer window) ; False: (expression)
    meaning: str
    lookback: int = -1  # the first index is W + lookback: W-1 for a window of W values, W for delta's x_(i-W)
    lagged: bool = False  # takes a third argument L: the window ending L values before the current one

    @property
    def arities(self) -> tuple[int, ...]:
        return (self.arity, self.arity + 1) if self.lagged else (self.arity,)

    def first_index(self, window: int, lag: int = 0) -> int:
        """The first series index i at which the function is defined (W + L values seen)."""
        return window + self.lookback + lag

    def keeps(self, window: int, lag: int = 0) -> int:
        """How many of the last values a live series keeps for it (x_(i-first) … x_i)."""
        return self.first_index(window, lag) + 1


FUNCTIONS: dict[str, FunctionSignature] = {
    f.name: f
    for f in (
        FunctionSignature("mean", 2, True, "mean of the last W values", lagged=True),
        FunctionSignature("min", 2, True, "smallest of the last W values", lagged=True),
        FunctionSignature("max", 2, True, "largest of the last W values", lagged=True),
        FunctionSignature("std", 2, True, "population standard deviation of the last W values", lagged=True),
        FunctionSignature("sum", 2, True, "sum of the last W values", lagged=True),
        FunctionSignature("delta", 2, True, "x_i - x_(i-k)", lookback=0),
        FunctionSignature("baseline", 2, True, "mean of the first W values"),
        FunctionSignature("abs", 1, False, "absolute value"),
    )
}
SERIES_FUNCTIONS = tuple(name for name, f in FUNCTIONS.items() if f.over_series)
# Bounds of every count a rule gives (windows, lags, `for`, `min_steps`, `absent`): a rule beyond them
# is refused when it is written (E104), so no engine ever allocates for a window of 10^12 values.
MAX_WINDOW = 100_000
MAX_STEPS = 10**12


def is_pattern(metric: str) -> bool:
    """A metric pattern (`rewards/*/std`): `*` stands for one or more characters other than `/`."""
    return "*" in metric


def pattern_problem(metric: str) -> str | None:
    """Why a pattern is not one (docs/language.md §2), or None."""
    if "**" in metric:
        return "'**' is not a pattern: '*' matches within one part of a key (no '/')"
    return None


def pattern_regex(metric: str) -> re.Pattern[str]:
    """The keys a pattern matches, whole."""
    return re.compile("".join("[^/]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", metric))
                      + r"\Z")


def term(node: ast.ShorthandTerm) -> TermSignature:
    return TERMS[type(node)]


def first_index(body: ast.Predicate, window: int) -> int:
    """The first series index at which a shorthand condition is defined: where all its terms are."""
    return max(term(leaf).first_index(window) for leaf in ast.leaves(body))  # type: ignore[arg-type]


def reported_comparison(body: ast.Predicate) -> ast.Comparison:
    """The comparison a full expression reports: its first, in source order, that names a metric
    (`step` and `config.KEY` do not count), docs/language.md §4."""
    comparisons = [n for n in ast.walk(body) if isinstance(n, ast.Comparison)]
    naming = [c for c in comparisons if ast.metric_names(c)]
    return (naming or comparisons)[0]


def reported_operand(body: ast.Predicate) -> ast.Value:
    """What `{value}` reports for a full expression: the left operand of `reported_comparison`."""
    return reported_comparison(body).left


def threshold_of(condition: ast.Condition) -> float | None:
    """Spec §5: the first number of the first term (n/a for a non-numeric right operand)."""
    first = ast.leaves(condition.body)[0]
    if isinstance(first, ast.SHORTHAND_TERMS):
        return term(first).threshold(first)
    if isinstance(first, ast.Comparison):
        right = reported_comparison(condition.body).right
        if isinstance(right, ast.Number):
            return right.value
        if isinstance(right, ast.Negative) and isinstance(right.operand, ast.Number):
            return -right.operand.value
    return None
