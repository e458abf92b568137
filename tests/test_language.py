"""The condition language (docs/language.md §3) and inline alerts (§6): what parses to what."""

import pytest

from ruledsl import RuleSyntaxError, parse_condition, parse_inline_alert
from ruledsl.lang import ast
from ruledsl.lang.parser import _parser


def test_the_parser_is_lalr():
    assert _parser().options.parser == "lalr"


# ---------------------------------------------------------------- shorthands, one per row of §3


@pytest.mark.parametrize("text, op, threshold", [
    ("< 0.5", "<", 0.5), ("<= 3", "<=", 3.0), ("> -0.5", ">", -0.5), (">= 1e-3", ">=", 0.001),
    ("== .5", "==", 0.5), ("!= 2", "!=", 2.0),
])
def test_shorthand_comparisons(text, op, threshold):
    condition = parse_condition(text)
    assert condition.kind == "shorthand"
    assert condition.body == ast.ShorthandCompare(op, condition.body.threshold, condition.body.span)
    assert condition.body.threshold.value == threshold


def test_range_and_outside():
    inside = parse_condition("range(0.68, 0.71)").body
    outside = parse_condition("outside(-1, 2)").body
    assert (inside.inside, inside.low.value, inside.high.value) == (True, 0.68, 0.71)
    assert (outside.inside, outside.low.value, outside.high.value) == (False, -1.0, 2.0)


@pytest.mark.parametrize("text, direction, percent", [
    ("drop(50%)", "drop", 50.0), ("drop(50)", "drop", 50.0), ("rise(100%)", "rise", 100.0),
    ("rise(2.5 %)", "rise", 2.5),
])
def test_drop_and_rise_with_optional_percent(text, direction, percent):
    body = parse_condition(text).body
    assert isinstance(body, ast.Change)
    assert (body.direction, body.percent.value) == (direction, percent)


@pytest.mark.parametrize("text, factor", [("spike(3x)", 3.0), ("spike(3)", 3.0), ("spike(1.5x)", 1.5)])
def test_spike_with_optional_x(text, factor):
    body = parse_condition(text).body
    assert isinstance(body, ast.Spike) and body.factor.value == factor


def test_flat_and_nonfinite():
    assert parse_condition("flat(0.01)").body.tolerance.value == 0.01
    assert isinstance(parse_condition("nonfinite").body, ast.NonFinite)


def test_shorthands_combine_with_and_or_not_and_parentheses():
    body = parse_condition("(< 0.5 or > 2) and not drop(10%)").body
    assert isinstance(body, ast.And)
    first, second = body.operands
    assert isinstance(first, ast.Or) and isinstance(second, ast.Not)
    assert parse_condition("< 0.5 or > 2").kind == "shorthand"


def test_and_binds_tighter_than_or():
    body = parse_condition("< 1 or > 2 and < 3").body
    assert isinstance(body, ast.Or)
    assert isinstance(body.operands[1], ast.And)


def test_long_or_chains_stay_flat():
    body = parse_condition(" or ".join(["< 1"] * 300)).body
    assert isinstance(body, ast.Or) and len(body.operands) == 300


@pytest.mark.parametrize("text, sustain", [("< 0.5 for 3 steps", 3), ("drop(50%) for 1 step", 1)])
def test_for_n_steps(text, sustain):
    assert parse_condition(text).sustain == sustain


def test_no_for_means_none():
    assert parse_condition("< 0.5").sustain is None


# ---------------------------------------------------------------- full expressions


def test_metric_names_with_slashes_and_dots_are_one_name():
    body = parse_condition("rewards/chosen < clip_ratio/low_mean").body
    assert body.left == ast.MetricRef("rewards/chosen", body.left.span)
    assert body.right.name == "clip_ratio/low_mean"
    assert parse_condition("sampling/importance_sampling_ratio/mean < 0.5").body.left.name == \
        "sampling/importance_sampling_ratio/mean"


def test_division_needs_spaces():
    body = parse_condition("a / b > 1").body
    assert isinstance(body.left, ast.BinaryOp) and body.left.op == "/"
    assert parse_condition("a/b > 1").body.left.name == "a/b"


def test_backticked_names_hold_any_character():
    body = parse_condition("`my-metric (x)` >= 2").body
    assert body.left.name == "my-metric (x)"


def test_arithmetic_precedence_and_unary_minus():
    body = parse_condition("-a + b * 2 - c < 0").body.left
    # ((-a) + (b * 2)) - c
    assert body.op == "-" and body.right.name == "c"
    assert body.left.op == "+"
    assert isinstance(body.left.left, ast.Negative)
    assert body.left.right.op == "*"


def test_parentheses_in_arithmetic():
    body = parse_condition("(a + b) / 2 > 1").body.left
    assert body.op == "/" and body.left.op == "+"


@pytest.mark.parametrize("name", ["mean", "min", "max", "std", "sum", "delta", "baseline"])
def test_window_functions(name):
    body = parse_condition(f"{name}(loss, 20) > 1").body
    assert isinstance(body.left, ast.Call)
    assert (body.left.name, body.left.metric.name, body.left.window) == (name, "loss", 20)


def test_abs_takes_an_expression():
    body = parse_condition("abs(a - b) > 1").body
    assert body.left.name == "abs" and isinstance(body.left.args[0], ast.BinaryOp)


def test_spec_examples_of_full_expressions():
    c = parse_condition("mean(loss, 20) > 2 * baseline(loss, 20)")
    assert c.kind == "expression"
    c = parse_condition("logps/chosen < 0 and logps/rejected < 0")
    assert ast.metric_names(c.body) == ["logps/chosen", "logps/rejected"]


def test_full_expression_combinations_and_for():
    c = parse_condition("not (a > 1 or b < 2) and c == 3 for 5 steps")
    assert c.kind == "expression" and c.sustain == 5
    assert isinstance(c.body, ast.And) and isinstance(c.body.operands[0], ast.Not)


def test_spans_point_into_the_text():
    text = "loss > 2 and kl < 0.1"
    c = parse_condition(text)
    second = c.body.operands[1]
    assert text[second.span.start:second.span.end] == "kl < 0.1"
    assert (second.span.line, second.span.column) == (1, 14)


# ---------------------------------------------------------------- inline alerts (§6)


def test_inline_alert_of_the_spec():
    rule = parse_inline_alert("grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed")
    assert rule.trainers == ("grpo",)
    assert rule.metric == "importance_sampling_ratio"
    assert rule.condition.kind == "shorthand" and rule.condition.text == "< 0.5"
    assert rule.severity == "high" and rule.message.source == "IS ratio collapsed"
    assert rule.window == 1


def test_inline_message_may_hold_dashes_colons_arrows_and_templates():
    rule = parse_inline_alert("dpo: loss > 1 -> low: a - b: c -> d {value:.2f}")
    assert rule.message.source == "a - b: c -> d {value:.2f}"
    assert rule.message.fields == ("value",)


@pytest.mark.parametrize("trainers, expected", [
    ("grpo,ppo", ("grpo", "ppo")), ("grpo, ppo", ("grpo", "ppo")), ("*", ("all",)), ("all", ("all",)),
])
def test_inline_trainer_lists(trainers, expected):
    assert parse_inline_alert(f"{trainers}: loss > 1 -> low: m").trainers == expected


def test_inline_metric_then_shorthand_combination():
    rule = parse_inline_alert("grpo: kl > 0.5 or spike(3x) for 2 steps -> medium: KL")
    assert rule.metric == "kl"
    assert rule.condition.kind == "shorthand" and rule.sustain == 2
    assert isinstance(rule.condition.body, ast.Or)


@pytest.mark.parametrize("shorthand", ["drop(50%)", "range(0.68, 0.71)", "nonfinite", "flat(0.1)"])
def test_inline_metric_with_a_shorthand_call(shorthand):
    rule = parse_inline_alert(f"sft: loss {shorthand} -> high: m")
    assert rule.metric == "loss" and rule.condition.text == shorthand


def test_inline_alert_is_parsed_once_its_tree_rewritten_in_place():
    """The leading `METRIC SHORTHAND` leaf becomes the bare term; every span stays a position in
    the inline alert (no second parse of a cut-out substring)."""
    text = "grpo: kl < -0.5 or spike(3x) for 2 steps -> medium: KL"
    rule = parse_inline_alert(text)
    body = rule.condition.body
    assert isinstance(body, ast.Or)
    first, second = body.operands
    assert isinstance(first, ast.ShorthandCompare) and first.op == "<" and first.threshold.value == -0.5
    assert text[first.span.start:first.span.end] == "< -0.5"
    assert text[first.threshold.span.start:first.threshold.span.end] == "-0.5"
    assert text[second.span.start:second.span.end] == "spike(3x)"
    assert rule.condition.source == text and rule.condition.text == "< -0.5 or spike(3x) for 2 steps"


def test_an_error_after_the_metric_is_placed_in_the_inline_alert():
    with pytest.raises(RuleSyntaxError) as caught:
        parse_inline_alert("dpo: loss range(2, 1) -> high: m")
    error = caught.value
    assert (error.line, error.column) == (1, 11) and error.code == "E105"


def test_inline_full_expression_when_the_shorthand_reading_does_not_fit():
    rule = parse_inline_alert("dpo: logps/chosen < 0 and logps/rejected < 0 -> high: both negative")
    assert rule.metric is None and rule.condition.kind == "expression"
    rule = parse_inline_alert("dpo: loss - 1 < 0 -> high: m")
    assert rule.metric is None


def test_inline_names_are_stable_and_distinct():
    text = "grpo: importance_sampling_ratio < 0.5 -> high: IS ratio collapsed"
    assert parse_inline_alert(text).name == parse_inline_alert(text).name
    assert parse_inline_alert(text).name != parse_inline_alert(text + "!").name
    assert parse_inline_alert(text).name.startswith("inline_importance_sampling_ratio_")


def test_inline_alert_for_all_is_accepted_by_the_engine():
    import polars as pl

    import ruledsl

    frame = pl.DataFrame({"step": [0, 1, 2], "importance_sampling_ratio": [1.0, 0.3, 0.2]})
    records = ruledsl.audit(frame, ["grpo: importance_sampling_ratio < 0.5 -> high: IS at {value:.1f}"])
    assert records.select("metric", "first_step", "last_step", "message").rows() == \
        [("importance_sampling_ratio", 1, 2, "IS at 0.3")]


def test_inline_errors_point_into_the_whole_text():
    with pytest.raises(RuleSyntaxError) as info:
        parse_inline_alert("dpo: loss drop(0%) -> high: m")
    assert info.value.column == 16 and "greater than 0" in str(info.value)
