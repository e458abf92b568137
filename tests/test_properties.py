"""Property tests: the polars engine agrees with the plain reference evaluator.

Random logs (several runs of different lengths in one frame, missing keys,
steps logged again later in the file, NaN/±inf, two or three metrics, one
metric alias resolved through a catalog) and random rules written as condition
TEXT, so that the parser, the checker and the engine are all exercised:

  * shorthand rules: every row of spec §3's table (`< <= > >= == !=`, range,
    outside, drop, rise, spike, flat, nonfinite) alone or combined with
    and/or/not, window 1..5, for 1..4 (field or `for N steps`), min_steps 0..6;
  * full expressions: comparisons of arithmetic (division that can hit zero
    included) over metrics and every function, combined with and/or/not.

Values and thresholds come from a coarse grid (multiples of 0.25 in [-4, 4])
so that window sums are exact: equality at a threshold is exercised, and a
difference is a difference of meaning, not of rounding. Each rule is also
checked to parse to the tree it was generated from (precedence, flattening).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import ruledsl
from reference_evaluator import reference_audit, reference_evaluations
from ruledsl import ast
from ruledsl.catalog import Catalog

GRID = tuple(k / 4 for k in range(-16, 17))  # -4, -3.75, …, 4 (0 included)
NONFINITE = (math.nan, math.inf, -math.inf)
KEYS = ("a", "rewards/chosen", "my-metric (x)")  # the last one needs backticks in a condition
ALIAS = "ratio"  # not a log key: resolves per run to rewards/chosen or a (spec §2)
CATALOG = Catalog({ALIAS: {"all": ("rewards/chosen", "a")}})
CANDIDATES = {ALIAS: (ALIAS, "rewards/chosen", "a")}
COMPARATORS = ("<", "<=", ">", ">=", "==", "!=")
PERCENTS = (10, 12.5, 25, 50, 75, 100, 150, 200)
FACTORS = (0.5, 1, 1.25, 1.5, 2, 3, 4)
TOLERANCES = (0, 0.25, 0.5, 1, 2)
SHORTHAND_KINDS = ("compare", "range", "outside", "drop", "rise", "spike", "flat", "nonfinite")
WINDOW_FUNCTIONS = ("mean", "min", "max", "std", "sum", "delta", "baseline")

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ================================================================ logs


@dataclass(frozen=True)
class Log:
    rows: tuple  # (run, step, {key: value}) in file order
    keys: tuple[str, ...]
    run_column: bool  # False: a one-run frame without a `run` column (run id "default")
    keep_empty_columns: bool  # wide form: keep a column that holds no value at all

    def numbers(self) -> st.SearchStrategy[float]:
        """Thresholds: grid numbers, half of the time one the log holds (so that they matter)."""
        seen = sorted({v for _, _, values in self.rows for v in values.values() if math.isfinite(v)})
        return st.one_of(st.sampled_from(GRID), st.sampled_from(seen)) if seen else st.sampled_from(GRID)

    def __repr__(self) -> str:
        lines = ",\n    ".join(repr(r) for r in self.rows)
        return (f"Log(keys={self.keys}, run_column={self.run_column}, "
                f"keep_empty_columns={self.keep_empty_columns}, rows=[\n    {lines}])")


def wide_frame(log: Log) -> pl.DataFrame:
    keys = [k for k in log.keys if log.keep_empty_columns or any(k in v for _, _, v in log.rows)]
    data = {"run": [r for r, _, _ in log.rows], "step": [s for _, s, _ in log.rows]}
    data.update({k: [v.get(k) for _, _, v in log.rows] for k in keys})
    schema = {"run": pl.String, "step": pl.Int64, **{k: pl.Float64 for k in keys}}
    frame = pl.DataFrame(data, schema=schema)
    return frame if log.run_column else frame.drop("run")


def long_frame(log: Log) -> pl.DataFrame:
    records = [(run, step, key, value) for run, step, values in log.rows for key, value in values.items()]
    frame = pl.DataFrame(records, schema={"run": pl.String, "step": pl.Int64, "key": pl.String,
                                          "value": pl.Float64}, orient="row")
    return frame if log.run_column else frame.drop("run")


FRAMES = {"wide": wide_frame, "long": long_frame}


@st.composite
def cell_values(draw, keys, palettes):
    """One row's {key: value}: mostly a value of the key's palette, sometimes absent or non-finite."""
    values = {}
    for key in keys:
        kind = draw(st.integers(0, 19))
        if kind < 15:
            values[key] = draw(st.sampled_from(palettes[key]))
        elif kind < 18:
            continue  # absent
        else:
            values[key] = draw(st.sampled_from(NONFINITE))
    return values


def interleave(draw, per_run):
    """Rows of several runs mixed in file order, each run's own order kept."""
    queues = [list(rows) for rows in per_run if rows]
    mixed = []
    while queues:
        queue = queues[draw(st.integers(0, len(queues) - 1))]
        mixed.append(queue.pop(0))
        queues = [q for q in queues if q]
    return mixed


@st.composite
def logs(draw):
    keys = KEYS[:draw(st.integers(2, 3))]
    n_runs = draw(st.integers(1, 3))
    run_column = n_runs > 1 or draw(st.booleans())
    names = list(draw(st.permutations(["r0", "r1", "r2"])))[:n_runs] if run_column else ["default"]
    per_run, palettes_of = [], {}
    for j, run in enumerate(names):
        # small palettes make repeats (flat, ==, thresholds hit exactly) common; 0 is favoured
        value = st.one_of(st.just(0.0), st.sampled_from(GRID))
        palettes = {k: draw(st.lists(value, min_size=1, max_size=4)) for k in keys}
        palettes_of[run] = palettes
        step = draw(st.integers(0, 2))
        rows = []
        for _ in range(draw(st.integers(1 if j == 0 else 0, 14))):
            rows.append((run, step, draw(cell_values(keys, palettes))))
            step += draw(st.integers(1, 3))
        per_run.append(rows)
    order = draw(st.sampled_from(["blocks", "interleaved", "shuffled"]))
    rows = [row for rows in per_run for row in rows]
    if order == "interleaved":
        rows = interleave(draw, per_run)
    elif order == "shuffled":
        rows = list(draw(st.permutations(rows)))
    for _ in range(draw(st.integers(0, 4))):  # a step logged again later in the file
        source = draw(st.integers(0, len(rows) - 1))
        run, step, _ = rows[source]
        again = (run, step, draw(cell_values(keys, palettes_of[run])))
        rows.insert(draw(st.integers(source + 1, len(rows))), again)
    return Log(tuple(rows), keys, run_column, draw(st.booleans()))


# ================================================================ condition text
#
# A generated condition is a tree of tuples, rendered to text; `shape()` reads
# the parsed AST back into the same tuples, so the parse can be checked.


def number_text(draw, value: float) -> str:
    """A grid number in one of the spellings the grammar accepts: 0.25, .25, 2.5e-01, 1."""
    size = abs(value)
    spellings = [repr(size), f"{size:e}"]
    if size.is_integer():
        spellings.append(str(int(size)))
    if 0 < size < 1:
        spellings.append(repr(size)[1:])
    return ("-" if value < 0 else "") + draw(st.sampled_from(spellings))


def metric_text(draw, name: str) -> str:
    if name == "my-metric (x)" or draw(st.integers(0, 4)) == 0:
        return f"`{name}`"
    return name


@st.composite
def shorthand_leaves(draw, kind, numbers):
    """(tree, text) of one shorthand term of the given kind, its numbers drawn from `numbers`."""
    if kind == "compare":
        op, c = draw(st.sampled_from(COMPARATORS)), draw(numbers)
        return ("compare", op, c), f"{op} {number_text(draw, c)}"
    if kind in ("range", "outside"):
        a, b = sorted([draw(numbers), draw(numbers)])
        return (kind, a, b), f"{kind}({number_text(draw, a)}, {number_text(draw, b)})"
    if kind in ("drop", "rise"):
        p = float(draw(st.sampled_from(PERCENTS)))
        return (kind, p), f"{kind}({number_text(draw, p)}{draw(st.sampled_from(['%', '']))})"
    if kind == "spike":
        k = float(draw(st.sampled_from(FACTORS)))
        return ("spike", k), f"spike({number_text(draw, k)}{draw(st.sampled_from(['x', '']))})"
    if kind == "flat":
        e = float(draw(st.sampled_from(TOLERANCES)))
        return ("flat", e), f"flat({number_text(draw, e)})"
    return ("nonfinite",), "nonfinite"


PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def wrap(draw, text: str, precedence: int, needed: int) -> str:
    """Parenthesize when the grammar needs it, and now and then when it does not."""
    if precedence < needed or draw(st.integers(0, 5)) == 0:
        return f"({text})"
    return text


@st.composite
def logic(draw, leaves, depth, first=None):
    """(tree, text, precedence) of an and/or/not combination of `leaves`; `first` fixes the first term."""
    form = draw(st.sampled_from(["leaf", "leaf", "and", "or", "not"])) if depth > 0 else "leaf"
    if form == "leaf":
        tree, text = draw(first if first is not None else leaves)
        return tree, text, 4
    if form == "not":
        tree, text, prec = draw(logic(leaves, depth - 1, first))
        return ("not", tree), "not " + wrap(draw, text, prec, 3), 3
    count = draw(st.integers(2, 3))
    parts = [draw(logic(leaves, depth - 1, first if j == 0 else None)) for j in range(count)]
    text = f" {form} ".join(wrap(draw, t, p, PRECEDENCE[form]) for _, t, p in parts)
    return (form, tuple(tree for tree, _, _ in parts)), text, PRECEDENCE[form]


# ---------------------------------------------------------------- full-expression values
# value precedence: + - : 1, * / : 2, unary minus : 3, atoms : 4


@st.composite
def values(draw, metrics, depth, numbers):
    """(tree, text, precedence) of an arithmetic value over `metrics`."""
    forms = ["metric", "metric", "metric", "number", "call"]
    if depth > 0:
        forms += ["binary", "binary", "binary", "negative", "abs"]
    form = draw(st.sampled_from(forms))
    if form == "metric":
        name = draw(st.sampled_from(metrics))
        return ("metric", name), metric_text(draw, name), 4
    if form == "number":
        c = draw(numbers)
        return ("num", c), number_text(draw, c), 3 if c < 0 else 4
    if form == "call":
        function, name = draw(st.sampled_from(WINDOW_FUNCTIONS)), draw(st.sampled_from(metrics))
        w = draw(st.integers(1, 4))
        return ("call", function, ("metric", name), ("num", float(w))), \
            f"{function}({metric_text(draw, name)}, {w})", 4
    if form == "abs":
        tree, text, _ = draw(values(metrics, depth - 1, numbers))
        return ("call", "abs", tree), f"abs({text})", 4
    if form == "negative":
        tree, text, prec = draw(values(metrics, depth - 1, numbers))
        text = wrap(draw, text, prec, 3)
        return ("neg", tree), "-" + (" " + text if text.startswith("-") else text), 3
    op = draw(st.sampled_from(["+", "-", "*", "/", "/"]))
    prec = 1 if op in "+-" else 2
    (left, left_text, left_prec) = draw(values(metrics, depth - 1, numbers))
    (right, right_text, right_prec) = draw(values(metrics, depth - 1, numbers))
    text = f"{wrap(draw, left_text, left_prec, prec)} {op} {wrap(draw, right_text, right_prec, prec + 1)}"
    return (op, left, right), text, prec


@st.composite
def comparisons(draw, metrics, numbers):
    left, left_text, _ = draw(values(metrics, 2, numbers))
    op = draw(st.sampled_from(COMPARATORS))
    if draw(st.booleans()):
        c = draw(numbers)
        right, right_text = ("num", c), number_text(draw, c)
    else:
        right, right_text, _ = draw(values(metrics, 1, numbers))
    return ("cmp", op, left, right), f"{left_text} {op} {right_text}"


# ---------------------------------------------------------------- reading the parse back


def canonical(tree):
    """Flatten nested and/and, or/or; read -(number) as a negative number."""
    if not isinstance(tree, tuple) or not tree:
        return tree
    head = tree[0]
    if head in ("and", "or"):
        flat = []
        for child in tree[1]:
            child = canonical(child)
            flat.extend(child[1] if child[0] == head else (child,))
        return (head, tuple(flat))
    if head == "neg":
        inner = canonical(tree[1])
        return ("num", -inner[1]) if inner[0] == "num" else ("neg", inner)
    if head == "not":
        return ("not", canonical(tree[1]))
    return tuple(canonical(part) if isinstance(part, tuple) else part for part in tree)


def shape(node):
    """The parsed AST as the generator's tuples."""
    if isinstance(node, (ast.And, ast.Or)):
        return ("and" if isinstance(node, ast.And) else "or", tuple(shape(o) for o in node.operands))
    if isinstance(node, ast.Not):
        return ("not", shape(node.operand))
    if isinstance(node, ast.ShorthandCompare):
        return ("compare", node.op, node.threshold.value)
    if isinstance(node, ast.Between):
        return ("range" if node.inside else "outside", node.low.value, node.high.value)
    if isinstance(node, ast.Change):
        return (node.direction, node.percent.value)
    if isinstance(node, ast.Spike):
        return ("spike", node.factor.value)
    if isinstance(node, ast.Flat):
        return ("flat", node.tolerance.value)
    if isinstance(node, ast.NonFinite):
        return ("nonfinite",)
    if isinstance(node, ast.Comparison):
        return ("cmp", node.op, shape(node.left), shape(node.right))
    if isinstance(node, ast.Number):
        return ("num", node.value)
    if isinstance(node, ast.MetricRef):
        return ("metric", node.name)
    if isinstance(node, ast.Negative):
        return ("neg", shape(node.operand))
    if isinstance(node, ast.BinaryOp):
        return (node.op, shape(node.left), shape(node.right))
    if isinstance(node, ast.Call):
        return ("call", node.name, *(shape(a) for a in node.args))
    raise TypeError(node)


def contains_metric(tree) -> bool:
    if not isinstance(tree, tuple):
        return False
    return tree[:1] == ("metric",) or any(contains_metric(part) for part in tree)


# ================================================================ rules


@dataclass(frozen=True)
class Case:
    log: Log
    mapping: dict  # the rule file's fields
    tree: tuple  # what the condition was generated from

    def __repr__(self) -> str:
        return f"Case(\n  rule={self.mapping!r},\n  log={self.log!r})"

    @property
    def rule(self) -> ruledsl.Rule:
        return ruledsl.Rule.from_dict(self.mapping)


def rule_mapping(draw, condition: str, metric: str | None) -> dict:
    mapping = {"name": "prop", "trainers": ["all"], "severity": "high", "message": "{baseline}",
               "condition": condition, "window": draw(st.sampled_from([1, 1, 2, 3, 4, 5])),
               "min_steps": draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6]))}
    sustain = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    written = draw(st.sampled_from(["field", "field", "text", "default"]))
    if written == "text":
        mapping["condition"] += f" for {sustain} {'step' if sustain == 1 else 'steps'}"
    elif written == "field" or sustain != 1:
        mapping["for"] = sustain
    if metric is not None:
        mapping["metric"] = metric
    return mapping


def rule_metrics(log: Log) -> st.SearchStrategy[str]:
    return st.sampled_from(log.keys + log.keys + (ALIAS,))


@st.composite
def shorthand_cases(draw, kind):
    log = draw(logs())
    if kind == "nonfinite":
        tree, text = ("nonfinite",), draw(st.sampled_from(["nonfinite", "(nonfinite)"]))
    else:
        numbers = log.numbers()
        other = st.sampled_from([k for k in SHORTHAND_KINDS if k != "nonfinite"]).flatmap(
            lambda k: shorthand_leaves(k, numbers))
        tree, text, _ = draw(logic(other, 2, first=shorthand_leaves(kind, numbers)))
    return Case(log, rule_mapping(draw, text, draw(rule_metrics(log))), tree)


@st.composite
def expression_cases(draw):
    log = draw(logs())
    metrics = list(draw(st.lists(rule_metrics(log), min_size=1, max_size=3, unique=True)))
    tree, text, _ = draw(logic(comparisons(metrics, log.numbers()), 2).filter(lambda found: contains_metric(found[0])))
    return Case(log, rule_mapping(draw, text, None), tree)


# ================================================================ comparing


def same_value(got, expected) -> bool:
    if got is None or expected is None:
        return got is None and expected is None
    if math.isnan(expected) or math.isnan(got):
        return math.isnan(expected) and math.isnan(got)
    if math.isinf(expected) or math.isinf(got):
        return got == expected
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=0.0) or got == expected


def baseline_of(message: str):
    return None if message == "n/a" else float(message)


def check_parse(case: Case) -> ruledsl.Rule:
    rule = case.rule
    assert canonical(shape(rule.condition.body)) == canonical(case.tree), \
        f"{case.mapping['condition']!r} parsed to another tree"
    return rule


def check_audit(case: Case, form: str) -> None:
    rule = check_parse(case)
    note(f"condition: {case.mapping['condition']!r}")
    expected = reference_audit(list(case.log.rows), rule, CANDIDATES)
    records = ruledsl.audit(FRAMES[form](case.log), [rule], catalog=CATALOG).to_dicts()
    got = [(r["run"], r["first_step"], r["last_step"], r["n_evals"]) for r in records]
    want = [(e["run"], e["first_step"], e["last_step"], e["n_evals"]) for e in expected]
    note(f"engine episodes:    {[(*g, r['value']) for g, r in zip(got, records)]}")
    note(f"reference episodes: {[(*w, e['value']) for w, e in zip(want, expected)]}")
    assert got == want
    for record, episode in zip(records, expected):
        assert same_value(record["value"], episode["value"]), (record, episode)
        assert same_value(baseline_of(record["message"]), episode["baseline"]), (record, episode)


def check_evaluations(case: Case, form: str) -> None:
    rule = check_parse(case)
    expected = reference_evaluations(list(case.log.rows), rule, CANDIDATES)
    rows = ruledsl.evaluate(FRAMES[form](case.log), [rule], catalog=CATALOG).sort("run", "step").to_dicts()
    got = [(r["run"], r["step"], r["fired"]) for r in rows]
    want = [(e["run"], e["step"], e["fired"]) for e in expected]
    note(f"engine evaluations:    {got}")
    note(f"reference evaluations: {want}")
    assert got == want
    for row, evaluation in zip(rows, expected):
        assert same_value(row["value"], evaluation["value"]), (row, evaluation)


# ================================================================ the properties


@pytest.mark.parametrize("form", ["wide", "long"])
@pytest.mark.parametrize("kind", SHORTHAND_KINDS)
@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_shorthand_rules_match_the_reference(kind, form, data):
    """Every row of spec §3's table, alone or as the first term of an and/or/not combination."""
    check_audit(data.draw(shorthand_cases(kind), label="case"), form)


@pytest.mark.parametrize("form", ["wide", "long"])
@settings(max_examples=150, **SETTINGS)
@given(case=expression_cases())
def test_full_expressions_match_the_reference(case, form):
    check_audit(case, form)


@settings(max_examples=60, **SETTINGS)
@given(case=st.one_of(st.sampled_from(SHORTHAND_KINDS).flatmap(shorthand_cases), expression_cases()),
       form=st.sampled_from(["wide", "long"]))
def test_every_evaluation_matches_the_reference(case, form):
    """ruledsl.evaluate: the same evaluations (run, step), the same firing, the same values."""
    check_evaluations(case, form)
