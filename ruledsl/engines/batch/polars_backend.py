"""The polars backend: checked rules → lazy queries of their evaluations (docs/language.md §2–§4).

Every series is kept sorted by (run, step) across the whole archive, and
window functions run over the whole column at once; a value whose window would
reach into the previous run is masked by the row's index within its run.
That is much cheaper than a window per group (`.over("run")`, see
shared/reference/polars-notes.md).

Each series comes with that index (`LogFrame.series`): a column of a log in
memory with a value at every row (all finite, unless the rule is `nonfinite`:
the usual case) is read straight off the log, whose index is computed once;
other series are filtered and indexed each.

All shorthand rules on one metric share one frame: its window statistics are
columns computed once, each rule adds its `fired` column, and episodes are read
off the firing rows alone, where one starts or ends (`episode_edges`). A full
expression gets a frame of its own (its metrics joined on run and step).

Where the time goes (measured, benchmarks/README.md): the exact window sums, a
chain of W shifted columns added left to right, are about 40% of a frame with a
20-value window and cannot share work between rows without changing the bits;
polars' streaming engine runs the chain in cache-sized morsels (a Python kernel
would take the frame out of that engine, which measured slower). The rest is a
few column passes per rule: masks compare the index directly, and episode edges
are found among the few firing rows, not over the whole frame.

One table from node type to handler per kind of node, as in sqlglot's
generators (`TERM_HOLDS`, `LOGIC`, `PREDICATES`, `VALUES`, `WINDOW_FUNCTIONS`);
what a construct means (its statistics, first index, reported values) is read
from ruledsl.lang.meaning. Shorthand terms and full-expression values are
separate compilers because they read different things (a rule's own series vs.
named metrics).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from ruledsl.engines.batch.frames import INDEX, KEY, RUN, STEP, VALUE, LogFrame, index_in_run
from ruledsl.lang import ast, meaning
from ruledsl.lang.configuration import Scalar, literal_compare
from ruledsl.lang.meaning import Statistic
from ruledsl.model.rule import Rule

FIRED = "fired"
BASELINE = "baseline"
COMPARE: dict[str, Callable[[pl.Expr, pl.Expr | float], pl.Expr]] = {
    "<": pl.Expr.lt, "<=": pl.Expr.le, ">": pl.Expr.gt, ">=": pl.Expr.ge, "==": pl.Expr.eq, "!=": pl.Expr.ne,
}


# Window sums are added left to right, x_(i-W+1) first: the same bits whatever precedes
# the run in the column, and the same bits as the incremental engine's plain loop. A
# running sum (rolling_sum) would carry rounding from earlier runs into this one, so a
# mean sitting exactly on a threshold could fire in an archive and not alone.
# Windows up to EXACT_WINDOW_LIMIT values are a chain of shifted columns added in the
# plan; longer ones go to the numpy kernel (`_exact_window`), which adds the same values
# in the same order block by block in cache: the same bits at any W.
EXACT_WINDOW_LIMIT = 64
STD_CHAIN_LIMIT = 8  # a std chain holds ~2·W² terms: 64 values cost 0.7 s and 136 MB to plan, 8 values ~0.01 s
WINDOW_BLOCK = 1 << 14  # rows the numpy kernel sums at once (the block and its W-row margin stay in cache)
WINDOW_GAP = 4096  # masked rows between two runs' defined rows computed anyway rather than starting a new segment


def window_sum(x: pl.Expr, window: int, lag: int = 0) -> pl.Expr:
    """x_(i-L-W+1) + … + x_(i-L) (L = lag), defined from row W+L-1 of the column on."""
    if window == 1:  # a sum of one value is that value (-0.0 stays -0.0)
        return x.shift(lag) if lag else x
    if window > EXACT_WINDOW_LIMIT:
        return _exact_window(x, window, lag, "sum")
    total = x.shift(lag + window - 1)
    for k in range(lag + window - 2, lag - 1, -1):
        total = total + x.shift(k)
    return total


def true_divide(numerator: pl.Expr, denominator: pl.Expr | float) -> pl.Expr:
    """numerator / denominator, correctly rounded like Python's `/`.

    polars divides by a scalar as a multiplication by its reciprocal, which is off by
    one ulp about a third of the time (5/3 → 1.6666666666666665): enough to miss a
    threshold met exactly. A full-length divisor (the row index as a float times 0,
    plus the scalar: the index is finite, so this is the scalar exactly) takes the
    element-wise division kernel instead.
    """
    return numerator / (pl.col(INDEX).cast(pl.Float64) * 0.0 + denominator)


def window_mean(x: pl.Expr, window: int, lag: int = 0) -> pl.Expr:
    if window == 1:  # x / 1 is x, bit for bit (NaN, infinities and -0.0 included)
        return x.shift(lag) if lag else x
    if window > EXACT_WINDOW_LIMIT:
        return _exact_window(x, window, lag, "mean")
    return true_divide(window_sum(x, window, lag), window)


def window_std(x: pl.Expr, window: int, lag: int = 0) -> pl.Expr:
    """Population standard deviation of x_(i-L-W+1) … x_(i-L): sqrt(sum((x - mean)^2) / W),
    mean as above, the squares added left to right."""
    # Each deviation repeats the mean's W-term chain, so the plan grows as W²: beyond a few
    # values the numpy kernel (the same additions in the same order) is far cheaper to plan.
    if window > STD_CHAIN_LIMIT:
        return _exact_window(x, window, lag, "std")
    mean = window_mean(x, window, lag)
    deviation = x.shift(lag + window - 1) - mean
    squares = deviation * deviation
    for k in range(lag + window - 2, lag - 1, -1):
        deviation = x.shift(k) - mean
        squares = squares + deviation * deviation
    return true_divide(squares, window).sqrt()


def _exact_window(x: pl.Expr, window: int, lag: int, statistic: str) -> pl.Expr:
    """The window's sum, mean or std by the numpy kernel, null where the window reaches
    before the run (index < W+L-1): only rows whose window lies in their run are summed."""
    from collections.abc import Sequence  # map_batches' argument type (the module's imports are shared)

    def kernel(columns: Sequence[pl.Series]) -> pl.Series:
        return _window_kernel(columns[0], columns[1], window, lag, statistic)

    computed = pl.map_batches([x, pl.col(INDEX)], kernel, return_dtype=pl.Float64)
    return pl.when(pl.col(INDEX) >= window + lag - 1).then(computed)


def _window_kernel(values: pl.Series, index: pl.Series, window: int, lag: int, statistic: str) -> pl.Series:
    """Row i (index >= W+L-1) gets x_(i-L-W+1) + … + x_(i-L) added left to right, as W
    vectorized adds of shifted slices over a block of rows (total = first slice; total +=
    next …), then / W (numpy's division is correctly rounded) for the mean; for the std,
    the squared deviations from that mean added the same way, / W, square root.

    O(rows x W) additions, in C. Rows whose window reaches before their run are not
    summed (nor a long window's masked head of each run): a block covers one segment of
    defined rows, segments closer than WINDOW_GAP rows merged (the gap is masked later).
    """
    import numpy as np  # only the batch engine's long windows need it: not imported with ruledsl

    first = window + lag - 1  # row i's window starts at x[i - first]
    x = values.cast(pl.Float64).to_numpy()  # a null reads as NaN: such windows are set to null below
    n = len(x)
    out = np.full(n, np.nan)
    edges = np.flatnonzero(np.diff(index.to_numpy() >= first, prepend=False, append=False))
    starts, ends = edges[0::2], edges[1::2]  # segments of consecutive defined rows: [start, end)
    if len(starts):
        apart = np.append(True, starts[1:] - ends[:-1] >= WINDOW_GAP)  # segments not merged with the one before
        starts, ends = starts[apart], ends[np.append(apart[1:], True)]
    scratch, squares = np.empty(min(n, WINDOW_BLOCK)), np.empty(min(n, WINDOW_BLOCK))
    with np.errstate(all="ignore"):  # overflow to infinity, inf - inf: IEEE results, as in the plan
        for start, end in zip(starts.tolist(), ends.tolist()):
            for a in range(max(start, first), end, WINDOW_BLOCK):
                rows = min(end, a + WINDOW_BLOCK) - a
                low = a - first
                total = out[a:a + rows]
                np.copyto(total, x[low:low + rows])
                for k in range(low + 1, low + window):
                    np.add(total, x[k:k + rows], out=total)
                if statistic == "sum":
                    continue
                np.divide(total, window, out=total)
                if statistic == "std":
                    deviation, sum_squares = scratch[:rows], squares[:rows]
                    np.subtract(x[low:low + rows], total, out=deviation)
                    np.multiply(deviation, deviation, out=sum_squares)
                    for k in range(low + 1, low + window):
                        np.subtract(x[k:k + rows], total, out=deviation)
                        np.multiply(deviation, deviation, out=deviation)
                        np.add(sum_squares, deviation, out=sum_squares)
                    np.divide(sum_squares, window, out=sum_squares)
                    np.sqrt(sum_squares, out=total)
    result = pl.Series(values.name, out)
    if values.null_count():  # a window holding a null is null, as the plan's additions give
        nulls = np.concatenate(([0], np.cumsum(values.is_null().to_numpy())))
        row = np.arange(first, n)
        result = result.scatter(row[nulls[row - lag + 1] > nulls[row - first]], None)
    return result


@dataclass(frozen=True)
class Term:
    """A compiled predicate: when it holds, from which index it is defined, what it reports."""

    holds: pl.Expr
    defined_from: int
    value: pl.Expr
    baseline: pl.Expr | None


# ================================================================= shorthand conditions


class _ShorthandCompiler:
    """Shorthand terms over one series x (docs/language.md §3), for every rule that reads it.

    What a term reads and reports comes from its row in `meaning.TERMS`; this
    compiler computes each `Statistic` (`STATISTICS`) and each term's condition
    over them (`TERM_HOLDS`). Statistics become columns of their own, named by
    kind and window, so that rules on the same metric share them and no
    expression repeats a window sum.
    """

    def __init__(self) -> None:
        self.x = pl.col(VALUE)
        self.features: dict[str, pl.Expr] = {}  # computed from x
        self.derived: dict[str, pl.Expr] = {}  # computed from features, one step later
        self.window = 1

    def for_window(self, window: int) -> _ShorthandCompiler:
        self.window = window
        return self

    def statistic(self, statistic: Statistic) -> pl.Expr:
        stage, build = STATISTICS[statistic]
        if stage == "inline":
            return build(self)
        name = f"__{statistic.name.lower()}{self.window}"
        columns = self.features if stage == "column" else self.derived
        if name not in columns:
            columns[name] = build(self)
        return pl.col(name)

    def compile(self, node: ast.Predicate) -> Term:
        if isinstance(node, ast.LOGIC):
            return LOGIC[type(node)](self, node)
        signature = meaning.term(node)  # type: ignore[arg-type]
        read = {s: self.statistic(s) for s in (*signature.reads, signature.value)}
        baseline = self.statistic(signature.baseline) if signature.baseline else None
        holds = TERM_HOLDS[type(node)](node, read)
        return Term(holds, signature.first_index(self.window), read[signature.value], baseline)


def _first_mean(c: _ShorthandCompiler) -> pl.Expr:
    """B of drop/rise: v at index W-1 carried forward (read from 2W-1 on)."""
    return pl.when(pl.col(INDEX) == c.window - 1).then(c.statistic(Statistic.SMOOTHED)).forward_fill()


# Statistic → (where it lives, how it is computed): "column" from x, "derived" from
# columns (one stage later), "inline" read straight off x.
STATISTICS: dict[Statistic, tuple[str, Callable[[_ShorthandCompiler], pl.Expr]]] = {
    Statistic.SMOOTHED: ("column", lambda c: window_mean(c.x, c.window)),
    # m of spike: v of the row before, summed there directly (the same additions as
    # shifting v; cheaper than a second stage that shifts it)
    Statistic.PREVIOUS_MEAN: ("column", lambda c: window_mean(c.x, c.window, lag=1)),
    Statistic.SPREAD: ("column", lambda c: c.x.rolling_max(c.window) - c.x.rolling_min(c.window)),
    Statistic.LAST: ("inline", lambda c: c.x),
    Statistic.RAW: ("inline", lambda c: c.x),
    Statistic.FIRST_MEAN: ("derived", _first_mean),
    Statistic.GAP: ("inline", lambda c: c.x),  # absent's series holds s − L itself (LogFrame.gap_series)
}

Read = dict[Statistic, pl.Expr]


def _compare(node: ast.ShorthandCompare, s: Read) -> pl.Expr:
    return COMPARE[node.op](s[Statistic.SMOOTHED], node.threshold.value)


def _between(node: ast.Between, s: Read) -> pl.Expr:
    v, low, high = s[Statistic.SMOOTHED], node.low.value, node.high.value
    return ((v >= low) & (v <= high)) if node.inside else ((v < low) | (v > high))


def _change(node: ast.Change, s: Read) -> pl.Expr:
    v, baseline = s[Statistic.SMOOTHED], s[Statistic.FIRST_MEAN]
    moved = (baseline - v) if node.direction == "drop" else (v - baseline)
    return (baseline != 0) & (moved / baseline.abs() >= node.percent.value / 100)


def _spike(node: ast.Spike, s: Read) -> pl.Expr:
    previous_mean = s[Statistic.PREVIOUS_MEAN]
    return (previous_mean > 0) & (s[Statistic.LAST] >= node.factor.value * previous_mean)


def _flat(node: ast.Flat, s: Read) -> pl.Expr:
    return s[Statistic.SPREAD] <= node.tolerance.value


def _nonfinite(node: ast.NonFinite, s: Read) -> pl.Expr:
    return ~s[Statistic.RAW].is_finite()


def _absent(node: ast.Absent, s: Read) -> pl.Expr:
    return s[Statistic.GAP] >= node.steps.value


TERM_HOLDS: dict[type, Callable[[Any, Read], pl.Expr]] = {
    ast.ShorthandCompare: _compare, ast.Between: _between, ast.Change: _change,
    ast.Spike: _spike, ast.Flat: _flat, ast.NonFinite: _nonfinite, ast.Absent: _absent,
}


def _combine(c: _ShorthandCompiler, node: ast.And | ast.Or) -> Term:
    """Defined where every term is; value and baseline of the first term (docs/language.md §4)."""
    terms = [c.compile(operand) for operand in node.operands]
    # One horizontal node, not a chain of & or |: polars' optimizer takes seconds over a chain
    # of a few hundred (`< 1 or < 2 or …` up to the length limit). Both are Kleene logic, as & and |.
    combine = pl.all_horizontal if isinstance(node, ast.And) else pl.any_horizontal
    holds = combine(term.holds for term in terms)
    first = terms[0]
    return Term(holds, max(t.defined_from for t in terms), first.value, first.baseline)


def _negate(c: _ShorthandCompiler, node: ast.Not) -> Term:
    inner = c.compile(node.operand)
    return Term(~inner.holds, inner.defined_from, inner.value, inner.baseline)


LOGIC: dict[type, Callable[[_ShorthandCompiler, Any], Term]] = {ast.And: _combine, ast.Or: _combine, ast.Not: _negate}


def shorthand_frame(rules: list[Rule], series: pl.LazyFrame) -> tuple[pl.LazyFrame, list[RuleColumns]]:
    """One frame over a metric's series (`LogFrame.series`) with the columns of every rule that reads it."""
    compiler = _ShorthandCompiler()
    terms = [compiler.for_window(rule.window).compile(rule.condition.body) for rule in rules]
    frame = (series
             .with_columns(expr.alias(name) for name, expr in compiler.features.items())
             .with_columns(expr.alias(name) for name, expr in compiler.derived.items()))
    columns = [RuleColumns(rule, j, term) for j, (rule, term) in enumerate(zip(rules, terms))]
    return frame.with_columns(e for c in columns for e in c.expressions()), columns


# ================================================================= full expressions


class _ExpressionCompiler:
    """Comparisons over named metrics and window functions (docs/language.md §3, full expressions).

    Each metric's own series is a separate frame (its window functions are
    computed there), joined on (run, step) where all metrics are present.
    """

    def __init__(self, metric_columns: dict[str, str]):
        self.metric_columns = metric_columns  # metric name → column in the joined frame
        self.calls: dict[ast.Call, str] = {}  # window function → its column

    def call_column(self, call: ast.Call) -> str:
        return self.calls.setdefault(call, f"__call{len(self.calls)}")

    def predicate(self, node: ast.Predicate) -> pl.Expr:
        return PREDICATES[type(node)](self, node)

    def value(self, node: ast.Value) -> pl.Expr:
        return VALUES[type(node)](self, node)


def _comparison(c: _ExpressionCompiler, node: ast.Comparison) -> pl.Expr:
    if isinstance(node.left, ast.Literal) or isinstance(node.right, ast.Literal):
        return pl.lit(_literal_comparison(node))
    left, right = c.value(node.left), c.value(node.right)
    # polars orders NaN above every number; in a rule a NaN (0/0, inf-inf) never holds.
    return pl.when(left.is_nan() | right.is_nan()).then(False).otherwise(COMPARE[node.op](left, right))


def _binary(c: _ExpressionCompiler, node: ast.BinaryOp) -> pl.Expr:
    left, right = c.value(node.left), c.value(node.right)
    if node.op == "/":  # spec: a division by zero gives NaN, so its comparison is false
        # `right` appears once: `when(right == 0) … otherwise(left / right)` held it twice, and a
        # divisor holding divisions, a / (b / (c / …)), doubled the plan at every level.
        # `replace` compares with ==, so -0.0 is a zero too.
        return true_divide(left, right.replace(0.0, float("nan")))
    return ARITHMETIC[node.op](left, right)


def _literal_comparison(node: ast.Comparison) -> bool:
    """A comparison with `true`, `false` or a text: constant, by kinds (a metric is a number)."""
    def constant(side: ast.Value) -> Scalar:
        return side.value if isinstance(side, (ast.Literal, ast.Number)) else 0.0  # any number: another kind
    return literal_compare(node.op, constant(node.left), constant(node.right))


def _unbound(c: _ExpressionCompiler, node: ast.ConfigRef) -> pl.Expr:
    raise TypeError(f"config.{node.key} reached the engine unbound: rules are bound to a run's configuration first")


def _literal(c: _ExpressionCompiler, node: ast.Literal) -> pl.Expr:
    raise TypeError("a literal is compared with == or != only (the checker keeps it there)")


def _call(c: _ExpressionCompiler, node: ast.Call) -> pl.Expr:
    if node.name == "abs":
        return c.value(node.args[0]).abs()
    return pl.col(c.call_column(node))


ARITHMETIC: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul}
PREDICATES: dict[type, Callable[[_ExpressionCompiler, Any], pl.Expr]] = {
    ast.And: lambda c, n: pl.all_horizontal(c.predicate(o) for o in n.operands),
    ast.Or: lambda c, n: pl.any_horizontal(c.predicate(o) for o in n.operands),
    ast.Not: lambda c, n: ~c.predicate(n.operand),
    ast.Comparison: _comparison,
}
VALUES: dict[type, Callable[[_ExpressionCompiler, Any], pl.Expr]] = {
    ast.Number: lambda c, n: pl.lit(n.value, dtype=pl.Float64),
    ast.MetricRef: lambda c, n: pl.col(c.metric_columns[n.name]),
    ast.StepRef: lambda c, n: pl.col(STEP).cast(pl.Float64),
    ast.ConfigRef: _unbound,
    ast.Literal: _literal,
    ast.Negative: lambda c, n: -c.value(n.operand),
    ast.BinaryOp: _binary,
    ast.Call: _call,
}
# A window function over its metric's series x (column VALUE), for window W and lag L
# (x_(i-L-W+1) … x_(i-L); delta and baseline take no lag).
WINDOW_FUNCTIONS: dict[str, Callable[[pl.Expr, int, int], pl.Expr]] = {
    "mean": window_mean,
    "min": lambda x, w, lag: _lagged(x.rolling_min(w), lag),
    "max": lambda x, w, lag: _lagged(x.rolling_max(w), lag),
    "std": lambda x, w, lag: window_std(x, w, lag) if lag else window_std(x, w),  # lag: helper in progress
    "sum": window_sum,
    "delta": lambda x, w, lag: x - x.shift(w),
    "baseline": lambda x, w, lag: pl.when(pl.col(INDEX) == w - 1).then(window_mean(x, w)).forward_fill(),
}


def _lagged(window: pl.Expr, lag: int) -> pl.Expr:
    return window.shift(lag) if lag else window


def window_function(call: ast.Call) -> pl.Expr:
    """A window function over its metric's series x (column VALUE), null where undefined."""
    computed = WINDOW_FUNCTIONS[call.name](pl.col(VALUE), call.window, call.lag)
    first = meaning.FUNCTIONS[call.name].first_index(call.window, call.lag)
    return pl.when(pl.col(INDEX) >= first).then(computed)


def expression_frame(rule: Rule, series: dict[str, pl.LazyFrame]) -> tuple[pl.LazyFrame, list[RuleColumns]]:
    """The evaluations of a full expression, with the rule's columns."""
    body = rule.condition.body
    names = list(series)
    compiler = _ExpressionCompiler({name: f"__metric{j}" for j, name in enumerate(names)})
    fired = compiler.predicate(body)  # registers the window functions it needs
    operand = meaning.reported_operand(body)  # a literal reports no number: n/a
    value = pl.lit(None, dtype=pl.Float64) if isinstance(operand, ast.Literal) else compiler.value(operand)

    joined = None
    for j, name in enumerate(names):
        calls = [c for c in compiler.calls if c.metric.name == name]
        frame = (series[name]
                 .select(RUN, STEP, pl.col(VALUE).alias(f"__metric{j}"),
                         *(window_function(c).alias(compiler.calls[c]) for c in calls)))
        joined = frame if joined is None else joined.join(
            frame, on=[RUN, STEP], how="inner", maintain_order="left")
    assert joined is not None
    defined = pl.all_horizontal(pl.col(c).is_not_null() for c in compiler.calls.values()) \
        if compiler.calls else pl.lit(True)
    # Evaluations only, so INDEX counts evaluations (for `for` and min_steps) and d = 0.
    frame = joined.filter(defined).with_columns(index_in_run().alias(INDEX),
                                                pl.lit(None, dtype=pl.String).alias(KEY))
    columns = RuleColumns(rule, 0, Term(fired, 0, value, None))
    return frame.with_columns(columns.expressions()), [columns]


# ================================================================= shared steps


@dataclass(frozen=True)
class RuleColumns:
    """The column one rule adds to the frame of its series (fired), and what its records read."""

    rule: Rule
    position: int  # its place among the rules of the frame, naming its columns
    term: Term

    def name(self, part: str) -> str:
        return f"__{part}{self.position}"

    def expressions(self) -> list[pl.Expr]:
        """The rule's fired column; value and baseline are row-wise, read only where needed."""
        return [self._fired().alias(self.name("fired"))]

    @property
    def value(self) -> pl.Expr:
        return self.term.value.cast(pl.Float64)

    @property
    def baseline(self) -> pl.Expr:
        return _or_null(self.term.baseline)

    def evaluated(self, first: int = 0) -> pl.Expr:
        """The rows from the rule's evaluation `first` of the run on (evaluations are
        consecutive rows from d on); compared with the index directly, no subtraction."""
        return pl.col(INDEX) >= self.term.defined_from + first

    def _fired(self) -> pl.Expr:
        """docs/language.md §3: the condition, then `for N steps`, then `min_steps`, in training steps.

        The condition is null only where a window is not yet defined, before the rule's
        first evaluation, and there the index mask makes it false (null & false is false).
        `for N steps` holds where the streak of evaluations at which the condition holds
        began at a step s₀ with s − s₀ ≥ N − 1: s₀ is the step of the streak's first row
        (a holding evaluation whose previous row is not a holding evaluation of the same
        series), carried forward.
        """
        n, first = self.rule.sustain, self.term.defined_from
        holds = self.term.holds & (pl.col(INDEX) >= first)
        if n > 1:
            # The previous row is an evaluation of the same series when this one's index is past the first.
            continues = holds.shift(1).fill_null(False) & (pl.col(INDEX) > first)
            streak_start = pl.when(holds & ~continues).then(pl.col(STEP)).forward_fill()
            holds = holds & (pl.col(STEP) - streak_start >= n - 1)
        # Also at min_steps 0: a log may hold negative steps, and none of them fires (§3.6).
        return holds & (pl.col(STEP) >= self.rule.min_steps)

    def evaluations(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """run, step, rule, fired, value at every evaluation of the rule."""
        return frame.filter(self.evaluated()).select(
            RUN, STEP, pl.lit(self.rule.name).alias("rule"), pl.col(self.name("fired")).fill_null(False).alias(FIRED),
            self.value.alias(VALUE))


def _or_null(expr: pl.Expr | None) -> pl.Expr:
    return pl.lit(None, dtype=pl.Float64) if expr is None else expr.cast(pl.Float64)


def episode_edges(frame: pl.LazyFrame, columns: list[RuleColumns]) -> pl.LazyFrame:
    """rule, run, step, start, index, value, baseline, key where an episode starts or ends.

    Evaluations are consecutive rows of a frame, so an episode is known by its two
    ends (its length is the difference of their indexes). Only the firing rows, few,
    are kept (one pass over the frame); among them, one of a rule's rows starts an
    episode unless the rule fired at the evaluation just before (the previous index
    of the same run), and ends one unless it fires at the next.
    """
    firing = frame.filter(pl.any_horizontal(pl.col(c.name("fired")) for c in columns))
    return pl.concat([_rule_edges(firing.filter(pl.col(c.name("fired"))), c) for c in columns])


def _rule_edges(fired: pl.LazyFrame, column: RuleColumns) -> pl.LazyFrame:
    def follows(offset: int) -> pl.Expr:  # the fired row `offset` rows away is the adjacent evaluation
        return ((pl.col(INDEX).shift(offset) == pl.col(INDEX) - offset)
                & pl.col(RUN).shift(offset).eq_missing(pl.col(RUN))).fill_null(False)

    return (fired.with_columns((~follows(1)).alias("__start"), (~follows(-1)).alias("__end"))
            .filter(pl.col("__start") | pl.col("__end"))
            .select(pl.lit(column.rule.name).alias("rule"), RUN, STEP, "__start", INDEX,
                    column.value.alias(VALUE), column.baseline.alias(BASELINE), KEY))


def episodes(edges: pl.LazyFrame) -> pl.LazyFrame:
    """Maximal runs of consecutive firing evaluations (docs/language.md §4), one row each.

    Each rule's edge rows are in (run, step) order, a start before its end (one row
    when the episode is a single evaluation), so a running count of starts numbers
    the episodes.
    """
    return (edges
            .with_columns(pl.col("__start").cum_sum().alias("__episode"))
            .group_by("__episode")
            .agg(pl.col("rule").first(), pl.col(RUN).first(), pl.col(STEP).first().alias("first_step"),
                 pl.col(STEP).last().alias("last_step"),
                 (pl.col(INDEX).last() - pl.col(INDEX).first() + 1).cast(pl.Int64).alias("n_evals"),
                 pl.col(VALUE).first(), pl.col(BASELINE).first(), pl.col(KEY).first().alias("metric"))
            .drop("__episode"))


@dataclass(frozen=True)
class RuleInput:
    """One rule as a frame reads it: its metrics' candidate keys, and the runs it is evaluated on
    (None: every run; a rule bound to a configuration runs on the runs that share it)."""

    rule: Rule
    candidates: Mapping[str, tuple[str, ...]]
    runs: tuple[Any, ...] | None = None


def rule_frames(rules: list[RuleInput], log: LogFrame) -> list[tuple[pl.LazyFrame, list[RuleColumns]]]:
    """Frames holding every rule's columns: one per metric series for shorthand rules (the
    rules reading the same series share it), one per rule for full expressions. Rules whose
    metrics never appear are left out."""
    shorthand_groups: dict[tuple[tuple[str, ...], str, tuple[Any, ...] | None], list[Rule]] = {}
    frames = []
    for item in rules:
        rule, candidates = item.rule, item.candidates
        if rule.condition.is_shorthand:
            key = (candidates[rule.metrics[0]], _series_kind(rule.condition.body), item.runs)
            shorthand_groups.setdefault(key, []).append(rule)
            continue
        found = {name: _of_runs(log.series(candidates[name]), item.runs) for name in rule.metrics}
        series = {name: frame for name, frame in found.items() if frame is not None}
        if len(series) == len(found):
            frames.append(expression_frame(rule, series))
    for (keys, kind, runs), group in shorthand_groups.items():
        shared = _of_runs(log.gap_series(keys) if kind == "gap" else log.series(keys, keep_nonfinite=kind == "raw"),
                          runs)
        if shared is not None:
            frames.append(shorthand_frame(group, shared))
    return frames


def _series_kind(body: ast.Predicate) -> str:
    """Which series a shorthand reads: finite values, every value (`nonfinite`) or gaps (`absent`)."""
    if isinstance(body, ast.NonFinite):
        return "raw"
    return "gap" if isinstance(body, ast.Absent) else "finite"


def _of_runs(series: pl.LazyFrame | None, runs: tuple[Any, ...] | None) -> pl.LazyFrame | None:
    """The series of the given runs only (whole runs: their indexes stay what they were)."""
    if series is None or runs is None:
        return series
    return series.filter(pl.col(RUN).is_in(list(runs)))
