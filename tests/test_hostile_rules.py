"""Rules that could never run are refused when written, with a position (issue: hostile input);
the live engine holds its contract on any value."""

from __future__ import annotations

import pytest

import ruledsl


@pytest.mark.parametrize("text, column", [
    ("dpo: < 0.5 -> high: msg", 6),            # a shorthand with no metric: was accepted, then KeyError at train begin
    ("dpo: 1 spike(3) -> high: m", 6),         # was AttributeError
    ("dpo: a*b drop(50%) -> high: m", 6),      # was AttributeError
    ("dpo: -x nonfinite -> high: m", 6),       # was AttributeError
])
def test_an_inline_alert_that_could_never_run_is_a_syntax_error(text, column):
    with pytest.raises(ruledsl.RuleSyntaxError) as caught:
        ruledsl.parse_inline_alert(text)
    assert caught.value.diagnostic.code == "E108" and caught.value.column == column


@pytest.mark.parametrize("condition, code", [("1 > 0", "E110"), ("mean(loss, 99999999999999999999) > 1", "E104")])
def test_conditions_that_used_to_pass_lint_and_crash_the_backend(condition, code):
    with pytest.raises(ruledsl.RuleSyntaxError) as caught:
        ruledsl.parse_condition(condition)
    assert caught.value.diagnostic.code == code


def test_a_parenthesised_metric_reads_as_the_metric_in_an_inline_alert():
    rule = ruledsl.parse_inline_alert("dpo: (loss) < 1 -> high: m")
    assert rule.metric == "loss"


@pytest.mark.parametrize("value", [10**400, -(10**400), float("inf"), "text", (1, 2), None])
def test_the_monitor_skips_a_value_that_is_no_finite_able_number(value):
    monitor = ruledsl.Monitor(["sft: loss > 1 -> high: m"])
    monitor.update(1, {"loss": value})  # skipped for that key and row, nothing switched off
    monitor.update(2, {"loss": 2.0})
    assert not monitor.faults and [e["first_step"] for e in monitor.episodes()] == [2]
