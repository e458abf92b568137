"""The content of a full report (markdown, html), independent of its markup.

A report has its provenance (version, command, time, inputs, rule sources), a headline
(runs, rules, trainer), episode counts per severity, every audited run with its status
(healthy runs too), the table of alert records (the most severe first), one chart per
alerted (run, metric) with the alerts it shows and, per alerted run, charts of its loss
and learning rate for context, the rules that fired with their descriptions, and per run
the rules never evaluated there (docs/language.md §4).

Each chart is kept twice: as a static SVG (markdown, and the HTML report where scripts do
not run) and as data for the HTML report's interactive chart (`plotdata.chart_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ruledsl.alerts import SEVERITIES, severity_rank
from ruledsl.model.rule import Rule
from ruledsl.report.charts import Band, line_chart
from ruledsl.report.context import Panel, ReportContext, panels, window_mean
from ruledsl.report.coverage import RunCoverage, by_run, counts_text
from ruledsl.report.plotdata import Trace, chart_spec
from ruledsl.report.provenance import Provenance
from ruledsl.report.records import plain_record, plain_records
from ruledsl.report.runs import RunInfo, logged_series
from ruledsl.report.table import headline, severity_counts

CONTEXT_KEYS = ("loss", "learning_rate")  # charted per alerted run, to read its alerts against


@dataclass(frozen=True)
class Chart:
    run: Any
    key: str
    svg: str
    alerts: list[dict]  # the plain records drawn on it
    spec: dict = field(default_factory=dict)  # the interactive chart's data (plotdata.chart_spec)
    kind: str = "alert"  # alert: an alerted metric; context: the run's loss or learning rate


@dataclass(frozen=True)
class RunRow:
    """An audited run as the runs table shows it."""

    run: Any
    trainer: str | None
    how: str  # how the trainer was decided
    n_rules: int
    counts: list[tuple[str, int]]  # (severity, episodes), worst first, those > 0
    not_evaluated: str  # "3 no_key, 1 too_short" or ""

    @property
    def status(self) -> str:
        alerts = ", ".join(f"{n} {s}" for s, n in self.counts) if self.counts else "no alerts"
        return alerts + (f"; not evaluated: {self.not_evaluated}" if self.not_evaluated else "")

    @property
    def worst(self) -> str | None:
        return self.counts[0][0] if self.counts else None


@dataclass(frozen=True)
class Document:
    headline: str
    counts: list[tuple[str, int]]
    records: list[dict]  # the most severe first, then by run and first step
    charts: list[Chart]
    fired: list[Rule]  # the rules with at least one alert, in order of first appearance
    uncharted: int = 0  # alerted (run, metric) pairs left without a chart by the cap
    coverage: list[RunCoverage] = field(default_factory=list)  # per run, the rules never evaluated there
    runs: list[RunRow] = field(default_factory=list)  # every audited run, the most severe first
    provenance: Provenance | None = None


def build(records: pl.DataFrame, context: ReportContext) -> Document:
    by_name = {rule.name: rule for rule in context.rules}
    fired = [by_name[name] for name in dict.fromkeys(records["rule"].to_list()) if name in by_name]
    found = panels(records, context)
    kept = charted(found, context.max_charts)
    plain = by_severity(plain_records(records))
    rows = run_rows(plain, context)
    charts = [_chart(p, _healthy_overlay(p, rows, context)) for p in kept]
    charts = _with_context(charts, context)
    return Document(headline(context), severity_counts(records), plain, charts, fired,
                    uncharted=len(found) - len(kept), coverage=by_run(context.coverage), runs=rows,
                    provenance=context.provenance)


def by_severity(records: list[dict]) -> list[dict]:
    """The records, the most severe first; then in the engine's order (run, first step, rule)."""
    return sorted(records, key=lambda r: -severity_rank(r["severity"]))


def run_rows(records: list[dict], context: ReportContext) -> list[RunRow]:
    """Every audited run (those with alerts and those without), the most severe first, then by name."""
    infos = list(context.runs) or [RunInfo(run, r["trainer"], "unknown", context.n_rules)
                                   for run, r in {r["run"]: r for r in records}.items()]
    per_run: dict[Any, dict[str, int]] = {}
    for record in records:
        counts = per_run.setdefault(record["run"], {})
        counts[record["severity"]] = counts.get(record["severity"], 0) + 1
    missing: dict[Any, list] = {}
    for entry in context.coverage:
        if entry.reason != "when_false":
            missing.setdefault(entry.run, []).append(entry)
    rows = [RunRow(info.run, info.trainer, info.how, info.n_rules, _worst_first(per_run.get(info.run, {})),
                   counts_text(missing.get(info.run, []))) for info in infos]
    return sorted(rows, key=lambda row: (-max((severity_rank(s) for s, _ in row.counts), default=-1), str(row.run)))


def charted(found: list, limit: int) -> list:
    """At most `limit` panels: those of the most severe alerts (then the earliest), kept in
    their order. An archive with hundreds of alerted runs would otherwise make a report of
    many megabytes that no one scrolls through."""
    if len(found) <= limit:
        return found
    worst = [max(severity_rank(r["severity"]) for r in panel.records) for panel in found]
    chosen = sorted(range(len(found)), key=lambda j: (-worst[j], j))[:limit]
    return [found[j] for j in sorted(chosen)]


COVERAGE_INTRO = ("Rules that could never fire on a run, and why (docs/language.md §4): no key of their "
                  "metric logged, a configuration key missing, metrics never logged at one step, or too "
                  "few values. Rules whose when condition is false do not apply to the run and are listed apart.")


def uncharted_text(doc: Document) -> str:
    """The sentence saying how many alerted metrics have no chart, or ''."""
    if not doc.uncharted:
        return ""
    shown = sum(1 for c in doc.charts if c.kind == "alert")  # the context charts are no alerted metric's
    return (f"Charts of {shown} of {shown + doc.uncharted} alerted metrics, those of the "
            "most severe alerts first; the table above lists every alert (--max-charts sets the number).")


def _worst_first(counts: dict[str, int]) -> list[tuple[str, int]]:
    return [(s, counts[s]) for s in reversed(SEVERITIES) if counts.get(s)]


def _chart(panel: Panel, healthy: Trace | None = None) -> Chart:
    mean, mean_label = None, ""
    if len(panel.windows) == 1:  # the rules compare a window mean with their levels: draw it too
        (window,) = panel.windows
        mean, mean_label = window_mean(panel.series, window), f"mean of {window}"
    title = f"{panel.run} · {panel.key}"
    svg = line_chart(panel.series, panel.bands, panel.levels, title=title, mean=mean, mean_label=mean_label)
    traces = [Trace(panel.key, "value", panel.series)]
    if mean is not None:
        traces.append(Trace(mean_label, "mean", mean))
    if healthy is not None:
        traces.append(healthy)
    nonfinite = panel.series.filter(~pl.col("value").is_finite())["step"].to_list()
    spec = chart_spec(title, panel.key, traces, panel.bands, panel.levels, nonfinite)
    return Chart(panel.run, panel.key, svg, [plain_record(r) for r in panel.records], spec)


def _healthy_overlay(panel: Panel, rows: list[RunRow], context: ReportContext) -> Trace | None:
    """The same metric in a run of the same trainer with no alert (the first by name), to
    compare with: what this metric looks like when training goes well."""
    trainer = panel.records[0]["trainer"]
    if trainer is None or not context.sources:
        return None
    for row in sorted(rows, key=lambda r: str(r.run)):
        if row.trainer == trainer and not row.counts and row.run != panel.run:
            series = logged_series(context.sources, row.run, panel.key)
            if series is not None:
                return Trace(f"healthy run {row.run}", "healthy", series)
    return None


def _with_context(charts: list[Chart], context: ReportContext) -> list[Chart]:
    """After each alerted run's charts, its loss and learning rate where it logs them and no
    alert chart shows them already: what the rest of training did while the alert held."""
    if not context.sources:
        return charts
    out: list[Chart] = []
    for index, chart in enumerate(charts):
        out.append(chart)
        last_of_run = index + 1 == len(charts) or charts[index + 1].run != chart.run
        if not last_of_run:
            continue
        of_run = [c for c in charts if c.run == chart.run]
        bands = list({(b["first"], b["last"], b["severity"]): Band(b["first"], b["last"], b["severity"], b["label"])
                      for c in of_run for b in c.spec.get("bands", [])}.values())
        for key in CONTEXT_KEYS:
            series = None if key in {c.key for c in of_run} else logged_series(context.sources, chart.run, key)
            if series is not None:
                out.append(_context_chart(chart.run, key, series, bands))
    return out


def _context_chart(run: Any, key: str, series: pl.DataFrame, bands: list[Band]) -> Chart:
    """A run's `key` for context, with the episodes of the run's alerts shaded on it."""
    title = f"{run} · {key} (context)"
    nonfinite = series.filter(~pl.col("value").is_finite())["step"].to_list()
    spec = chart_spec(title, key, [Trace(key, "value", series)], bands, [], nonfinite, kind="context")
    return Chart(run, key, "", [], spec, kind="context")


def run_heading(chart: Chart) -> str:
    trainer = chart.alerts[0]["trainer"]
    return f"Run {chart.run}" + (f" (trainer {trainer})" if trainer else " (trainer unknown)")


def condition_text(rule: Rule) -> str:
    """The condition as a reader needs it: a shorthand with the metric it applies to."""
    source = rule.condition.text
    return f"{rule.metric} {source}" if rule.condition.is_shorthand and rule.metric else source


def steps_text(record: dict) -> str:
    first, last = record["first_step"], record["last_step"]
    return f"{first}–{last}" if first != last else str(first)


def value_text(record: dict) -> str:
    value = record["value"]
    return f"{value:.6g}" if isinstance(value, float) else str(value)
