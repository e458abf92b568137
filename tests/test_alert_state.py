"""The live engine's per-rule state machine: inactive → pending → firing → inactive."""

from __future__ import annotations

from ruledsl import Monitor
from ruledsl.engines.live.runner import FIRING, INACTIVE, PENDING, AlertState, Episode


def phases(values, rule="sft: loss > 1 for 3 steps -> high: m"):
    monitor = Monitor([rule])
    runner = monitor._runners[0]
    seen = []
    for step, value in enumerate(values, start=1):
        monitor.update(step, {"loss": value})
        seen.append(runner.state.phase)
    return seen


def test_a_streak_is_pending_until_for_is_met_then_firing_until_it_breaks():
    assert phases([0, 2, 2, 2, 2, 0, 2]) == [INACTIVE, PENDING, PENDING, FIRING, FIRING, INACTIVE, PENDING]


def test_min_steps_keeps_a_holding_condition_pending():
    seen = phases([2, 2, 2, 2], rule={"name": "r", "trainers": ["sft"], "metric": "loss", "condition": "> 1",
                                      "min_steps": 3, "severity": "high", "message": "m"})
    assert seen == [PENDING, PENDING, FIRING, FIRING]


def test_the_state_is_a_value_kept_by_reference_across_a_step():
    """A later row of the same step goes back to the state before the step: an object no
    evaluation changed."""
    monitor = Monitor(["sft: loss > 1 for 2 steps -> high: m"])
    runner = monitor._runners[0]
    monitor.update(1, {"loss": 2.0})
    before = runner.state
    assert before == AlertState(streak=1, evaluations=0, open=None, closed=0)
    monitor.update(2, {"loss": 2.0})
    assert runner.before_step is before and runner.state.phase == FIRING
    monitor.update(2, {"loss": 0.0})  # replaces the value at step 2: back to `before`, then evaluated again
    assert before == AlertState(streak=1, evaluations=0, open=None, closed=0)
    assert runner.state == AlertState(streak=0, evaluations=0, open=None, closed=0)
    assert isinstance(Episode(1, 1, 1, 2.0, "loss", "m").extended_to(3), Episode)
