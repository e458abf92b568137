"""A deliberately plain evaluator of rules, written straight from the language reference (test code).

It exists to be read next to docs/language.md (the rule language contract, version 2)
and to be compared with the real engines, so it favours obviousness over speed:
plain loops and lists, one small function per rule of the language, no polars. It
parses nothing itself and imports nothing from ruledsl.engines or from the meaning
tables of ruledsl.lang.meaning: it reads the checked AST of ruledsl.lang.ast, so
it is an independent reading of the language, not a second copy of the engines.

    reference_audit(rows, rule, candidates=None, config=None, when=None)        -> episodes (§4)
    reference_evaluations(rows, rule, candidates=None, config=None, when=None)  -> evaluations (§3)

Arguments
  `rows`        a list of `(run, step, {key: value})` in file order. A key missing
                from the dict is absent; a value of None is a null (JSON `null`):
                merging treats it like a value (a later null at the same step
                overrides an earlier value) and the key is then absent at that step
                (§2). Other values are numbers; float() reads them, so the strings
                "nan", "inf", "-inf" work too.
  `rule`        a `ruledsl.Rule`; only its AST (`rule.condition.body`), `metric`
                (a key, an alias or a pattern like `rewards/*/std`), `window`,
                `min_steps`, `sustain` and, once the rule model has it, `when` are read.
  `candidates`  maps a metric name to the log keys to try for it, in order (§2);
                by default a metric is only its own name. Patterns ignore it.
  `config`      the runs' configuration (§2), a flat mapping key -> number | bool |
                str | None (None counts as a missing key). Either ONE mapping,
                the configuration of every run, or a CALLABLE run id -> mapping
                (or None) for configurations that differ per run. None (default):
                every run has an empty configuration.
  `when`        the rule's `when` (§1): an `ast.Condition` (as returned by
                `ruledsl.lang.read.parse_when`) or its text. Default: the rule's own
                `when` attribute where the rule model has one, else none.

Every episode is a dict `run, metric, first_step, last_step, n_evals, value, baseline`;
`metric` is the log key a shorthand rule resolved to (for a pattern, the matched
key) and None for a full expression (§4). Every evaluation is a dict
`run, metric, step, fired, value`.

Arithmetic is plain Python floats, written as the language writes it: a window
sum adds the values left to right starting from the first (a sum of one value is
that value, so -0.0 stays -0.0), a mean is that sum / W, drop is (B - v) / |B| >=
P / 100, and so on. Each operation is a correctly rounded IEEE operation: on values
whose window sums are exact (the property tests' grids) a mean is the correctly
rounded exact mean, but a verdict exactly at a threshold reached through a rounded
mean (W = 3 or 5) can in principle differ from exact arithmetic; test_properties.py
pins the tie cases it relies on with hand-computed answers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ruledsl.lang import ast

NAN = float("nan")


# ================================================================ docs/language.md §2: series


def merge_rows(rows):
    """run -> [(step, {key: value}), ...] ascending by step (docs/language.md §2).

    Rows with the same (run, step) merge key by key and the later row (file order)
    wins a key. A null (None) is a value for merging: a later null overrides an
    earlier value, and the key is then absent at that step, so nulls are dropped
    only once every row is merged. A step whose keys are all null or that has no
    key at all is still a merged row (a logged step): `absent(N)` evaluates there.
    """
    merged = {}
    for run, step, values in rows:
        at_step = merged.setdefault(run, {}).setdefault(step, {})
        for key, value in values.items():
            at_step[key] = None if value is None else float(value)
    return {run: [(step, {k: v for k, v in values.items() if v is not None})
                  for step, values in sorted(steps.items())]
            for run, steps in merged.items()}


def is_present(values, key):
    """Present = a numeric value, finite or not; null or no key is absent (§2, §3 `absent`)."""
    return key in values  # merge_rows already dropped the nulls


def resolve_key(run_rows, name, candidates):
    """The log key metric `name` stands for in this run, or None if no candidate appears (§2).

    Of the candidates (the name itself, then the catalog's keys, in order), the one
    that appears first in the run (lowest step); a tie goes to the earlier candidate.
    """
    keys = candidates.get(name, (name,)) if candidates else (name,)
    best = None  # (first step, candidate position, key)
    for position, key in enumerate(keys):
        steps = [step for step, values in run_rows if is_present(values, key)]
        if steps:
            option = (min(steps), position, key)
            if best is None or option < best:
                best = option
    return None if best is None else best[2]


def is_pattern(metric):
    """A metric pattern has `*` (§2)."""
    return "*" in metric


def pattern_matches(pattern, key):
    """§2: `*` stands for one or more characters other than `/`; the whole key must match."""
    regex = "[^/]+".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, key) is not None


def matching_keys(run_rows, pattern):
    """The keys of the run a pattern matches, sorted (§2).

    Only keys with at least one non-null value in the run count; "in the run" is
    read after merging (merging comes first, §2): a value a later null of the same
    step overrides does not count.
    """
    keys = {key for _, values in run_rows for key in values}
    return sorted(key for key in keys if pattern_matches(pattern, key))


def raw_series(run_rows, key):
    """[(step, value)] at every row where the key is present, non-finite values included."""
    return [(step, values[key]) for step, values in run_rows if is_present(values, key)]


def finite_series(run_rows, key):
    """[(step, value)] of the finite values only: the series x_0 … x_{n-1} of §2."""
    return [(step, value) for step, value in raw_series(run_rows, key) if math.isfinite(value)]


# ================================================================ docs/language.md §2: configuration
#
# Kinds of value (§3 full expressions): a number, a boolean or a string. A Python bool is an
# int, so the boolean test comes first.

NUMBER, BOOLEAN, STRING = "number", "boolean", "string"


def kind_of(value):
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return STRING
    return NUMBER


class NotEvaluated(Exception):
    """The rule is not evaluated on this run (§2); `reason` as the coverage report words it (§4)."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def config_of_run(config, run):
    """The run's configuration: one mapping for every run, or a callable run -> mapping."""
    if config is None:
        return {}
    if callable(config) and not isinstance(config, Mapping):
        return config(run) or {}
    return config


def config_value(config, key):
    """`config.KEY` (§2): a number (as a float), a boolean or a string.

    A missing key, or one whose value is null, means the rule is not evaluated on the run.
    """
    value = config.get(key)
    if value is None:
        raise NotEvaluated("config_unknown", f"the run's configuration has no {key!r}")
    if kind_of(value) == NUMBER:
        return float(value)
    return value


def static_kind(node, config):
    """The kind of a value node on this run, or NotEvaluated where a use is of the wrong kind.

    §3: a boolean or a string may only be compared with `==`/`!=`; any other use
    (arithmetic, `<`) "is an error of the condition where the types are known in
    advance, and otherwise makes the comparison undefined". A literal's kind is known
    in advance (the checker refuses `true + 1`); a config value's kind is known only
    on the run. INTERPRETATION (the same way as a missing key, §2): where a config
    value that is a boolean or a string is used in arithmetic or with <, <=, >, >=,
    the rule is not evaluated on the run at all (coverage reason `config_unknown`:
    "a key it needs is missing or of the wrong kind", §4). Config values are constant
    over a run, so this is decided once per run, before any row.
    """
    if isinstance(node, ast.Literal):
        return kind_of(node.value)
    if isinstance(node, ast.ConfigRef):
        return kind_of(config_value(config, node.key))
    if isinstance(node, (ast.Number, ast.MetricRef, ast.StepRef)):
        return NUMBER
    if isinstance(node, ast.Call) and node.name != "abs":
        return NUMBER  # a window function of a metric's own series
    operands = [node.args[0]] if isinstance(node, ast.Call) else list(ast.children(node))
    for operand in operands:  # abs, unary minus, + - * /: numbers only
        kind = static_kind(operand, config)
        if kind != NUMBER:
            raise NotEvaluated("config_unknown", f"a {kind} used in arithmetic")
    return NUMBER


def check_kinds(predicate, config):
    """Every comparison of `predicate` is defined on this run (see static_kind), else NotEvaluated."""
    for node in ast.walk(predicate):
        if isinstance(node, ast.Comparison):
            kinds = (static_kind(node.left, config), static_kind(node.right, config))
            if node.op not in ("==", "!=") and kinds != (NUMBER, NUMBER):
                raise NotEvaluated("config_unknown", f"{kinds[0]} {node.op} {kinds[1]}")


def check_config(predicate, config):
    """§2: a rule whose `when` or condition names a key the run's configuration lacks (or
    uses one of the wrong kind) is not evaluated on that run."""
    for key in ast.config_keys(predicate):
        config_value(config, key)
    check_kinds(predicate, config)


def when_holds(when, config):
    """§1 `when`: the rule applies to the run only where this holds on its configuration.

    `when` holds comparisons of config.KEY with literals only (a metric or `step` in it
    is an error of the rule). A missing key or an undefined comparison: NotEvaluated.
    """
    for node in ast.walk(when.body):
        if isinstance(node, (ast.MetricRef, ast.StepRef, ast.Call)):
            raise ValueError(f"`when` may only read the configuration: {node!r}")
    check_config(when.body, config)
    return predicate_holds(when.body, Row(step=None, config=config, at={}))


# ================================================================ small numeric helpers


def left_to_right_sum(values):
    """x_0 + x_1 + … in order, starting from the first value (§3: window sums).

    A sum of one value is that value (0.0 + -0.0 would be 0.0: -0.0 stays -0.0), and
    no compensation (Python 3.12's sum() compensates rounding, the engines do not).
    """
    values = list(values)
    total = values[0]
    for value in values[1:]:
        total += value
    return total


def mean(values):
    values = list(values)
    return left_to_right_sum(values) / len(values)


def population_std(values):
    """§3 std: sqrt(sum((x - mean)^2) / W), both sums taken left to right."""
    values = list(values)
    mu = mean(values)
    return math.sqrt(left_to_right_sum([(x - mu) * (x - mu) for x in values]) / len(values))


def compare(op, left, right):
    """A comparison (§3).

    Between values of different kinds (number, boolean, string) `==` is false and `!=`
    true (`true == 1` is false); orderings of non-numbers never get here (check_kinds).
    One involving NaN is false.
    """
    if kind_of(left) != kind_of(right):
        if op in ("==", "!="):
            return op == "!="
        raise TypeError(f"{left!r} {op} {right!r}")  # refused by check_kinds before any row
    if kind_of(left) == NUMBER and (math.isnan(left) or math.isnan(right)):
        return False
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    raise ValueError(f"unknown comparison {op!r}")


# ================================================================ docs/language.md §3: shorthand terms
#
# Each term, at series index i of x (finite values), returns None where it is
# not defined, else (holds, value, baseline) with value and baseline as §4 says.


def smoothed(xs, i, w):
    """v_i = mean(x_{i-W+1} … x_i)."""
    return left_to_right_sum(xs[i - w + 1:i + 1]) / w


def term_compare(node, xs, i, w):
    """`< c`, `<= c`, `> c`, `>= c`, `== c`, `!= c`: v_i compared with c; from i >= W-1."""
    if i < w - 1:
        return None
    v = smoothed(xs, i, w)
    return compare(node.op, v, node.threshold.value), v, None


def term_between(node, xs, i, w):
    """`range(a, b)`: a <= v_i <= b; `outside(a, b)`: v_i < a or v_i > b; from i >= W-1."""
    if i < w - 1:
        return None
    v = smoothed(xs, i, w)
    a, b = node.low.value, node.high.value
    if node.inside:
        holds = a <= v <= b
    else:
        holds = v < a or v > b
    return holds, v, None


def term_change(node, xs, i, w):
    """`drop(P%)`: B != 0 and (B - v_i)/|B| >= P/100, `rise(P%)`: B != 0 and (v_i - B)/|B| >= P/100,
    B = mean(x_0 … x_{W-1}); from i >= 2W-1."""
    if i < 2 * w - 1:
        return None
    v = smoothed(xs, i, w)
    b = left_to_right_sum(xs[0:w]) / w
    p = node.percent.value
    if b == 0:
        return False, v, b
    if node.direction == "drop":
        holds = (b - v) / abs(b) >= p / 100
    else:
        holds = (v - b) / abs(b) >= p / 100
    return holds, v, b


def term_spike(node, xs, i, w):
    """`spike(Kx)`: m > 0 and x_i >= K*m, m = mean(x_{i-W} … x_{i-1}); from i >= W; value x_i."""
    if i < w:
        return None
    m = left_to_right_sum(xs[i - w:i]) / w
    x = xs[i]
    k = node.factor.value
    holds = m > 0 and x >= k * m
    return holds, x, m


def term_flat(node, xs, i, w):
    """`flat(e)`: max - min of x_{i-W+1} … x_i <= e; from i >= W-1; value max - min."""
    if i < w - 1:
        return None
    window = xs[i - w + 1:i + 1]
    spread = max(window) - min(window)
    return spread <= node.tolerance.value, spread, None


def term_nonfinite(node, xs, i, w):
    """`nonfinite`: the raw value at that row is NaN or ±inf (W ignored); every row with the key."""
    x = xs[i]  # here xs is the raw series, non-finite values included
    return not math.isfinite(x), x, None


def term_logic(node, xs, i, w):
    """and / or / not: defined where all terms are; value and baseline of the first term (§3, §4)."""
    operands = node.operands if isinstance(node, (ast.And, ast.Or)) else (node.operand,)
    parts = [shorthand_at(operand, xs, i, w) for operand in operands]
    if any(part is None for part in parts):
        return None
    holds = [part[0] for part in parts]
    if isinstance(node, ast.And):
        result = all(holds)
    elif isinstance(node, ast.Or):
        result = any(holds)
    else:
        result = not holds[0]
    return result, parts[0][1], parts[0][2]


SHORTHAND_TERMS = {
    ast.ShorthandCompare: term_compare,
    ast.Between: term_between,
    ast.Change: term_change,
    ast.Spike: term_spike,
    ast.Flat: term_flat,
    ast.NonFinite: term_nonfinite,
    ast.And: term_logic,
    ast.Or: term_logic,
    ast.Not: term_logic,
}


def shorthand_at(node, xs, i, w):
    if isinstance(node, ast.Absent):
        raise ValueError("absent(N) stands alone (§3): it cannot be combined")
    return SHORTHAND_TERMS[type(node)](node, xs, i, w)


def uses_nonfinite(body):
    return any(isinstance(leaf, ast.NonFinite) for leaf in ast.leaves(body))


def absent_evaluations(run_rows, key, node):
    """`absent(N)` (§3): [(step, holds, value, None)] at every merged row after the key's first.

    Evaluated at every merged row (a logged step, whatever keys it has) of the run
    after the metric's first appearance; fires when s - L >= N, where L is the
    greatest step <= s at which the metric is present (a numeric value, finite or
    not). Value s - L. The window is ignored.
    """
    n = node.steps.value
    last_present = None  # L so far
    found = []
    for step, values in run_rows:
        if is_present(values, key):
            first = last_present is None
            last_present = step
            if first:
                continue  # the first appearance itself: evaluations start after it
        elif last_present is None:
            continue  # before the first appearance nothing counts
        gap = step - last_present
        found.append((step, gap >= n, float(gap), None))
    return found


def shorthand_evaluations(run_rows, rule, key):
    """[(step, holds, value, baseline)] at each evaluation of a shorthand rule on one key (§3).

    An evaluation is each index i of the series from the term's "defined from" on
    (for a combination, where every term is defined); for `nonfinite`, every row with
    the key (the raw series); for `absent(N)`, see absent_evaluations.
    """
    body = rule.condition.body
    if isinstance(body, ast.Absent):
        return absent_evaluations(run_rows, key, body)
    if uses_nonfinite(body):
        series = raw_series(run_rows, key)
    else:
        series = finite_series(run_rows, key)
    xs = [value for _, value in series]
    found = []
    for i, (step, _) in enumerate(series):
        result = shorthand_at(body, xs, i, rule.window)
        if result is not None:
            holds, value, baseline = result
            found.append((step, holds, value, baseline))
    return found


# ================================================================ docs/language.md §3: full expressions


class DivisionByZero(Exception):
    """Raised while computing a value; the comparison holding it is false (§3)."""


class Row:
    """What a full expression sees at one evaluation: the row's step, the run's configuration and,
    per metric name, (its finite series xs, its index i at this row)."""

    def __init__(self, step, config, at):
        self.step = step
        self.config = config
        self.at = at


def function_first_index(call):
    """The first series index at which a window function is defined (§3).

    mean/min/max/std/sum(m, W, L): once the metric has W+L values, i >= W+L-1;
    delta(m, k): i >= k; baseline(m, W): i >= W-1.
    """
    if call.name == "delta":
        return call.window
    if call.name == "baseline":
        return call.window - 1
    return call.window + call.lag - 1


def window_function(call, xs, i):
    """mean/min/max/std/sum/delta/baseline of a metric's own series at its index i (§3).

    The (lagged) window of mean/min/max/std/sum is x_{i-L-W+1} … x_{i-L} (L = 0 by default).
    """
    w, lag = call.window, call.lag
    window = xs[i - lag - w + 1:i - lag + 1]
    if call.name == "mean":
        return left_to_right_sum(window) / w
    if call.name == "min":
        return min(window)
    if call.name == "max":
        return max(window)
    if call.name == "std":
        return population_std(window)
    if call.name == "sum":
        return left_to_right_sum(window)
    if call.name == "delta":
        return xs[i] - xs[i - w]
    if call.name == "baseline":
        return left_to_right_sum(xs[0:w]) / w
    raise ValueError(f"unknown function {call.name!r}")


def value_of(node, row):
    """The value a value node stands for at one row: a number, or a boolean/string (§3)."""
    if isinstance(node, ast.Number):
        return node.value
    if isinstance(node, ast.Literal):
        return node.value  # true, false, 'text'
    if isinstance(node, ast.StepRef):
        return float(row.step)  # `step`: the row's training step, a number
    if isinstance(node, ast.ConfigRef):
        return config_value(row.config, node.key)  # `config.KEY`
    if isinstance(node, ast.MetricRef):
        xs, i = row.at[node.name]
        return xs[i]
    if isinstance(node, ast.Negative):
        return -value_of(node.operand, row)
    if isinstance(node, ast.BinaryOp):
        left = value_of(node.left, row)
        right = value_of(node.right, row)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        if right == 0:
            raise DivisionByZero()
        return left / right
    if isinstance(node, ast.Call):
        if node.name == "abs":
            return abs(value_of(node.args[0], row))
        xs, i = row.at[node.metric.name]
        return window_function(node, xs, i)
    raise TypeError(f"not a value: {node!r}")


def predicate_holds(node, row):
    """and / or / not over comparisons; a comparison holding a division by zero is false (§3)."""
    if isinstance(node, ast.And):
        return all([predicate_holds(o, row) for o in node.operands])
    if isinstance(node, ast.Or):
        return any([predicate_holds(o, row) for o in node.operands])
    if isinstance(node, ast.Not):
        return not predicate_holds(node.operand, row)
    try:
        return compare(node.op, value_of(node.left, row), value_of(node.right, row))
    except DivisionByZero:
        return False


def names_a_metric(node):
    return any(isinstance(n, ast.MetricRef) for n in ast.walk(node))


def reported_value(body, row):
    """§4: the value of the left operand of the first comparison, in source order, that names a
    metric (comparisons of `step`, `config.KEY` and literals only do not count).

    NaN where it divides by zero; None (rendered n/a) where it is not a number.
    """
    comparisons = [n for n in ast.walk(body) if isinstance(n, ast.Comparison)]
    first = next((c for c in comparisons if names_a_metric(c)), None)
    if first is None:
        return None
    try:
        value = value_of(first.left, row)
    except DivisionByZero:
        return NAN
    return value if kind_of(value) == NUMBER else None


def functions_defined(body, row):
    for node in ast.walk(body):
        if isinstance(node, ast.Call) and node.name != "abs":
            _, i = row.at[node.metric.name]
            if i < function_first_index(node):
                return False
    return True


def expression_evaluations(run_rows, rule, candidates, config):
    """[(step, holds, value, None)] of a full expression in one run (§3).

    An evaluation is each row where every metric it names is present and finite and
    every function in it is defined (a row missing a metric is not an evaluation).
    """
    body = rule.condition.body
    series = {}  # metric name -> (xs, {step: index})
    for name in ast.metric_names(body):
        key = resolve_key(run_rows, name, candidates)
        if key is None:
            return []
        pairs = finite_series(run_rows, key)
        series[name] = ([value for _, value in pairs], {step: i for i, (step, _) in enumerate(pairs)})
    found = []
    for step, _ in run_rows:
        if not all(step in index for _, index in series.values()):
            continue  # a metric is missing or non-finite here: not an evaluation
        row = Row(step, config, {name: (xs, index[step]) for name, (xs, index) in series.items()})
        if not functions_defined(body, row):
            continue
        found.append((step, predicate_holds(body, row), reported_value(body, row), None))
    return found


# ================================================================ docs/language.md §3: for, then min_steps


def sustain_and_warm_up(evaluations, sustain, min_steps):
    """[(step, fired, value, baseline)] from [(step, holds, value, baseline)] (§3).

    Condition, then `for`, then `min_steps`, in that order:
      * `for N`: fires at an evaluation at step s only if the condition held at every
        evaluation of the current streak (the consecutive evaluations at which it holds,
        ending at this one) and s - s0 >= N - 1, s0 the step of the streak's first
        evaluation. Durations are training steps, not counts of evaluations.
      * `min_steps` M: no firing at an evaluation whose step is below M.
    """
    fired_list = []
    streak_start = None  # s0
    for step, holds, value, baseline in evaluations:
        if holds:
            if streak_start is None:
                streak_start = step
            fired = step - streak_start >= sustain - 1
        else:
            streak_start = None
            fired = False
        if step < min_steps:
            fired = False
        fired_list.append((step, fired, value, baseline))
    return fired_list


# ================================================================ docs/language.md §2, §3: one run


def resolve_when(rule, when):
    """The rule's `when` (an ast.Condition), from the argument, else the rule's own field."""
    if when is None:
        when = getattr(rule, "when", None)
    if isinstance(when, str):
        from ruledsl.lang.read import parse_when

        when = parse_when(when)
    return when


def evaluations_of_run(run_rows, rule, candidates, config, when):
    """{metric: [(step, fired, value, baseline)]} of one run; metric None for a full expression.

    Not evaluated on the run at all (an empty dict) where `when` does not hold or cannot be
    decided, or where the condition names a config key the run lacks or of the wrong kind (§2).
    Shorthand rules: the metric resolves to one key (§2), or a pattern to every matched key,
    each with its own series, evaluations and episodes.
    """
    try:
        if when is not None and not when_holds(when, config):
            return {}  # when_false: the rule does not apply to this run
        check_config(rule.condition.body, config)
    except NotEvaluated:
        return {}
    if not rule.condition.is_shorthand:
        found = expression_evaluations(run_rows, rule, candidates, config)
        return {None: sustain_and_warm_up(found, rule.sustain, rule.min_steps)}
    if is_pattern(rule.metric):
        keys = matching_keys(run_rows, rule.metric)  # aliases do not apply to patterns
    else:
        key = resolve_key(run_rows, rule.metric, candidates)
        keys = [] if key is None else [key]
    return {key: sustain_and_warm_up(shorthand_evaluations(run_rows, rule, key), rule.sustain, rule.min_steps)
            for key in keys}


# ================================================================ docs/language.md §4: episodes


def episodes_of(run, metric, evaluations):
    """Maximal runs of consecutive firing evaluations (§4)."""
    found = []
    current = None
    for step, fired, value, baseline in evaluations:
        if not fired:
            current = None
            continue
        if current is None:
            current = {"run": run, "metric": metric, "first_step": step, "last_step": step, "n_evals": 0,
                       "value": value, "baseline": baseline}
            found.append(current)
        current["last_step"] = step
        current["n_evals"] += 1
    return found


# ================================================================ public API


def _runs(rows, rule, candidates, config, when):
    """(run, metric, evaluations) for every run and key the rule is evaluated on."""
    when = resolve_when(rule, when)
    for run, run_rows in merge_rows(rows).items():
        per_key = evaluations_of_run(run_rows, rule, candidates, config_of_run(config, run), when)
        for metric, evaluations in per_key.items():
            yield run, metric, evaluations


def reference_evaluations(rows, rule, candidates=None, config=None, when=None):
    """Every evaluation of `rule`: dicts run, metric, step, fired, value; sorted by (run, step, metric)."""
    result = []
    for run, metric, evaluations in _runs(rows, rule, candidates, config, when):
        for step, fired, value, _ in evaluations:
            result.append({"run": run, "metric": metric, "step": step, "fired": fired, "value": value})
    return sorted(result, key=lambda e: (e["run"], e["step"], e["metric"] or ""))


def reference_audit(rows, rule, candidates=None, config=None, when=None):
    """One dict per episode (run, metric, first_step, last_step, n_evals, value, baseline).

    Ordered as §4 orders records: by run, first_step, rule (one rule here), then metric.
    """
    result = []
    for run, metric, evaluations in _runs(rows, rule, candidates, config, when):
        result.extend(episodes_of(run, metric, evaluations))
    return sorted(result, key=lambda e: (e["run"], e["first_step"], e["metric"] or ""))

