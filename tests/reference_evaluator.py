"""A deliberately plain evaluator of rules, written straight from the spec (test code).

It exists to be read next to /work/shared/spec/rule-language.md and to be
compared with the real engines, so it favours obviousness over speed: plain
loops and lists, one small function per rule of the spec, no polars.

    reference_audit(rows, rule, candidates=None)        -> episodes (spec §4)
    reference_evaluations(rows, rule, candidates=None)  -> every evaluation (spec §3)

`rows` is a list of `(run, step, {key: value})` in file order; a key missing
from the dict is absent (None counts as absent too). `rule` is a
`ruledsl.Rule`; only its AST (`rule.condition.body`), `metric`, `window`,
`min_steps` and `sustain` are read. `candidates` maps a metric name to the log
keys to try for it, in order (spec §2); by default a metric is only its own name.

Arithmetic is plain Python floats, written as the spec writes it: a window mean
is sum(window) / W added left to right, drop is (B - v) / |B| >= P / 100, and so
on. Each operation is a correctly rounded IEEE operation: on values whose window
sums are exact (the property tests' grids) a mean is the correctly rounded exact
mean, but a verdict exactly at a threshold reached through a rounded mean (W = 3
or 5) can in principle differ from exact arithmetic; test_properties.py pins the
tie cases it relies on with hand-computed answers. The spec does not say whether
its arithmetic is exact or double precision.
"""

from __future__ import annotations

import math

from ruledsl.lang import ast

NAN = float("nan")


# ================================================================ spec §2: series


def merge_rows(rows):
    """run -> [(step, {key: value}), ...] ascending by step.

    Rows with the same (run, step) merge key by key; the later row wins a key.
    """
    merged = {}
    for run, step, values in rows:
        at_step = merged.setdefault(run, {}).setdefault(step, {})
        for key, value in values.items():
            if value is not None:
                at_step[key] = float(value)
    return {run: sorted(steps.items()) for run, steps in merged.items()}


def resolve_key(run_rows, name, candidates):
    """The log key metric `name` stands for in this run, or None if no candidate appears.

    Of the candidates, the one that appears first (lowest step); a tie goes to
    the earlier candidate.
    """
    keys = candidates.get(name, (name,)) if candidates else (name,)
    best = None  # (first step, candidate position, key)
    for position, key in enumerate(keys):
        steps = [step for step, values in run_rows if key in values]
        if steps:
            option = (min(steps), position, key)
            if best is None or option < best:
                best = option
    return None if best is None else best[2]


def raw_series(run_rows, key):
    """[(step, value)] at every row holding the key, non-finite values included."""
    return [(step, values[key]) for step, values in run_rows if key in values]


def finite_series(run_rows, key):
    """[(step, value)] of the finite values only: the series x_0 … x_{n-1} of spec §2."""
    return [(step, value) for step, value in raw_series(run_rows, key) if math.isfinite(value)]


# ================================================================ small numeric helpers


def left_to_right_sum(values):
    """x_0 + x_1 + … in order; Python 3.12's sum() compensates rounding, the engines do not."""
    total = 0.0
    for value in values:
        total += value
    return total


def mean(values):
    return left_to_right_sum(values) / len(values)


def population_std(values):
    mu = mean(values)
    return math.sqrt(left_to_right_sum((x - mu) * (x - mu) for x in values) / len(values))


def compare(op, left, right):
    """A comparison; one involving NaN is false (spec §3)."""
    if math.isnan(left) or math.isnan(right):
        return False
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    raise ValueError(f"unknown comparison {op!r}")


# ================================================================ spec §3: shorthand terms
#
# Each term, at series index i of x (finite values), returns None where it is
# not defined, else (holds, value, baseline) with value and baseline as spec §4.


def smoothed(xs, i, w):
    """v_i = mean(x_{i-W+1} … x_i)."""
    return left_to_right_sum(xs[i - w + 1:i + 1]) / w


def term_compare(node, xs, i, w):
    if i < w - 1:
        return None
    v = smoothed(xs, i, w)
    return compare(node.op, v, node.threshold.value), v, None


def term_between(node, xs, i, w):
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
    if i < w:
        return None
    m = left_to_right_sum(xs[i - w:i]) / w
    x = xs[i]
    k = node.factor.value
    holds = m > 0 and x >= k * m
    return holds, x, m


def term_flat(node, xs, i, w):
    if i < w - 1:
        return None
    window = xs[i - w + 1:i + 1]
    spread = max(window) - min(window)
    return spread <= node.tolerance.value, spread, None


def term_nonfinite(node, xs, i, w):
    x = xs[i]  # here xs is the raw series, non-finite values included
    return not math.isfinite(x), x, None


def term_logic(node, xs, i, w):
    """and / or / not: defined where all terms are; value and baseline of the first term."""
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
    return SHORTHAND_TERMS[type(node)](node, xs, i, w)


def uses_nonfinite(body):
    return any(isinstance(leaf, ast.NonFinite) for leaf in ast.leaves(body))


def shorthand_evaluations_of_run(run_rows, rule, candidates):
    """[(step, holds, value, baseline, values_seen)] at each evaluation of a shorthand rule.

    values_seen is the index i that min_steps looks at: the position in the
    finite series, or in the raw rows with the key for `nonfinite`.
    """
    key = resolve_key(run_rows, rule.metric, candidates)
    if key is None:
        return []
    body = rule.condition.body
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
            found.append((step, holds, value, baseline, i))
    return found


# ================================================================ spec §3: full expressions


class DivisionByZero(Exception):
    """Raised while computing a value; the comparison holding it is false."""


def function_first_index(call):
    """The first series index at which a window function is defined."""
    if call.name == "delta":
        return call.window
    return call.window - 1


def window_function(call, xs, i):
    """mean/min/max/std/sum/delta/baseline of a metric's own series at its index i."""
    w = call.window
    last = xs[i - w + 1:i + 1]
    if call.name == "mean":
        return left_to_right_sum(last) / w
    if call.name == "min":
        return min(last)
    if call.name == "max":
        return max(last)
    if call.name == "std":
        return population_std(last)
    if call.name == "sum":
        return left_to_right_sum(last)
    if call.name == "delta":
        return xs[i] - xs[i - w]
    if call.name == "baseline":
        return left_to_right_sum(xs[0:w]) / w
    raise ValueError(f"unknown function {call.name!r}")


def value_of(node, at):
    """The number a value node stands for at one row.

    `at` maps a metric name to (its series xs, its index i at this row).
    """
    if isinstance(node, ast.Number):
        return node.value
    if isinstance(node, ast.MetricRef):
        xs, i = at[node.name]
        return xs[i]
    if isinstance(node, ast.Negative):
        return -value_of(node.operand, at)
    if isinstance(node, ast.BinaryOp):
        left = value_of(node.left, at)
        right = value_of(node.right, at)
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
            return abs(value_of(node.args[0], at))
        xs, i = at[node.metric.name]
        return window_function(node, xs, i)
    raise TypeError(f"not a value: {node!r}")


def predicate_holds(node, at):
    if isinstance(node, ast.And):
        return all([predicate_holds(o, at) for o in node.operands])
    if isinstance(node, ast.Or):
        return any([predicate_holds(o, at) for o in node.operands])
    if isinstance(node, ast.Not):
        return not predicate_holds(node.operand, at)
    try:
        return compare(node.op, value_of(node.left, at), value_of(node.right, at))
    except DivisionByZero:
        return False


def reported_value(body, at):
    """Spec §4: the left operand of the first comparison in source order (NaN if it divides by 0)."""
    first = next(n for n in ast.walk(body) if isinstance(n, ast.Comparison))
    try:
        return value_of(first.left, at)
    except DivisionByZero:
        return NAN


def functions_defined(body, at):
    for node in ast.walk(body):
        if isinstance(node, ast.Call) and node.name != "abs":
            _, i = at[node.metric.name]
            if i < function_first_index(node):
                return False
    return True


def expression_evaluations_of_run(run_rows, rule, candidates):
    """[(step, holds, value, None, evaluation index)] of a full expression in one run."""
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
        at = {name: (xs, index[step]) for name, (xs, index) in series.items()}
        if not functions_defined(body, at):
            continue
        found.append((step, predicate_holds(body, at), reported_value(body, at), None, len(found)))
    return found


# ================================================================ spec §3: for, then min_steps


def sustain_and_warm_up(evaluations, sustain, min_steps):
    """[(step, fired, value, baseline)]: `for N` over consecutive evaluations, then min_steps."""
    fired_list = []
    streak = 0
    for step, holds, value, baseline, seen in evaluations:
        streak = streak + 1 if holds else 0
        fired = streak >= sustain
        if seen < min_steps - 1:
            fired = False
        fired_list.append((step, fired, value, baseline))
    return fired_list


def evaluations_of_run(run_rows, rule, candidates):
    if rule.condition.is_shorthand:
        found = shorthand_evaluations_of_run(run_rows, rule, candidates)
    else:
        found = expression_evaluations_of_run(run_rows, rule, candidates)
    return sustain_and_warm_up(found, rule.sustain, rule.min_steps)


# ================================================================ spec §4: episodes


def episodes_of_run(run, evaluations):
    """Maximal runs of consecutive firing evaluations."""
    found = []
    current = None
    for step, fired, value, baseline in evaluations:
        if not fired:
            current = None
            continue
        if current is None:
            current = {"run": run, "first_step": step, "last_step": step, "n_evals": 0,
                       "value": value, "baseline": baseline}
            found.append(current)
        current["last_step"] = step
        current["n_evals"] += 1
    return found


# ================================================================ public API


def reference_evaluations(rows, rule, candidates=None):
    """Every evaluation of `rule`: dicts with run, step, fired, value; sorted by (run, step)."""
    result = []
    for run, run_rows in sorted(merge_rows(rows).items()):
        for step, fired, value, _ in evaluations_of_run(run_rows, rule, candidates):
            result.append({"run": run, "step": step, "fired": fired, "value": value})
    return result


def reference_audit(rows, rule, candidates=None):
    """One dict per episode (run, first_step, last_step, n_evals, value, baseline), by (run, first_step)."""
    result = []
    for run, run_rows in merge_rows(rows).items():
        result.extend(episodes_of_run(run, evaluations_of_run(run_rows, rule, candidates)))
    return sorted(result, key=lambda e: (e["run"], e["first_step"]))
