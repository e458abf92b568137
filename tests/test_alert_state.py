"""The live engine's per-rule state machine: inactive → pending → firing → inactive."""

from __future__ import annotations

from ruledsl import Monitor
from ruledsl.engines.live.runner import FIRING, INACTIVE, PENDING, AlertState, Episode


def phases(values, rule="sft: loss > 1 for 3 steps -> high: m", steps=None):
    monitor = Monitor([rule])
    runner = monitor._runners[0]
    seen = []
    for step, value in zip(steps or range(1, len(values) + 1), values):
        monitor.update(step, {"loss": value})
        seen.append(runner.state.phase)
    return seen


def test_a_streak_is_pending_until_for_is_met_then_firing_until_it_breaks():
    assert phases([0, 2, 2, 2, 2, 0, 2]) == [INACTIVE, PENDING, PENDING, FIRING, FIRING, INACTIVE, PENDING]


def test_for_counts_training_steps_not_evaluations():
    """Logged every 10 steps, `for 30 steps` fires once the streak spans 29 steps: at its 4th evaluation."""
    steps = [10, 20, 30, 40, 50, 60]
    rule = "sft: loss > 1 for 30 steps -> high: m"
    assert phases([2, 2, 2, 2, 2, 0], rule, steps) == [PENDING, PENDING, PENDING, FIRING, FIRING, INACTIVE]
    # a gap in the log counts: the streak spans the steps between its evaluations
    assert phases([2, 2, 2], rule, [1, 2, 31]) == [PENDING, PENDING, FIRING]


def test_min_steps_keeps_a_holding_condition_pending():
    min_steps_3 = {"name": "r", "trainers": ["sft"], "metric": "loss", "condition": "> 1",
                   "min_steps": 3, "severity": "high", "message": "m"}
    assert phases([2, 2, 2, 2], rule=min_steps_3) == [PENDING, PENDING, FIRING, FIRING]
    # a training step, not a count of values: logged every 2 steps, step 4 is the first that may fire
    assert phases([2, 2, 2], rule=min_steps_3, steps=[0, 2, 4]) == [PENDING, PENDING, FIRING]


def test_the_state_is_a_value_kept_by_reference_across_a_step():
    """A later row of the same step goes back to the state before the step: an object no
    evaluation changed."""
    monitor = Monitor(["sft: loss > 1 for 2 steps -> high: m"])
    runner = monitor._runners[0]
    monitor.update(1, {"loss": 2.0})
    before = runner.state
    assert before == AlertState(start=1, open=None, closed=0)
    monitor.update(2, {"loss": 2.0})
    assert runner.before_step is before and runner.state.phase == FIRING
    monitor.update(2, {"loss": 0.0})  # replaces the value at step 2: back to `before`, then evaluated again
    assert before == AlertState(start=1, open=None, closed=0)
    assert runner.state == AlertState(start=None, open=None, closed=0)
    assert isinstance(Episode(1, 1, 1, 2.0, "loss", "m").extended_to(3), Episode)


def test_an_inactive_rule_that_does_not_hold_keeps_its_state_object():
    """The per-row fast path: nothing to change, nothing made."""
    monitor = Monitor(["sft: loss > 1 for 2 steps -> high: m"])
    runner = monitor._runners[0]
    monitor.update(1, {"loss": 0.0})
    state = runner.state
    assert state == AlertState()
    monitor.update(2, {"loss": 0.5})
    assert runner.state is state
