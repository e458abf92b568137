"""One rule run incrementally: its evaluations, `for`, `min_steps` and episodes (docs/language.md §3, §4).

A `RuleRunner` is asked to evaluate its rule at a step each time a row of
that step changes a key it may read (an `absent` rule also at the first row of
every step: it is evaluated at every logged step). Its small state
(`AlertState`, a value) is a state machine as in Prometheus' alerting rules:
inactive, pending (the condition holds, but not yet for `for N steps` or
before `min_steps`), firing (an open episode). Durations are training steps
(docs/language.md §3): the state keeps the step its streak began at, not a count of
evaluations, so that a rule means the same whatever the run's logging_steps.

The first time at a step the runner keeps the state it had; when a later row
of the same step changes its inputs it goes back to that state and evaluates
again, so what it holds is always what the merged rows of the step mean. The
events of the step are compared with the ones already returned: only a
difference is reported (withdrawals first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ruledsl.alerts import AlertRecord, episode_message
from ruledsl.compile import CompiledRule
from ruledsl.engines.live.aliases import Resolver
from ruledsl.engines.live.events import RESOLVED, STARTED, WITHDRAWN, AlertEvent
from ruledsl.engines.live.expression import CompiledExpression, compile_expression
from ruledsl.engines.live.series import Series
from ruledsl.engines.live.shorthand import RAW_READ, STEPS_READ, CompiledShorthand, compile_shorthand, window_needs

INACTIVE, PENDING, FIRING = "inactive", "pending", "firing"


@dataclass(frozen=True, slots=True)
class Episode:
    """An alert episode so far: consecutive firing evaluations (docs/language.md §4)."""

    first_step: int
    last_step: int
    n_evals: int
    value: float | None
    metric: str | None
    message: str

    def extended_to(self, step: int) -> Episode:
        return Episode(self.first_step, step, self.n_evals + 1, self.value, self.metric, self.message)


@dataclass(frozen=True, slots=True)
class AlertState:
    """What one rule carries from an evaluation to the next: a value, never changed in place.

    An evaluation that changes it makes a new one, so the state before a step is kept
    by keeping a reference (no copy on the callback's every on_log), and going back to
    it is an assignment.
    """

    start: int | None = None  # step of the first evaluation of the current streak (None: no streak)
    open: Episode | None = None  # the episode firing now
    closed: int = 0  # how many finished episodes the runner's history holds

    @property
    def phase(self) -> str:
        if self.open is not None:
            return FIRING
        return PENDING if self.start is not None else INACTIVE


class RuleRunner:
    def __init__(self, compiled: CompiledRule, position: int, resolvers: Mapping[str, Resolver],
                 trainer: str | None, run: str):
        """`resolvers`: metric as written → its resolver (for a metric pattern: one for the matched key)."""
        self.compiled = compiled
        self.rule = compiled.rule
        self.position = position  # order among the monitor's runners: events come in this order
        self.trainer, self.run = trainer, run
        self.disabled = False
        condition = self.rule.condition
        self.shorthand: CompiledShorthand | None = None
        self.expression: CompiledExpression | None = None
        if condition.is_shorthand:
            self.shorthand = compile_shorthand(condition.body, self.rule.window)
            self.resolvers: tuple[Resolver, ...] = (resolvers[self.rule.metric],)  # type: ignore[index]
        else:
            self.expression = compile_expression(condition.body)
            self.resolvers = tuple(resolvers[name] for name in self.expression.metrics)
        # `absent` is evaluated at every logged step, not only where its key changes
        self.every_step = self.shorthand is not None and self.shorthand.reads == STEPS_READ
        self.span = self.rule.sustain - 1  # s − s₀ a streak must reach to fire (`for N steps`)
        self.min_steps = self.rule.min_steps
        self.state = AlertState()
        self.closed: list[Episode] = []
        # the current step: the state before it, and the events returned for it
        self.touched_step: int | None = None
        self.before_step = AlertState()
        self.step_events: list[AlertEvent] = []

    # ------------------------------------------------------------ what it reads

    def needs(self) -> list[tuple[Resolver, int, frozenset[int]]]:
        """Per metric: its resolver, how many values its series must keep, its first-W means."""
        if self.shorthand is not None:
            capacity, baselines = window_needs(self.rule.condition.body, self.rule.window)
            return [(self.resolvers[0], capacity, baselines)]
        assert self.expression is not None
        e = self.expression
        return list(zip(self.resolvers, e.capacities, e.baselines))

    # ------------------------------------------------------------ a step

    def run_step(self, step: int, series: Mapping[str, Series]) -> list[AlertEvent]:
        """(Re-)evaluate the rule at `step`; the events this changes."""
        if self.touched_step != step:  # the usual case: the first row of the step that it reads
            self.touched_step, self.before_step = step, self.state
            try:
                events = self.step_events = self._evaluate(step, series)
            except Exception:
                self._restore(self.before_step)
                raise
            return events
        last_good, previous = self.state, self.step_events
        self._restore(self.before_step)
        try:
            events = self._evaluate(step, series)
        except Exception:
            self._restore(last_good)  # leave the state as the last good evaluation made it
            raise
        self.step_events = events
        if _same_events(previous, events):
            return []
        withdrawn = [AlertEvent(WITHDRAWN, e.record, self.rule, step, e.kind) for e in previous]
        return withdrawn + events

    def _evaluate(self, step: int, series: Mapping[str, Series]) -> list[AlertEvent]:
        if self.shorthand is not None:
            return self._evaluate_shorthand(step, series, self.shorthand)
        assert self.expression is not None
        return self._evaluate_expression(step, series, self.expression)

    def _evaluate_shorthand(self, step: int, series: Mapping[str, Series], compiled: CompiledShorthand
                            ) -> list[AlertEvent]:
        key = self.resolvers[0].key
        if key is None:
            return []
        s = series[key]
        if compiled.reads == STEPS_READ:  # every logged step after the key's first (absent)
            if s.first_step is None or step <= s.first_step:
                return []
            s.now = step
        elif compiled.reads == RAW_READ:
            if not s.has_row_at(step) or s.raw_count - 1 < compiled.defined_from:
                return []
        elif not s.has_value_at(step) or s.count - 1 < compiled.defined_from:
            return []
        holds, value, baseline = compiled.evaluate(s)
        state = self.state
        if not holds and state.start is None and state.open is None:
            return []  # inactive stays inactive: by far the most common evaluation, nothing to change
        return self._advance(step, holds, value, baseline, key)

    def _evaluate_expression(self, step: int, series: Mapping[str, Series], expression: CompiledExpression
                             ) -> list[AlertEvent]:
        keys = [r.key for r in self.resolvers]
        if None in keys:
            return []
        chosen = [series[k] for k in keys]  # type: ignore[index]
        if not all(s.has_value_at(step) for s in chosen) or not expression.defined(chosen):
            return []
        value = expression.value(chosen) if expression.value is not None else None
        return self._advance(step, expression.holds(chosen), value, None, None)

    def _advance(self, step: int, holds: bool, value: float | None, baseline: float | None,
                 metric: str | None) -> list[AlertEvent]:
        """The state after an evaluation at `step`, and the event it makes: an episode started or
        resolved (docs/language.md §3, §4). The condition, then `for` (the streak spans enough steps), then
        `min_steps` (no firing at a step below it)."""
        state = self.state
        start = (step if state.start is None else state.start) if holds else None
        fired = start is not None and step - start >= self.span and step >= self.min_steps
        episode, events = state.open, []
        if fired and episode is None:
            episode = self._start(step, value, baseline, metric)
            events = [AlertEvent(STARTED, self.record(episode), self.rule, step)]
        elif fired and episode is not None:
            episode = episode.extended_to(step)
        elif episode is not None:
            self.closed.append(episode)
            events = [AlertEvent(RESOLVED, self.record(episode), self.rule, step)]
            episode = None
        self.state = AlertState(start, episode, len(self.closed))
        return events

    def _start(self, step: int, value: float | None, baseline: float | None, metric: str | None) -> Episode:
        message = episode_message(self.compiled, self.trainer, run=self.run, metric=metric, step=step,
                                  value=value, baseline=baseline)
        return Episode(step, step, 1, value, metric, message)

    def _restore(self, saved: AlertState) -> None:
        self.state = saved
        del self.closed[saved.closed:]

    # ------------------------------------------------------------ what it found

    def episodes(self) -> list[Episode]:
        return self.closed + ([self.state.open] if self.state.open else [])

    def record(self, episode: Episode) -> dict[str, Any]:
        """The docs/language.md §4 record, as a dict in the order of ruledsl.alerts.RECORD_FIELDS."""
        rule = self.rule
        return AlertRecord(self.run, rule.name, rule.severity, self.trainer, episode.metric, episode.first_step,
                           episode.last_step, episode.n_evals, episode.value, episode.message).as_dict()


def _same_events(a: list[AlertEvent], b: list[AlertEvent]) -> bool:
    """Equal events, a NaN value equal to itself (repr keeps -0.0 apart from 0.0, as a message does)."""
    return len(a) == len(b) and all(x.kind == y.kind and repr(x.record) == repr(y.record) for x, y in zip(a, b))
