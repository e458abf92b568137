"""One rule run incrementally: its evaluations, `for`, `min_steps` and episodes (spec §3, §4).

A `RuleRunner` is asked to evaluate its rule at a step each time a row of
that step changes a key it may read. The first time at a step it saves its
small state (streak, evaluation count, open episode); when a later row of the
same step changes its inputs it goes back to that state and evaluates again,
so what it holds is always what the merged rows of the step mean. The events
of the step are compared with the ones already returned: only a difference is
reported (withdrawals first).
"""

from __future__ import annotations

from typing import Mapping

from ruledsl.alerts import AlertRecord, episode_message
from ruledsl.compile import CompiledRule
from ruledsl.engines.live.aliases import Resolver
from ruledsl.engines.live.events import RESOLVED, STARTED, WITHDRAWN, AlertEvent
from ruledsl.engines.live.expression import CompiledExpression, compile_expression
from ruledsl.engines.live.series import Series
from ruledsl.engines.live.shorthand import CompiledShorthand, compile_shorthand, window_needs


class Episode:
    __slots__ = ("first_step", "last_step", "n_evals", "value", "metric", "message")

    def __init__(self, first_step, last_step, n_evals, value, metric, message):
        self.first_step, self.last_step, self.n_evals = first_step, last_step, n_evals
        self.value, self.metric, self.message = value, metric, message

    def saved(self) -> tuple:
        return (self.first_step, self.last_step, self.n_evals, self.value, self.metric, self.message)


class RuleRunner:
    def __init__(self, compiled: CompiledRule, position: int, resolvers: Mapping[str, Resolver],
                 trainer: str | None, run: str):
        self.compiled = compiled
        self.rule = compiled.rule
        self.position = position  # order among the monitor's rules: events come in this order
        self.trainer, self.run = trainer, run
        self.disabled = False
        condition = self.rule.condition
        self.shorthand: CompiledShorthand | None = None
        self.expression: CompiledExpression | None = None
        if condition.is_shorthand:
            self.shorthand = compile_shorthand(condition.body, self.rule.window)
            self.resolvers = (resolvers[self.rule.metric],)
        else:
            self.expression = compile_expression(condition.body)
            self.resolvers = tuple(resolvers[name] for name in self.expression.metrics)
        self._evaluation_at = self._shorthand_at if self.shorthand is not None else self._expression_at
        self.sustain = self.rule.sustain
        self.warm_up = self.rule.min_steps - 1  # the first index that may fire
        # state
        self.streak = 0
        self.evaluations = 0  # of a full expression: its evaluation index (min_steps)
        self.open: Episode | None = None
        self.closed: list[Episode] = []
        # the current step: state before it, and the events returned for it
        self.touched_step: int | None = None
        self.before_step: tuple = ()
        self.step_events: list[AlertEvent] = []

    # ------------------------------------------------------------ what it reads

    def needs(self) -> list[tuple[Resolver, int, frozenset[int]]]:
        """Per metric: its resolver, how many values its series must keep, its first-W means."""
        if self.shorthand is not None:
            capacity, baselines = window_needs(self.rule.condition.body, self.rule.window)
            return [(self.resolvers[0], capacity, baselines)]
        e = self.expression
        return list(zip(self.resolvers, e.capacities, e.baselines))

    # ------------------------------------------------------------ a step

    def run_step(self, step: int, series: Mapping[str, Series]) -> list[AlertEvent]:
        """(Re-)evaluate the rule at `step`; the events this changes."""
        if self.touched_step != step:  # the usual case: the first row of the step that it reads
            self.touched_step, self.before_step = step, self._save()
            try:
                events = self.step_events = self._evaluate(step, series)
            except Exception:
                self._restore(self.before_step)
                raise
            return events
        before_call, previous = self._save(), self.step_events
        self._restore(self.before_step)
        try:
            events = self._evaluate(step, series)
        except Exception:
            self._restore(before_call)  # leave the state as the last good evaluation made it
            raise
        self.step_events = events
        if _same_events(previous, events):
            return []
        withdrawn = [AlertEvent(WITHDRAWN, e.record, self.rule, step, e.kind) for e in previous]
        return withdrawn + events

    def _evaluate(self, step: int, series: Mapping[str, Series]) -> list[AlertEvent]:
        found = self._evaluation_at(step, series)
        if found is None:
            return []
        holds, value, baseline, index, metric = found
        self.streak = self.streak + 1 if holds else 0
        fired = self.streak >= self.sustain and index >= self.warm_up
        if not fired and self.open is None:
            return []
        return self._episode(step, fired, value, baseline, metric)

    def _shorthand_at(self, step: int, series: Mapping[str, Series]):
        key = self.resolvers[0].key
        if key is None:
            return None
        s, compiled = series[key], self.shorthand
        if compiled.raw:
            if not s.has_row_at(step):
                return None
            index = s.raw_count - 1
        else:
            if not s.has_value_at(step):
                return None
            index = s.count - 1
        if index < compiled.defined_from:
            return None
        holds, value, baseline = compiled.evaluate(s)
        return holds, value, baseline, index, key

    def _expression_at(self, step: int, series: Mapping[str, Series]):
        keys = [r.key for r in self.resolvers]
        if None in keys:
            return None
        chosen = [series[k] for k in keys]
        if not all(s.has_value_at(step) for s in chosen) or not self.expression.defined(chosen):
            return None
        index = self.evaluations
        self.evaluations += 1
        return self.expression.holds(chosen), self.expression.value(chosen), None, index, None

    def _episode(self, step, fired, value, baseline, metric) -> list[AlertEvent]:
        current = self.open
        if fired and current is None:
            message = episode_message(self.compiled, self.trainer, run=self.run, metric=metric, step=step,
                                      value=value, baseline=baseline)
            self.open = Episode(step, step, 1, value, metric, message)
            return [AlertEvent(STARTED, self.record(self.open), self.rule, step)]
        if fired:
            current.last_step = step
            current.n_evals += 1
            return []
        if current is not None:
            self.closed.append(current)
            self.open = None
            return [AlertEvent(RESOLVED, self.record(current), self.rule, step)]
        return []

    # ------------------------------------------------------------ state

    def _save(self) -> tuple:
        return (self.streak, self.evaluations, self.open.saved() if self.open else None, len(self.closed))

    def _restore(self, saved: tuple) -> None:
        self.streak, self.evaluations, open_episode, closed = saved
        self.open = Episode(*open_episode) if open_episode else None
        del self.closed[closed:]

    def episodes(self) -> list[Episode]:
        return self.closed + ([self.open] if self.open else [])

    def record(self, episode: Episode) -> dict:
        """The spec §4 record, as a dict in the order of ruledsl.alerts.RECORD_FIELDS."""
        rule = self.rule
        return AlertRecord(self.run, rule.name, rule.severity, self.trainer, episode.metric, episode.first_step,
                           episode.last_step, episode.n_evals, episode.value, episode.message).as_dict()


def _same_events(a: list[AlertEvent], b: list[AlertEvent]) -> bool:
    """Equal events, a NaN value equal to itself (repr keeps -0.0 apart from 0.0, as a message does)."""
    return len(a) == len(b) and all(x.kind == y.kind and repr(x.record) == repr(y.record) for x, y in zip(a, b))

