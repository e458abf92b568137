"""Bad conditions get precise errors with positions and words, never a traceback."""

import pytest

from ruledsl import RuleSyntaxError, parse_condition, parse_inline_alert


def error_of(text: str, parse=parse_condition) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse(text)
    error = info.value
    assert not isinstance(error.__cause__, Exception) or isinstance(error.__cause__, RuleSyntaxError)
    assert "Unexpected" not in str(error) and "__ANON" not in str(error) and "Token(" not in str(error)
    return error


def test_expected_a_number_after_less_than():
    error = error_of("<")
    assert "expected a number" in str(error) and "after '<'" in str(error)
    assert (error.line, error.column) == (1, 2)


def test_caret_line_under_the_offending_text():
    error = error_of("loss > 2 andd kl < 1")
    lines = str(error).splitlines()
    assert lines[1] == "  loss > 2 andd kl < 1"
    assert lines[2] == "           ^^^^"
    assert error.offending == "andd"


@pytest.mark.parametrize("text, words", [
    ("range(0.5,", "ends too early"),
    ("range(1 2)", "','"),
    ("drop(50%", "')'"),
    ("a = 1", "comparison"),
    ("< 0.5 for steps", "whole number"),
    ("(< 0.5", "')'"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_syntax_errors_say_what_was_expected(text, words):
    assert words in str(error_of(text))


def test_equals_sign_gets_a_hint():
    assert "==" in error_of("loss = 1").hint


@pytest.mark.parametrize("text, code, words", [
    ("maen(loss, 3) > 1", "E102", "did you mean 'mean'"),
    ("mean(loss) > 1", "E103", "takes 2 or 3 arguments"),
    ("delta(loss, 1, 1) > 1", "E103", "takes 2 arguments"),
    ("mean(2, 3) > 1", "E103", "must be a metric name"),
    ("mean(loss, 0) > 1", "E104", "from 1 to 100,000"),
    ("mean(loss, 99999999999999999999) > 1", "E104", "from 1 to 100,000"),
    ("mean(loss, 3, -1) > 1", "E104", "the lag of mean()"),
    ("absent(0)", "E104", "from 1 to"),
    ("absent(2.5)", "E104", "whole number"),
    ("mean(loss, 2.5) > 1", "E104", "whole number"),
    ("delta(loss, -1) > 1", "E104", "whole number"),
    ("range(2, 1)", "E105", "a <= b"),
    ("outside(3, 1)", "E105", "a <= b"),
    ("< 50%", "E105", "only meaningful inside drop() or rise()"),
    ("> 3x", "E105", "only meaningful inside spike()"),
    ("loss > 50%", "E105", "only meaningful inside drop() or rise()"),
    ("spike(2%)", "E105", "does not belong"),
    ("drop(3x)", "E105", "does not belong"),
    ("spike(0x)", "E105", "greater than 0"),
    ("spike(-1x)", "E105", "greater than 0"),
    ("drop(0%)", "E105", "greater than 0"),
    ("flat(-0.1)", "E105", "cannot be negative"),
    ("nonfinite or < 1", "E109", "cannot be combined"),
    ("not nonfinite", "E109", "cannot be combined"),
    ("loss < 1 and < 2", "E108", "no metric"),
    ("loss drop(50%)", "E108", "cannot follow a metric"),
    ("loss", "E103", "expected a comparison"),
    ("(a < 1) + 2 > 1", "E103", "expected a value"),
    ("< 0.5 for 0 steps", "E104", "from 1 to"),
    ("absent(3) or < 1", "E109", "cannot be combined"),
    ("step > 100", "E110", "names no metric"),
    ("config.beta > 0.1", "E110", "names no metric"),
    ("true < loss", "E111", "only be compared with == or !="),
    ("loss + 'x' > 1", "E111", "cannot be used in arithmetic"),
    ("mean(true, 3) > 1", "E103", "must be a metric name"),
    ("`a/*/b` > 1", "E113", "pattern"),
    ("loss (< 0.5)", "E108", "cannot follow a metric"),
    ("config. > loss", "E103", "needs a key"),
])
def test_semantic_errors(text, code, words):
    error = error_of(text)
    assert error.code == code
    assert words in str(error)


def test_semantic_errors_point_at_the_node():
    error = error_of("loss > 1 and mean(kl, 0) > 2")
    assert error.offending == "0"
    assert error.column == 23


def test_multiline_positions():
    error = error_of("loss > 1\nand kl <")
    assert (error.line, error.column) == (2, 9)
    assert str(error).splitlines()[1] == "  and kl <"


# ---------------------------------------------------------------- hostile input


def test_ten_thousand_characters():
    error = error_of("x" * 10_000)
    assert error.code == "E107" and "limit" in str(error)
    assert len(str(error)) < 600


def test_long_garbage_within_the_limit():
    error = error_of("(" + "?" * 3000)
    assert error.code == "E101" and len(str(error)) < 600


def test_deep_nesting_of_not_and_minus():
    assert error_of("not " * 500 + "< 1").code == "E106"
    assert error_of("-" * 500 + "a < 1").code == "E106"


def test_deep_parentheses_are_fine_or_clean():
    text = "(" * 3000 + "a < 1" + ")" * 3000
    try:
        parse_condition(text[:4096])
    except RuleSyntaxError as error:
        assert error.code in {"E101", "E106"}


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\u202e", "\ufeff"])
def test_control_characters(char):
    error = error_of(f"loss < 1 {char} and kl > 2")
    rendered = str(error)
    assert char not in rendered  # never echoed raw to a terminal
    assert error.column == 10


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        parse_condition(0.5)


def test_inline_alert_errors():
    assert "severity" in str(error_of("dpo: loss < 1 -> hgh: m", parse_inline_alert))
    assert "message" in str(error_of("dpo: loss < 1 -> high:", parse_inline_alert))
    assert "'->'" in str(error_of("dpo: loss < 1 high: m", parse_inline_alert))
    assert "trainer" in str(error_of(": loss < 1 -> high: m", parse_inline_alert))
    error = error_of("dpo: loss < 1 -> high: {value!r}", parse_inline_alert)
    assert error.column == 24
