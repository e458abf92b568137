"""What a report needs besides the alert records: the audited logs, the rules and the coverage.

`ReportContext` is handed to every renderer. The plotting formats (markdown,
html) turn it into `Panel`s: one per alerted (run, metric key), carrying that
metric's raw series, the episodes to shade on it and the threshold levels to draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ruledsl.alerts import CoverageRecord
from ruledsl.compile import CompiledRule, compile_rules
from ruledsl.engines.batch.frames import KEY, RUN, STEP, VALUE, LogFrame, to_log_frame
from ruledsl.lang import ast
from ruledsl.model.rule import Rule
from ruledsl.readers.common import Source
from ruledsl.report.charts import Band, Level
from ruledsl.report.provenance import Provenance
from ruledsl.report.runs import RunInfo


@dataclass(frozen=True)
class ReportContext:
    frame: Any  # the audited log frame: run, step and one column per metric key (or long form)
    rules: Sequence[Rule]  # the rules the audit ran, as loaded
    n_runs: int
    trainer: str | None = None
    terminal: bool = False  # the report goes to a terminal: icons (and colour unless NO_COLOR)
    max_charts: int = 100  # charts in a markdown or html report, the most severe alerts first
    # the rules never evaluated on a run, and why (docs/language.md §4): the "not evaluated" sections
    coverage: Sequence[CoverageRecord] = ()
    # every audited run (report.runs.run_infos); empty: the runs with alerts, from their records
    runs: Sequence[RunInfo] = ()
    provenance: Provenance | None = None  # version, command, time, inputs, rule sources
    sources: Sequence[Source] = ()  # what the audit read: series the charts show besides the alerted ones

    @property
    def n_rules(self) -> int:
        return len(self.rules)


@dataclass
class Panel:
    run: Any
    key: str  # the log key plotted
    series: pl.DataFrame  # step, value (raw, non-finite values kept)
    records: list[dict] = field(default_factory=list)  # the alert records shown on this panel
    bands: list[Band] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    windows: set[int] = field(default_factory=set)  # windows of the shorthand comparisons drawn


def panels(records: pl.DataFrame, context: ReportContext) -> list[Panel]:
    """One panel per alerted (run, metric key), in run order, then by first alert."""
    if records.is_empty():
        return []
    rule_sets: dict[str | None, dict[str, CompiledRule]] = {}  # each record's rule as its trainer compiled it
    for trainer in records["trainer"].unique().to_list():
        rule_sets[trainer] = {c.rule.name: c for c in compile_rules(context.rules, trainer=trainer)}
    # a record of a rule the context does not hold (a report given fewer rules than the audit ran) has no chart
    rows = [r for r in records.iter_rows(named=True) if r["rule"] in rule_sets[r["trainer"]]]
    series = _SeriesByRun(_alerted_part(context.frame, rows, rule_sets))
    found: dict[tuple[Any, str], Panel] = {}
    for record in rows:
        rule = rule_sets[record["trainer"]][record["rule"]]
        for key, values in _plotted_series(series, rule, record):
            panel = found.get((record["run"], key))
            if panel is None:
                panel = found[(record["run"], key)] = Panel(record["run"], key, values)
            _add(panel, rule, record)
    return sorted(found.values(), key=lambda p: (str(p.run), p.records[0]["first_step"], p.key))


def _alerted_part(frame: Any, rows: list[dict], rule_sets: dict) -> LogFrame:
    """The log restricted to the alerted runs and, in wide form, to the keys a chart may show."""
    lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    if not isinstance(lazy, pl.LazyFrame):  # e.g. a pandas frame: normalize it whole
        return to_log_frame(frame)
    columns = lazy.collect_schema().names()
    if RUN in columns:
        lazy = lazy.filter(pl.col(RUN).is_in([r["run"] for r in rows]))
    if KEY not in columns:
        keys = {r["metric"] for r in rows if r["metric"] is not None}
        for r in rows:
            if r["metric"] is None:
                keys.update(k for ks in rule_sets[r["trainer"]][r["rule"]].candidates.values() for k in ks)
        lazy = lazy.select(c for c in columns if c in (RUN, STEP) or c in keys)
    return to_log_frame(lazy)


class _SeriesByRun:
    """Raw series (step, value, key) per run, one query per candidate tuple for all runs at once."""

    EMPTY = pl.DataFrame(schema={STEP: pl.Int64, VALUE: pl.Float64, KEY: pl.String})

    def __init__(self, log: LogFrame):
        self.log = log
        self.found: dict[tuple[str, ...], dict[Any, pl.DataFrame]] = {}

    def get(self, candidates: tuple[str, ...], run: Any) -> pl.DataFrame:
        if candidates not in self.found:
            raw = self.log.raw_series(candidates)
            parts = raw.collect().partition_by(RUN, as_dict=True) if raw is not None else {}
            self.found[candidates] = {run_key[0]: part.select(STEP, VALUE, KEY) for run_key, part in parts.items()}
        return self.found[candidates].get(run, self.EMPTY)


def _plotted_series(series: _SeriesByRun, compiled: CompiledRule, record: dict):
    """(key, step/value series) of each metric the record's rule reads, in its run."""
    if record["metric"] is not None:  # a shorthand: the key it resolved to
        yield record["metric"], series.get((record["metric"],), record["run"]).select(STEP, VALUE)
        return
    for name in compiled.rule.metrics:  # a full expression: each metric it names, resolved as the engine does
        rows = series.get(compiled.candidates[name], record["run"])
        if not rows.is_empty():
            yield rows[KEY][0], rows.select(STEP, VALUE)


def _add(panel: Panel, compiled: CompiledRule, record: dict) -> None:
    rule = compiled.rule
    panel.records.append(record)
    panel.bands.append(Band(record["first_step"], record["last_step"], rule.severity, rule.name))
    if record["metric"] is None:
        return  # a full expression: no single level of this metric to draw
    for level in levels_of(rule, panel.series):
        if level not in panel.levels:
            panel.levels.append(level)
            if rule.window > 1:
                panel.windows.add(rule.window)


def levels_of(rule: Rule, series: pl.DataFrame | None = None) -> list[Level]:
    """The levels of the metric at which a shorthand rule's terms switch.

    `< c` and the like: c (for the first term, the spec's `threshold`, as
    `engine.threshold_of` gives it); `range`/`outside`: both bounds;
    `drop(P%)`/`rise(P%)`: B ∓ |B|·P/100, with B the mean of the run's first W
    values (`series`), which the window mean crosses when the rule fires.
    Factors (`spike`) and tolerances (`flat`) are not levels of the metric: no line.
    """
    if not rule.condition.is_shorthand:
        return []
    found: list[Level] = []
    for term in ast.leaves(rule.condition.body):
        if isinstance(term, ast.ShorthandCompare):
            found.append(Level(term.threshold.value, rule.severity, f"{term.op} {term.threshold.value:g}", rule.name))
        elif isinstance(term, ast.Between):
            word = "range" if term.inside else "outside"
            for bound in (term.low.value, term.high.value):
                found.append(Level(bound, rule.severity, f"{word} {bound:g}", rule.name))
        elif isinstance(term, ast.Change) and series is not None:
            found += _change_level(rule, term, series)
    return found


def _change_level(rule: Rule, term: ast.Change, series: pl.DataFrame) -> list[Level]:
    first = series.filter(pl.col(VALUE).is_finite())[VALUE].head(rule.window).to_list()
    if len(first) < rule.window:
        return []
    total = 0.0
    for value in first:  # left to right, as the engines compute B
        total += value
    baseline = total / rule.window
    if baseline == 0:
        return []
    share = term.percent.value / 100
    level = baseline - abs(baseline) * share if term.direction == "drop" else baseline + abs(baseline) * share
    return [Level(level, rule.severity, f"{term.direction} {term.percent.value:g}% of {baseline:.3g}", rule.name)]


def window_mean(series: pl.DataFrame, window: int) -> pl.DataFrame:
    """The W-value mean of the finite values, as a shorthand comparison sees it (for drawing only)."""
    finite = series.filter(pl.col(VALUE).is_finite())
    return finite.select(STEP, pl.col(VALUE).rolling_mean(window)).drop_nulls()
