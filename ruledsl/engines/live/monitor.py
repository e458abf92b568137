"""The incremental engine: rules evaluated row by row as a run logs them.

    monitor = Monitor(ruledsl.load_rules(), trainer="grpo")
    for step, logs in stream:                  # e.g. a Trainer callback's on_log
        for event in monitor.update(step, logs):
            print(event.kind, event.record["message"])
    monitor.finish()
    monitor.episodes()                         # == ruledsl.audit(log, rules).to_dicts()

It reads the same compiled rules as the batch engine (`ruledsl.compile_rules`),
bound to the run's configuration (`config=`, docs/language.md §2: a rule whose `when` is
false or that needs a key the configuration lacks is not run, and
`not_evaluated` says why), and must give the same episodes for the same log,
bit for bit (docs/language.md §2–§4).
Per update it does O(W) work for each rule reading a key of the row (a window
sum is added left to right, never kept as a running sum), and it keeps only
the last few values of each key the rules read: memory does not grow with the
length of the run (only the list of episodes does).

Latency: none. A row is evaluated when it arrives, and its events are returned
by that `update` call. Most rules are evaluated where a key they read changes;
an `absent(N)` rule also at the first row of every step (every logged step is
an evaluation of it). A rule whose metric is a pattern gets a runner for each
matching key, started at the key's first value (ruledsl/engines/live/patterns.py).

Rows of the same step (the Trainer logs its training, evaluation and summary
rows at one step) merge key by key, a later row winning a key (docs/language.md §2). A
later row of the step that only adds keys is simply evaluated on top. One
that replaces the value of a key already logged at that step (or brings an
earlier alias candidate at the step where the alias is being decided) makes
each rule reading it go back to its state before the step and evaluate again:
the episodes stay exactly those of `ruledsl.audit`. If that changes an event
already returned for the step, the update returns an `AlertEvent` of kind
"withdrawn" for it, then the new events. The Trainer's rows of one step share
no metric key but `epoch`, so in practice nothing is ever withdrawn.

Steps must not go down. A row whose step is lower than the current one (a run
resumed from an earlier checkpoint, fed to the same monitor) cannot be placed
in a history the monitor no longer holds: it is skipped, counted in
`skipped_rows`, and noted once in `notices`. The batch audit merges such rows
by step instead, so for that part of a log the two can differ; a resumed
training session should get a fresh Monitor. A whole log at hand (a file, a
rule's test case) goes through `replay`, which puts rows in step order first
(stably, so the later row of a step still wins): that is exactly the batch
engine's merge, resumed runs included.

Any value and any step, never an exception (ruledsl/engines/live/values.py says what
each means, as the batch readers read the same line of a JSON log). A value that is no
number (a text, a boolean, a list, an object whose float() fails) is skipped for that key
and row, as if not logged, and noted once per key a rule may read in `notices`; a number
past any float (10**400) is ±inf. A row whose step names no training step (NaN, text,
a boolean, past 64 bits) is skipped, counted in `skipped_rows` and noted once; a fractional
step is cut to its whole part, as an audit cuts it, and noted once. A row that is no
mapping is skipped, counted and noted once too; a key that is no text is skipped and
noted once (no rule can name it).

`finish()` ends the log. Evaluation being immediate, nothing is pending then,
and it returns no event: an episode still firing at the end stays open (as in
an audit, where its last_step is its last firing evaluation); no "resolved" is
invented for it.

A rule that raises while evaluating is switched off (its episodes so far are
kept) and reported once in `faults`; the other rules go on.

`coverage()` says, at any point, which rules have not been evaluated on the run so far
and why (docs/language.md §4): the records the batch audit's coverage gives for the same
log (ruledsl/engines/live/coverage.py names the two cases where the batch side does not
yet read §4 so). It is computed when asked, from the keys the run has logged (remembered as they
first appear) and, for the rules still warming up, a count of their evaluations
(ruledsl/engines/live/coverage.py); a rule once evaluated at a step ≥ its `min_steps`
costs nothing more per row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ruledsl.alerts import CoverageRecord
from ruledsl.compile import CompiledRule, RuleLike, RuleSet, bind, compile_rules
from ruledsl.engines.live.aliases import Resolver
from ruledsl.engines.live.coverage import Watch, uncovered
from ruledsl.engines.live.events import AlertEvent, Fault
from ruledsl.engines.live.patterns import PatternRules, is_pattern_rule
from ruledsl.engines.live.runner import RuleRunner
from ruledsl.engines.live.series import Series
from ruledsl.engines.live.values import STEP_LIMIT, OnceEach, metric_value, read_step, shown, why_no_value
from ruledsl.lang.configuration import NotEvaluated
from ruledsl.model.catalog import Catalog

__all__ = ["AlertEvent", "Fault", "Monitor"]


class Monitor:
    """Rules evaluated as one run's rows arrive: `update`, `finish`, `episodes`, `rules`.

    `rules` is anything `ruledsl.compile_rules` accepts; `catalog` defaults to the
    builtin one; `run` is the run id the records carry; `config` is the run's
    configuration (None: none known, so a rule that reads one is `config_unknown`).
    """

    def __init__(self, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
                 catalog: Catalog | None = None, run: str = "default", config: Mapping[str, Any] | None = None):
        self.rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
        self.run = run
        self.faults: list[Fault] = []
        self.notices: list[str] = []
        self.skipped_rows = 0
        self._noted_keys = OnceEach(self.notices.append)  # values that are no number, keys that are no text
        self._noted_rows: set[str] = set()  # the kinds of rows skipped (or steps cut) so far: each noted once
        self.not_evaluated: dict[str, NotEvaluated] = {}  # rule name → why it does not run on this run
        self._step: int | None = None
        self._row: dict[str, float] = {}  # the merged row of the current step (keys the rules read)
        self._resolvers: dict[tuple[str, ...], Resolver] = {}
        self._rank = {c.rule.name: j for j, c in enumerate(self.rule_set)}  # events and runners in rule order
        self._keys: set[str] = set()  # the keys that have had a value (a number) in the run
        self._watches: dict[RuleRunner, Watch] = {}  # coverage: each runner's evaluations until it is covered
        bound = self._bind(config or {})
        self._pattern_rules = [c for c in bound if is_pattern_rule(c)]
        self._patterns = PatternRules(self._pattern_rules) if self._pattern_rules else None  # None: none to match
        self._runners = [self._runner(c) for c in bound if not is_pattern_rule(c)]
        self._place()
        self._series: dict[str, Series] = {}
        for runner in self._runners:
            self._provide(runner)
        self._index(self._step)

    # ------------------------------------------------------------ public

    @property
    def rules(self) -> tuple[CompiledRule, ...]:
        """The compiled rules for this trainer (disabled and other trainers' rules left out); those
        the run's configuration keeps from running are in `not_evaluated`."""
        return self.rule_set.rules

    @property
    def trainer(self) -> str | None:
        return self.rule_set.trainer

    def update(self, step: int, metrics: Mapping[str, Any]) -> list[AlertEvent]:
        """Feed one logged row; the events it causes, in rule order. Never raises for what the
        row holds: see the module's docstring for what is skipped and noted."""
        placed = step if type(step) is int and -STEP_LIMIT <= step < STEP_LIMIT else self._step_of(step)
        if placed is None:
            return []
        step = placed
        if type(metrics) is not dict and not isinstance(metrics, Mapping):
            self._skip_row("no_mapping", f"a row at step {step} is {shown(metrics)}, not a mapping of keys to "
                                         f"values: skipped (rows like it are skipped)")
            return []
        if self._step is not None and step < self._step:
            self._skip(step)
            return []
        every: list[RuleRunner] = []
        if step != self._step:
            self._close_step()
            self._step, self._row = step, {}
            every = self._every_step  # a new logged step: an evaluation of each `absent` rule
        changed = self._merge(step, metrics)
        if not changed and not every:
            return []
        touched = {runner.position: runner for runner in every} if every else {}
        readers, deciding = self._readers, self._resolvers_of  # `deciding` is empty once aliases are chosen
        for key in changed:
            if deciding:
                for resolver in deciding.get(key, ()):
                    if resolver.resolve(step, self._row):
                        for runner in self._readers_of_resolver[id(resolver)]:
                            touched[runner.position] = runner
            for runner in readers.get(key, ()):
                touched[runner.position] = runner
        events: list[AlertEvent] = []
        series = self._series
        for position in sorted(touched):
            runner = touched[position]
            if runner.disabled:
                continue
            try:  # inline rather than a method: this loop is most of an update's cost
                found = runner.run_step(step, series)
            except Exception as exc:  # one broken rule must not silence the others
                self._fault(runner, step, exc)
                continue
            if found:
                events.extend(found)
        return events

    def replay(self, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[AlertEvent]:
        """Feed a whole log of (step, metrics) rows in file order, then finish.

        Rows are put in step order first (a stable sort: rows of one step keep
        their file order, so the later one still wins a key). That is the batch
        engine's merge of docs/language.md §2, steps that go back (a resumed run) included.
        """
        placed = [(self._step_of(step), metrics) for step, metrics in rows]  # each odd step noted once
        events: list[AlertEvent] = []
        for step, metrics in sorted(((s, m) for s, m in placed if s is not None), key=lambda row: row[0]):
            events.extend(self.update(step, metrics))
        return events + self.finish()

    def finish(self) -> list[AlertEvent]:
        """End of the log. Nothing is pending (rows are evaluated as they come): no events."""
        self._close_step()
        return []

    def episodes(self) -> list[dict[str, Any]]:
        """Every episode so far, closed and open, as `ruledsl.audit` records (same order: first_step,
        rule, then metric; the run is this monitor's)."""
        records = [runner.record(e) for runner in self._runners for e in runner.episodes()]
        return sorted(records, key=lambda r: (r["first_step"], r["rule"], r["metric"] or ""))

    def open_episodes(self) -> list[dict[str, Any]]:
        """The episodes still firing (no evaluation has ended them yet), as `episodes()` records, in
        its order: what a resumed or interrupted run has open."""
        records = [runner.record(runner.state.open) for runner in self._runners if runner.state.open is not None]
        return sorted(records, key=lambda r: (r["first_step"], r["rule"], r["metric"] or ""))

    def coverage(self) -> list[CoverageRecord]:
        """The rules not evaluated on the run so far (none at a step ≥ their min_steps), and why:
        docs/language.md §4, the records an audit's coverage gives for the rows fed so far, ordered
        by rule, then metric (reasons: when_false, config_unknown, no_key, no_joint_rows,
        too_short, the first that applies). Computed now, from what the monitor keeps; after
        the last row, the rules that could never fire on the run."""
        return uncovered(self.run, self.not_evaluated, self._runners, self._pattern_rules, self._watches,
                         self._keys)

    # ------------------------------------------------------------ building

    def _bind(self, config: Mapping[str, Any]) -> list[CompiledRule]:
        """The rules as they run with this configuration; the others noted in `not_evaluated`."""
        bound = []
        for compiled in self.rule_set:
            rule = bind(compiled, config)
            if isinstance(rule, NotEvaluated):
                self.not_evaluated[compiled.rule.name] = rule
            else:
                bound.append(rule)
        return bound

    def _runner(self, compiled: CompiledRule, key: str | None = None) -> RuleRunner:
        """A rule's runner; for a pattern rule, its runner on the matched `key` (no aliases)."""
        candidates = {compiled.rule.metric or "": (key,)} if key is not None else compiled.candidates
        resolvers = {name: self._resolvers.setdefault(tuple(keys), Resolver(tuple(keys)))
                     for name, keys in candidates.items()}
        runner = RuleRunner(compiled, 0, resolvers, self.rule_set.trainer, self.run)
        self._watches[runner] = Watch(runner)
        return runner

    def _place(self) -> None:
        """Number the runners in rule order (a pattern rule's runners by key): events come so."""
        def placing(runner: RuleRunner) -> tuple[int, str]:
            pattern = is_pattern_rule(runner.compiled)
            return self._rank[runner.rule.name], runner.resolvers[0].candidates[0] if pattern else ""
        self._runners.sort(key=placing)
        for position, runner in enumerate(self._runners):
            runner.position = position

    def _provide(self, runner: RuleRunner) -> None:
        """A series for each key the runner may read, big enough for it and every other reader."""
        for resolver, size, firsts in runner.needs():
            for key in resolver.candidates:
                old = self._series.get(key)
                if old is None:
                    self._series[key] = Series(key, size, firsts)
                elif size > old.capacity or not firsts <= old.baseline_windows:
                    # only a pattern rule's runner arrives late, at its key's first value: nothing is lost
                    assert old.raw_count == 0
                    self._series[key] = Series(key, max(size, old.capacity), firsts | old.baseline_windows)

    def _index(self, open_step: int | None) -> None:
        """Who reads what: key → resolvers still choosing it, key → rules that may read it.

        `open_step` is the step whose rows may still change an alias chosen at it (None: every
        choice made so far is final).
        """
        self._resolvers_of: dict[str, list[Resolver]] = {}
        self._readers: dict[str, list[RuleRunner]] = {}
        self._readers_of_resolver: dict[int, list[RuleRunner]] = {}
        self._every_step = [r for r in self._runners if r.every_step and not r.disabled]
        for runner in self._runners:
            if runner.disabled:
                continue
            for resolver in runner.resolvers:
                self._readers_of_resolver.setdefault(id(resolver), []).append(runner)
                chosen = resolver.key if resolver.settled(open_step) else None
                for key in (chosen,) if chosen is not None else resolver.candidates:
                    if runner not in self._readers.setdefault(key, []):
                        self._readers[key].append(runner)
        for resolver in self._resolvers.values():
            if resolver.key is None or not resolver.settled(open_step):
                for key in resolver.candidates:
                    self._resolvers_of.setdefault(key, []).append(resolver)
        for key in [k for k in self._series if k not in self._readers]:
            del self._series[key]  # a candidate no rule chose: its values are never needed

    # ------------------------------------------------------------ a step

    def _merge(self, step: int, metrics: Mapping[str, Any]) -> list[str]:
        """Merge the row into the step's row; the keys whose value changed."""
        if not self._keys.issuperset(metrics):  # one C-level test; a new key is rare after the first rows
            self._new_keys(metrics)
        changed = []
        row, series = self._row, self._series
        for key, raw in metrics.items():
            target = series.get(key)
            if target is None:
                continue  # no rule reads it
            value = raw if type(raw) is float else metric_value(raw)
            if value is None:
                if raw is None and key in row:  # a later null at the step: the key is absent there
                    del row[key]
                    target.retract(step)
                    changed.append(key)
                elif raw is not None:
                    self._no_value(key, step, raw)
                continue
            old = row.get(key)
            if old is not None and _same_value(old, value):
                continue
            row[key] = value
            target.put(step, value)
            changed.append(key)
        return changed

    def _new_keys(self, metrics: Mapping[str, Any]) -> None:
        """The row's keys that have their first value in the run: remembered (for coverage), and
        the pattern rules that match one started on it (before the row is merged)."""
        for key in [k for k in metrics if k not in self._keys]:
            if not isinstance(key, str):
                self._noted_keys.note(key, f"a key that is no text, {shown(key)}, is skipped (no rule can name it)")
                continue
            raw = metrics[key]
            if metric_value(raw) is None:
                if raw is not None and key not in self._series and self._pattern_reads(key):
                    self._no_value(key, self._step, raw)  # a pattern rule would have started on it
                continue  # not a value (None, text): the key has not appeared yet
            self._keys.add(key)
            if self._patterns is not None:
                self._first_value(key, self._patterns)

    def _pattern_reads(self, key: str) -> bool:
        """Whether a pattern rule matches `key` (asked only of a key whose value is no number)."""
        return self._patterns is not None and any(regex.match(key) for _, regex in self._patterns.rules)

    def _first_value(self, key: str, patterns: PatternRules) -> None:
        """A key's first value in the run: start the pattern rules that match it (its series with them)."""
        runners = [self._runner(compiled, key) for compiled in patterns.first_value(key)]
        if not runners:
            return
        for runner in runners:
            self._provide(runner)
        self._runners.extend(runners)
        self._place()
        self._index(self._step)

    def _fault(self, runner: RuleRunner, step: int, exc: Exception) -> None:
        """A rule raised: switched off (its episodes so far kept) and reported once in `faults`."""
        runner.disabled = True
        self.faults.append(Fault(runner.rule.name, step, f"{type(exc).__name__}: {exc}"))
        self._index(self._step)

    def _close_step(self) -> None:
        """The current step is over: aliases chosen at it are final, unchosen keys are dropped."""
        if self._step is None:
            return
        if any(r.step == self._step for r in self._resolvers.values()):
            self._index(open_step=None)

    def _skip(self, step: int) -> None:
        self._skip_row("goes_back", f"step {step} came after step {self._step}: rows whose step goes back "
                                    f"are skipped (a resumed run should get a new Monitor)")

    def _step_of(self, given: Any) -> int | None:
        """The training step a row's step names (cut to its whole part, noted once), or None
        when it names none: the row is skipped, counted and noted once."""
        step, cut = read_step(given)
        if step is None:
            self._skip_row("no_step", f"a row's step, {shown(given)}, names no training step (a whole number "
                                      f"within 64 bits): skipped, as an audit skips it (rows like it are skipped)")
        elif cut:
            self._note_row("cut_step", f"step {shown(given)} is not a whole number: read as step {step}, as an "
                                       f"audit reads it (steps like it are cut)")
        return step

    def _skip_row(self, kind: str, text: str) -> None:
        self.skipped_rows += 1
        self._note_row(kind, text)

    def _note_row(self, kind: str, text: str) -> None:
        if kind not in self._noted_rows:
            self._noted_rows.add(kind)
            self.notices.append(text)

    def _no_value(self, key: str, step: int | None, raw: Any) -> None:
        """A rule may read `key`, whose value at `step` is no number: noted once per key."""
        where = f" at step {step}" if step is not None else ""
        self._noted_keys.note(key, f"{shown(key)}{where} is {why_no_value(raw)}, not a number: skipped for that "
                                   f"row (and wherever {shown(key)} holds no number)")


def _same_value(a: float, b: float) -> bool:
    if a != a:
        return b != b
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
