"""Deep and long conditions (issue: hostile input): every condition is a RuleSyntaxError with its
place (E106 too deep, E107 too long), or it works in every entry point and both engines agree.

The depth bounded (E106, ruledsl/lang/parser.py) is that of the syntax tree the rest of the code
walks recursively: at most MAX_DEPTH = 64 levels, each operator of a chain `a + b + c` counting as
one (it is read (a + b) + c), parentheses none. `and`/`or` chains are flat and cost nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

import ruledsl
from ruledsl.authoring.explain import compiled_plan, meaning
from ruledsl.engines.live.monitor import Monitor
from ruledsl.lang import ast
from ruledsl.lang.codes import describe
from ruledsl.lang.parser import MAX_DEPTH, MAX_LENGTH, parse_inline_tree
from ruledsl.lang.read import parse_condition, read_inline_alert
from ruledsl.lint import lint
from ruledsl.model.loader import read_rule_file


def column_of(text: str, token: str, occurrence: int = 1) -> int:
    """The 1-based column of the `occurrence`-th `token` in `text` (one line)."""
    at = -1
    for _ in range(occurrence):
        at = text.index(token, at + 1)
    return at + 1


def operator_column(text: str, occurrence: int) -> int:
    """The 1-based column of the `occurrence`-th binary operator (written with spaces around it)."""
    places = [j for j in range(1, len(text) - 1) if text[j] in "+-*/" and text[j - 1] == text[j + 1] == " "]
    return places[occurrence - 1] + 1


def chain(terms: list[str], operators: str = "+") -> str:
    """t0 op t1 op t2 …, the operators taken in turn from `operators`."""
    text = terms[0]
    for j, term in enumerate(terms[1:]):
        text += f" {operators[j % len(operators)]} {term}"
    return text


def alternate(n: int, *items: str) -> list[str]:
    return [items[j % len(items)] for j in range(n)]


def nested(n: int, opening: str, inner: str, closing: str = "") -> str:
    return opening * n + inner + closing * n


def up_to_the_limit(item: str, joiner: str) -> str:
    """item joiner item … as long as it fits in MAX_LENGTH characters."""
    count = (MAX_LENGTH + len(joiner)) // (len(item) + len(joiner))
    return joiner.join([item] * count)


def error_of(parse: Callable[[str], Any], text: str) -> ruledsl.RuleSyntaxError:
    with pytest.raises(ruledsl.RuleSyntaxError) as caught:
        parse(text)
    return caught.value


# ================================================================= the cap, exactly


@dataclass(frozen=True)
class Shape:
    """A condition that grows with n; `cap` is the largest n accepted, `place(text)` the column
    E106 points at for n = cap + 1 (where the text, read left to right, becomes too deep)."""

    name: str
    make: Callable[[int], str]
    cap: int
    place: Callable[[str], int]
    metric: str | None = None  # a shorthand condition's metric
    window: int = 1


SHAPES = [
    # compare(1) > chain of 62 `+` (2 … 63) > operands (64): a sum of 63 terms; the 63rd `+` pushes the first past 64
    Shape("sum", lambda n: chain(alternate(n, "a", "b")) + " > 1", 63,
          lambda text: column_of(text, "+", 63)),
    Shape("products and divisions", lambda n: chain(alternate(n, "a", "b"), "*/") + " > 0.5", 63,
          lambda text: operator_column(text, 63)),
    # the comparison under 62 `not`s is at level 63, its operands at 64
    Shape("not", lambda n: "not " * n + "a > b", 62, lambda text: column_of(text, "a")),
    Shape("unary minus", lambda n: "- " * n + "a > b", 62, lambda text: column_of(text, "a")),
    Shape("calls in calls", lambda n: nested(n, "abs(", "a - b", ")") + " > 1", 61,
          lambda text: column_of(text, " - ") + 1),  # the `-` of the innermost a - b: its `a` lies at 65
    Shape("divisors holding divisions", lambda n: nested(n, "a / (", "b", ")") + " > 1", 62,
          lambda text: column_of(text, "/", 63)),
    Shape("window functions", lambda n: chain(alternate(n, "mean(a, 2)", "max(b, 3)", "delta(a, 1)")) + " > 1",
          62, lambda text: column_of(text, "+", 62)),  # a call is two levels: itself and its arguments
    Shape("shorthand under not", lambda n: "not " * n + "< 1", 63, lambda text: column_of(text, "<"),
          metric="a", window=2),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_a_condition_exactly_at_the_cap_parses_and_one_level_more_is_e106_at_its_place(shape):
    at_cap = parse_condition(shape.make(shape.cap))
    assert ast.depth(at_cap.body) == MAX_DEPTH
    beyond = shape.make(shape.cap + 1)
    error = error_of(parse_condition, beyond)
    assert (error.diagnostic.code, error.line, error.column) == ("E106", 1, shape.place(beyond))
    assert f"more than {MAX_DEPTH} levels" in error.diagnostic.message and error.diagnostic.hint


@pytest.mark.parametrize("text, column, hint", [
    # the issue's condition: 1,200 terms, within the length limit; refused at the 63rd `+`
    ("+".join(["a"] * 1200) + " > 1", 126, "sum()/mean() of a window"),
    ("*".join(["a"] * 1200) + " > 1", 126, "sum()/mean() of a window"),
    ("not " * 1000 + "a > 1", 257, "repeated 'not'"),  # the 65th `not` lies at level 65
    ("-" * 2000 + "a < 1", 64, "repeated 'not' or '-'"),  # the 64th `-`: the comparison is level 1
    (nested(800, "abs(", "a", ")") + " > 1", 253, "calls inside calls"),  # the 64th `abs`
    (nested(600, "a / (", "b", ")") + " > 1", column_of(nested(600, "a / (", "b", ")"), "/", 63),
     "sum()/mean() of a window"),
    ("not " * 1000 + "< 1", 257, "repeated 'not'"),
    # under `and`, the comparison is level 2 and its chain starts at 3: the 62nd `+` is one too many
    ("a > 1 and " + "+".join(["a"] * 1000) + " > 1", 10 + 124, "sum()/mean() of a window"),
])
def test_far_too_deep_is_e106_where_the_cap_is_crossed(text, column, hint):
    assert len(text) <= MAX_LENGTH
    error = error_of(parse_condition, text)
    assert (error.diagnostic.code, error.column) == ("E106", column)
    assert hint in (error.diagnostic.hint or "")
    assert len(str(error)) < 800  # the caret line shows a window of the text, not 4,000 characters


@pytest.mark.parametrize("text", [
    "(" * 2000 + "a > 1" + ")" * 2000,  # parentheses only group: no level
    "(" * 1000 + "a" + ")" * 1000 + " + " + "(" * 1000 + "b" + ")" * 1000 + " > 1",
])
def test_deep_parentheses_alone_cost_nothing(text):
    assert len(text) <= MAX_LENGTH
    assert ast.depth(parse_condition(text).body) <= 3


def test_too_long_is_e107_before_depth_is_looked_at():
    error = error_of(parse_condition, "not " * 1100 + "a > 1")
    assert (error.diagnostic.code, error.column) == ("E107", MAX_LENGTH + 1)


@pytest.mark.parametrize("text, depth", [
    ("a > 1", 2),
    ("loss > 1 or loss > 2 and not kl < 3", 5),
    ("a + b * c - d / e > 1", 5),
    ("(a + b) * (c - d) / e > 1", 5),
    ("a - (b - (c - d)) > 1", 5),
    ("abs(mean(a, 3) - baseline(a, 5)) >= 0.5 * std(b, 4, 1)", 5),
    ("-a * -b > --c", 4),
    ("not (a > 1 or not b < 2) and config.beta == 'x'", 6),
    ("< 1 or not (drop(50%) and range(0, 1))", 4),
])
def test_the_parser_measures_the_depth_of_the_tree_it_builds(text, depth):
    """Padded with `not`s up to exactly MAX_DEPTH levels the condition parses, one more is E106:
    the parser's measure (on its parse tree) is the depth of the ast built (ast.depth)."""
    assert ast.depth(parse_condition(text).body) == depth
    padding = MAX_DEPTH - depth
    assert ast.depth(parse_condition("not " * padding + f"({text})").body) == MAX_DEPTH
    assert error_of(parse_condition, "not " * (padding + 1) + f"({text})").diagnostic.code == "E106"


def test_a_negated_shorthand_after_its_metric_counts_its_not():
    """`loss not range(…)` (inline alerts): AppliedShorthand > Not > … > Between."""
    def alert(nots: int) -> str:
        return "dpo: loss " + "not " * nots + "range(0.6, 0.8) -> high: m"
    assert ast.depth(parse_inline_tree(alert(62)).condition) == MAX_DEPTH
    error = error_of(parse_inline_tree, alert(63))
    assert (error.diagnostic.code, error.column) == ("E106", column_of(alert(63), "range"))


# ================================================================= every entry point


@pytest.mark.parametrize("text, column", [
    ("grpo: " + "+".join(["a"] * 1200) + " > 1 -> high: m", 6 + 126),
    ("grpo: " + "not " * 900 + "loss > 1 -> high: m", 6 + 257),
])
def test_an_inline_alert_too_deep_is_e106_placed_in_the_alert(text, column):
    for parse in (read_inline_alert, ruledsl.parse_inline_alert):
        error = error_of(parse, text)
        assert (error.diagnostic.code, error.column) == ("E106", column)


def test_a_rule_file_condition_too_deep_is_e106_placed_in_the_file(tmp_path):
    condition = chain(["a"] * 64) + " > 1"  # the 63rd `+` (column 251 of the condition) is one too many
    split = condition.index(" ", 100)  # a folded scalar over two lines: the place must follow the text
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ntrainers: [all]\ncondition: >-\n"
                    f"  {condition[:split]}\n  {condition[split + 1:]}\nseverity: high\nmessage: m\n")
    problems = read_rule_file(path).problems
    assert [(p.diagnostic.code, p.diagnostic.field) for p in problems] == [("E106", "condition")]
    span = problems[0].diagnostic.span
    assert (span.line, span.column) == (5, 2 + 251 - (split + 1))
    assert path.read_text()[span.start] == "+"
    report = lint([path])
    assert [(p.diagnostic.code, p.diagnostic.span.line) for p in report.errors] == [("E106", 5)]


def test_a_when_too_deep_is_e106_of_the_when_field():
    mapping = {"name": "r", "trainers": ["all"], "condition": "loss > 1", "severity": "high", "message": "m",
               "when": chain(["config.beta"] * 64) + " > 1"}
    with pytest.raises(ruledsl.RuleValidationError) as caught:
        ruledsl.Rule.from_dict(mapping)
    [diagnostic] = caught.value.diagnostics
    assert (diagnostic.code, diagnostic.field) == ("E106", "when")


# ================================================================= at the cap, end to end

STEPS = list(range(10))
A = [2.0, 0.5, -1.0, 0.0, 3.0, -0.0, 1.5, 0.02, -2.5, 4.0]
B = [1.0, 0.0, 2.0, -0.0, 0.5, 1.0, None, 3.0, -1.0, 0.25]  # zero divisors, both signs; b missing at step 6
ROWS = [(step, {"a": a, "b": b} if b is not None else {"a": a}) for step, a, b in zip(STEPS, A, B)]
FRAME = pl.DataFrame({"step": STEPS, "a": A, "b": B}, schema={"step": pl.Int64, "a": pl.Float64, "b": pl.Float64})

WORKING = [
    *[(f"{s.name} at the cap", s.make(s.cap), s.metric, s.window) for s in SHAPES],
    ("or chain to the length limit", up_to_the_limit("a > 3.5", " or "), None, 1),
    ("and chain to the length limit", up_to_the_limit("a >= b", " and "), None, 1),
    ("shorthand or chain to the length limit", up_to_the_limit("< -2", " or "), "a", 1),
    ("deep parentheses", nested(2000, "(", "a > b", ")"), None, 1),
]


def mapping_of(condition: str, metric: str | None, window: int) -> dict[str, Any]:
    mapping: dict[str, Any] = {"name": "deep", "trainers": ["all"], "condition": condition,
                               "severity": "high", "message": "{value} at {step}"}
    if metric is not None:
        mapping.update(metric=metric, window=window)
    return mapping


def both_engines(rule: Any) -> tuple[list[dict], list[dict]]:
    monitor = Monitor([rule])
    monitor.replay(ROWS)
    assert not monitor.faults
    return monitor.episodes(), ruledsl.audit(FRAME, [rule]).to_dicts()


def every_entry_point(condition: str, metric: str | None, window: int) -> str:
    """Rule, explain, both engines (agreeing to the bit), the inline form; the episodes, as text."""
    mapping = mapping_of(condition, metric, window)
    rule = ruledsl.Rule.from_dict(mapping)
    assert ruledsl.Rule.from_dict(mapping) == rule and repr(rule) and hash(rule.condition)
    assert rule.condition.text == condition
    assert meaning(rule).startswith("Fires when") and compiled_plan(rule)
    live, batch = both_engines(mapping)
    assert repr(live) == repr(batch) and batch  # every shape fires at some step
    inline = f"all: {condition} -> high: {{value}} at {{step}}"
    if metric is None and len(inline) <= MAX_LENGTH:  # a full expression is an inline alert as written
        assert read_inline_alert(inline).condition.text == condition
        inline_live, inline_batch = both_engines(inline)
        name = ruledsl.parse_inline_alert(inline).name
        assert repr(inline_live) == repr(inline_batch) == repr([{**r, "rule": name} for r in batch])
    return repr(batch)


def stack_depth() -> int:
    """The number of Python frames on the stack, this one's included."""
    depth, frame = 1, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def call_nested(frames: int, function: Callable[[], Any]) -> Any:
    """`function()` called `frames` Python frames below here, as from deep in a training loop."""
    if frames <= 0:
        return function()
    return call_nested(frames - 1, function)


def deep_down(function: Callable[[], Any]) -> Any:
    """`function()` 200 frames below here, with the recursion limit only 400 frames above that:
    a condition at the cap needs about 270 at most (a rule's repr and ==, 3 to 4 frames a level)."""
    def run() -> Any:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(stack_depth() + 400)
        try:
            return function()
        finally:
            sys.setrecursionlimit(limit)
    return call_nested(200, run)


@pytest.mark.parametrize("name, condition, metric, window", WORKING, ids=[w[0] for w in WORKING])
def test_at_the_cap_every_entry_point_works_and_the_engines_agree(name, condition, metric, window):
    assert len(condition) <= MAX_LENGTH
    expected = every_entry_point(condition, metric, window)
    assert deep_down(lambda: every_entry_point(condition, metric, window)) == expected


@pytest.mark.parametrize("name, condition, metric, window", WORKING, ids=[w[0] for w in WORKING])
def test_at_the_cap_lint_passes_a_rule_file(tmp_path, name, condition, metric, window):
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(mapping_of(condition, metric, window), sort_keys=False))
    assert read_rule_file(path).rule is not None
    assert not lint([path]).errors


def test_at_the_cap_a_rule_bound_to_the_runs_configuration_agrees():
    """`config.KEY` is replaced by its value (lang/configuration.py walks the tree) before the engines run."""
    mapping = mapping_of(chain(alternate(63, "a", "config.beta")) + " > 1", None, 1)
    mapping["when"] = "not " * 62 + "config.beta > 0"
    assert ast.depth(ruledsl.Rule.from_dict(mapping).when.body) == MAX_DEPTH

    def episodes() -> tuple[str, str]:
        monitor = Monitor([mapping], config={"beta": 0.5})
        monitor.replay(ROWS)
        assert not monitor.faults
        return repr(monitor.episodes()), repr(ruledsl.audit(FRAME, [mapping], config={"beta": 0.5}).to_dicts())
    live, batch = episodes()
    assert live == batch and "first_step" in batch and deep_down(episodes) == (live, batch)


def test_a_division_by_a_zero_of_either_sign_is_nan_in_both_engines():
    """The batch engine divides by the divisor with its zeros replaced by NaN (a divisor appears
    once in the plan): x / 0.0 and x / -0.0 make the comparison false, in both engines."""
    live, batch = both_engines(mapping_of("a / b < 1e308 or a / b >= 1e308", None, 1))
    fired = [(r["first_step"], r["last_step"]) for r in batch]
    # not at 1 and 3 (b = 0.0, -0.0); step 6 (no b) is no evaluation, so 5 and 7 are consecutive ones
    assert repr(live) == repr(batch) and fired == [(0, 0), (2, 2), (4, 9)]


@pytest.mark.trl
def test_the_callback_runs_a_condition_at_the_cap(tmp_path):
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    from ruledsl.integrations.callback import DiagnosticsCallback

    condition = SHAPES[0].make(SHAPES[0].cap)
    args = type("GRPOConfig", (), {"output_dir": str(tmp_path), "report_to": [], "run_name": None})()
    callback = DiagnosticsCallback(custom_alerts={"deep": f"all: {condition} -> high: {{value}}"},
                                   include_builtin=False, console=False)
    state = SimpleNamespace(global_step=0, is_world_process_zero=True)
    control = SimpleNamespace(should_training_stop=False)
    call_nested(200, lambda: callback.on_train_begin(args, state, control))
    for step, values in ROWS:
        state.global_step = step
        call_nested(200, lambda logs=dict(values): callback.on_log(args, state, control, logs=logs))
    callback.on_train_end(args, state, control)
    _, batch = both_engines(mapping_of(condition, None, 1))
    assert [(r["first_step"], r["value"]) for r in callback.started] == [(r["first_step"], r["value"]) for r in batch]


def test_the_examples_of_the_issue_are_all_clean():
    """No traceback whatever the shape: each is a RuleSyntaxError or parses."""
    for text in [*(s.make(n) for s in SHAPES for n in (1, s.cap, s.cap + 1, 500)),
                 *(w[1] for w in WORKING)]:
        try:
            parse_condition(text[:MAX_LENGTH + 1])
        except ruledsl.RuleSyntaxError as error:
            assert error.diagnostic.code in {"E106", "E107", "E101", "E108", "E110"}


def test_the_depth_limit_is_documented_as_the_parser_counts_it():
    explanation = describe("E106").explanation
    assert str(MAX_DEPTH) in explanation and "a + b + c" in explanation
    assert "a + b + c" in (Path(__file__).parents[1] / "docs" / "language.md").read_text(encoding="utf-8")
