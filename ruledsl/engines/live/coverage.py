"""Coverage, live (docs/language.md §4): the rules not evaluated on the run so far, and why.

`Monitor.coverage()` gives the records the batch audit's coverage gives for the
same log (ruledsl/engines/batch/coverage.py: the same reasons, in the same order
of precedence, worded the same way; tests/test_monitor.py compares the two). They
are computed on demand, from two things the monitor keeps as rows arrive:

- the keys of the run that had a value (a number, finite or not): a set that
  grows only when a row brings a key it does not hold yet (`Monitor._merge` asks
  with one subset test per row);
- for each rule runner, a `Watch` while the runner has had no evaluation at a
  step ≥ its `min_steps`. The watch stands in for the runner's `run_step` (an
  attribute of the runner instance, in front of its class's method) and counts
  the runner's evaluations (and, for a full expression, notes whether its
  metrics ever had values at one step); at the first evaluation at a step ≥
  `min_steps` the runner is covered for good (steps never go down in a monitor)
  and the watch removes itself. A covered rule costs nothing more per row; only
  warm-ups (windows not yet full, `min_steps`) and rules that never get there go
  through a watch.

Reasons, the first that applies: `when_false` and `config_unknown` (the rule is
not run with this configuration: `Monitor.not_evaluated`), `no_key` (none of a
metric's candidate keys, or no key matching the pattern, has had a value),
`no_joint_rows` (a full expression over several metrics, each logged, never at
one step), `too_short` (no evaluation, or none at a step ≥ `min_steps`).

Two readings differ from the batch engine's coverage today, which the live engine
does not copy (tests/test_monitor.py keeps them as expected failures): the batch
side gives no record for a pattern that matches no key of the log (the spec asks
for `no_key`), and calls every full expression never evaluated `no_joint_rows`,
also one whose metrics share rows but whose windows never fill (`too_short`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ruledsl.alerts import CoverageRecord
from ruledsl.compile import CompiledRule
from ruledsl.engines.live.events import AlertEvent
from ruledsl.engines.live.runner import RuleRunner
from ruledsl.engines.live.series import Series
from ruledsl.engines.live.shorthand import RAW_READ, STEPS_READ
from ruledsl.lang.configuration import NotEvaluated

CLOSE_CUTOFF = 0.75  # difflib's similarity for a `no_key` suggestion: as the batch engine's


class Watch:
    """One runner's evaluations until its first at a step ≥ min_steps (then `covered`)."""

    __slots__ = ("runner", "evaluations", "joint", "covered", "_step")

    def __init__(self, runner: RuleRunner):
        self.runner = runner
        self.evaluations = 0  # evaluations so far (each at a step below min_steps while not covered)
        self.joint = False  # a full expression: its metrics had values at one step
        self.covered = False
        self._step: int | None = None  # the last step counted: a step evaluated again is counted once
        setattr(runner, "run_step", self.run_step)  # noqa: B010 (an instance attribute: the monitor calls it)

    def run_step(self, step: int, series: Mapping[str, Series]) -> list[AlertEvent]:
        runner = self.runner
        events = RuleRunner.run_step(runner, step, series)
        if step != self._step:
            seen = _seen_at(runner, step, series)
            self.joint = self.joint or seen >= JOINT
            if seen == EVALUATED:
                self._step = step
                self.evaluations += 1
                if step >= runner.min_steps:
                    self.covered = True
                    delattr(runner, "run_step")  # the runner's own method again: no cost from now on
        return events


NOTHING, JOINT, EVALUATED = 0, 1, 2


def _seen_at(runner: RuleRunner, step: int, series: Mapping[str, Series]) -> int:
    """EVALUATED when the runner's rule was evaluated at `step` (the runner's own conditions for an
    evaluation, engines/live/runner.py, read after it ran); JOINT when a full expression's metrics
    all have values at `step` (its windows not defined yet); else NOTHING. Later rows of the step
    only raise it (they replace values or add keys; they remove none)."""
    shorthand = runner.shorthand
    if shorthand is not None:
        key = runner.resolvers[0].key
        if key is None:
            return NOTHING
        s = series[key]
        if shorthand.reads == STEPS_READ:
            done = s.first_step is not None and step > s.first_step
        elif shorthand.reads == RAW_READ:
            done = s.has_row_at(step) and s.raw_count - 1 >= shorthand.defined_from
        else:
            done = s.has_value_at(step) and s.count - 1 >= shorthand.defined_from
        return EVALUATED if done else NOTHING
    expression = runner.expression
    keys = [resolver.key for resolver in runner.resolvers]
    if expression is None or any(key is None for key in keys):
        return NOTHING
    chosen = tuple(series[key] for key in keys if key is not None)
    if not all(s.has_value_at(step) for s in chosen):
        return NOTHING
    return EVALUATED if expression.defined(chosen) else JOINT


def uncovered(run: Any, not_evaluated: Mapping[str, NotEvaluated], runners: Iterable[RuleRunner],
              pattern_rules: Sequence[CompiledRule], watches: Mapping[RuleRunner, Watch],
              keys: set[str]) -> list[CoverageRecord]:
    """The coverage records of the run so far, ordered as the batch engine's: run, rule, metric."""
    records = [CoverageRecord(run, name, None, why.reason, why.detail) for name, why in not_evaluated.items()]
    by_pattern: dict[str, list[RuleRunner]] = {c.rule.name: [] for c in pattern_rules}
    for runner in runners:
        if runner.rule.name in by_pattern:
            by_pattern[runner.rule.name].append(runner)
            continue
        watch = watches.get(runner)
        if watch is not None and not watch.covered:
            records.append(_rule_record(run, runner, watch, keys))
    for compiled in pattern_rules:
        records.extend(_pattern_records(run, compiled, by_pattern[compiled.rule.name], watches, keys))
    return sorted(records, key=lambda r: (str(r.run), r.rule, r.metric or ""))


def _rule_record(run: Any, runner: RuleRunner, watch: Watch, keys: set[str]) -> CoverageRecord:
    rule = runner.rule
    missing = [(metric, tried) for metric, tried in runner.compiled.candidates.items() if keys.isdisjoint(tried)]
    if missing:
        metric, tried = missing[0]
        return CoverageRecord(run, rule.name, None, "no_key", no_key_detail(metric, tried, keys))
    if not watch.joint and not rule.condition.is_shorthand and len(set(rule.metrics)) > 1:
        names = ", ".join(rule.metrics)
        return CoverageRecord(run, rule.name, None, "no_joint_rows", f"{names} are never logged at the same step")
    return CoverageRecord(run, rule.name, None, "too_short", too_short_detail(rule.min_steps, watch.evaluations))


def _pattern_records(run: Any, compiled: CompiledRule, runners: list[RuleRunner], watches: Mapping[RuleRunner, Watch],
                     keys: set[str]) -> list[CoverageRecord]:
    """A pattern rule: `no_key` when no key of the run matched, else one record per matched key
    not covered (its runner started at the key's first value)."""
    rule = compiled.rule
    if not runners:
        return [CoverageRecord(run, rule.name, None, "no_key",
                               f"no key of the run matches {rule.metric}" + close_key(str(rule.metric), keys))]
    records = []
    for runner in runners:
        watch = watches.get(runner)
        if watch is not None and not watch.covered:
            key = runner.resolvers[0].candidates[0]
            records.append(CoverageRecord(run, rule.name, key, "too_short",
                                          too_short_detail(rule.min_steps, watch.evaluations)))
    return records


def no_key_detail(metric: str, tried: tuple[str, ...], keys: set[str]) -> str:
    words = f"{metric} (tried {', '.join(tried)})" if tried != (metric,) else metric
    return f"no value of {words} in the run" + close_key(metric, keys)


def close_key(metric: str, keys: set[str]) -> str:
    close = difflib.get_close_matches(metric, sorted(keys), n=1, cutoff=CLOSE_CUTOFF)
    return f"; did you mean {close[0]}?" if close else ""


def too_short_detail(min_steps: int, evaluations: int) -> str:
    if not evaluations:
        return "the series never reached the values its windows need"
    return f"all {evaluations} evaluations fell below min_steps {min_steps}"
