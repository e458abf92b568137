"""The content of a full report (markdown, html), independent of its markup.

A report has a headline (runs, rules, trainer), episode counts per severity,
the table of alert records, one chart per alerted (run, metric) with the
alerts it shows, the rules that fired with their descriptions, and per run the
rules never evaluated there (docs/language.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ruledsl.alerts import severity_rank
from ruledsl.model.rule import Rule
from ruledsl.report.charts import line_chart
from ruledsl.report.context import ReportContext, panels, window_mean
from ruledsl.report.coverage import RunCoverage, by_run
from ruledsl.report.records import plain_record, plain_records
from ruledsl.report.table import headline, severity_counts


@dataclass(frozen=True)
class Chart:
    run: Any
    key: str
    svg: str
    alerts: list[dict]  # the plain records drawn on it


@dataclass(frozen=True)
class Document:
    headline: str
    counts: list[tuple[str, int]]
    records: list[dict]
    charts: list[Chart]
    fired: list[Rule]  # the rules with at least one alert, in order of first appearance
    uncharted: int = 0  # alerted (run, metric) pairs left without a chart by the cap
    coverage: list[RunCoverage] = field(default_factory=list)  # per run, the rules never evaluated there


def build(records: pl.DataFrame, context: ReportContext) -> Document:
    by_name = {rule.name: rule for rule in context.rules}
    fired = [by_name[name] for name in dict.fromkeys(records["rule"].to_list()) if name in by_name]
    found = panels(records, context)
    kept = charted(found, context.max_charts)
    return Document(headline(context), severity_counts(records), plain_records(records),
                    [_chart(p) for p in kept], fired, uncharted=len(found) - len(kept),
                    coverage=by_run(context.coverage))


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
    return (f"Charts of {len(doc.charts)} of {len(doc.charts) + doc.uncharted} alerted metrics, those of the "
            "most severe alerts first; the table above lists every alert (--max-charts sets the number).")


def _chart(panel) -> Chart:
    mean, mean_label = None, ""
    if len(panel.windows) == 1:  # the rules compare a window mean with their levels: draw it too
        (window,) = panel.windows
        mean, mean_label = window_mean(panel.series, window), f"mean of {window}"
    svg = line_chart(panel.series, panel.bands, panel.levels, title=f"{panel.run} · {panel.key}",
                     mean=mean, mean_label=mean_label)
    return Chart(panel.run, panel.key, svg, [plain_record(r) for r in panel.records])


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
