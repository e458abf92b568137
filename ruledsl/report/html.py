"""A self-contained HTML report: inline CSS, inline scripts and data, nothing fetched.

Layout (docs/report.md): a header saying what a reader needs to trust the report (ruledsl
version, command, time, inputs, rule sources) and the episodes per severity; the chart of
the most severe alert, so that a chart is on the first screen; every audited run with its
status (healthy runs too); the alerts, the most severe first, each message on a row of its
own under its alert, across the whole table, so that no column is squeezed to a word a
line; then per alerted run its charts (the alerted metrics, its loss and learning rate);
the rules that fired; the rules never evaluated. The page is at most 80 rem wide and wraps
what is wider (long run ids and metric keys break after a `/`): no sideways scroll at
1280 px.

Charts are interactive (uPlot, vendored in assets/ with its licence, inlined): hover for
step and values, drag to zoom, a log scale. Each chart also carries its static SVG, shown
when scripts do not run (a viewer or a CSP that blocks them).

Every text goes through `escape` (html-escaped, control characters shown as \\x..
escapes); the charts' data is JSON in a <script type="application/json"> element, escaped
by `plotdata.script_json` so that no run name can close it. Prose from rule files is put
on one line first, so that its line breaks read as the spaces HTML makes of them.
"""

from __future__ import annotations

import functools
from importlib import resources

from ruledsl.alerts import CoverageRecord, severity_rank
from ruledsl.report.charts import SEVERITY_COLOURS, escape
from ruledsl.report.document import (
    COVERAGE_INTRO,
    Chart,
    Document,
    RunRow,
    condition_text,
    steps_text,
    uncharted_text,
    value_text,
)
from ruledsl.report.plotdata import script_json
from ruledsl.report.text import one_line

UPLOT_VERSION = "1.6.32"

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 80rem;
       color: #1f2328; line-height: 1.4; overflow-wrap: break-word; }
h1 { font-size: 1.5rem; margin: 0.3rem 0; } h2 { font-size: 1.2rem; margin: 1.8rem 0 0.5rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; } h4 { font-size: 0.95rem; margin: 0 0 0.3rem; }
table { border-collapse: collapse; margin: 0.4rem 0 1rem; width: 100%; }
th, td { border-bottom: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
tr.message td { border-bottom: 1px solid #d0d7de; color: #1f2328; padding: 0 0.5rem 0.5rem 1.5rem; }
tr.alert td { border-bottom: none; padding-top: 0.45rem; }
.sev { font-weight: bold; white-space: nowrap; }
.chips { display: flex; flex-wrap: wrap; gap: 0.4rem; margin: 0.5rem 0; }
.chip { border: 1px solid #d0d7de; border-radius: 1rem; padding: 0.05rem 0.7rem; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 0.8rem; margin: 0.5rem 0;
                font-size: 0.85rem; color: #57606a; }
dl.provenance dt { font-weight: 600; } dl.provenance dd { margin: 0; min-width: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 34rem), 1fr)); gap: 1rem; }
.chart { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6rem; min-width: 0; }
.chart.featured { margin: 0.5rem 0 1rem; }
.chart ul { margin: 0.3rem 0 0; padding-left: 1.2rem; font-size: 0.9rem; }
.controls { font-size: 0.8rem; color: #57606a; display: flex; gap: 1rem; flex-wrap: wrap; }
.plot { min-height: 240px; }
.static svg { max-width: 100%; height: auto; }
html.scripted .static { display: none; }
html:not(.scripted) .plot, html:not(.scripted) .controls { display: none; }
.u-legend { font-size: 0.8rem; text-align: left; }
.u-legend .u-series { overflow-wrap: anywhere; }
.description { color: #57606a; }
.healthy { color: #2da44e; }
code { background: #f6f8fa; padding: 0 0.2rem; font-size: 0.9em; }
"""

SEVERITY_ORDER = ("critical", "high", "medium", "low")


def to_html(doc: Document) -> str:
    specs = [c.spec for c in doc.charts]
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>ruledsl audit report</title>", f"<style>{STYLE}{_asset('uPlot.min.css')}</style>",
             "</head>", "<body>"]
    parts += _header(doc)
    parts += _featured(doc)
    parts += _runs(doc)
    if doc.records:
        parts += _alerts(doc)
        parts += _charts(doc)
        parts += _rules(doc)
    else:
        parts.append("<p>No alerts.</p>")
    parts += _coverage(doc)
    parts += [f'<script type="application/json" id="ruledsl-charts">{script_json(specs)}</script>',
              f"<script>/* uPlot {UPLOT_VERSION}, MIT licence (c) Leon Sorokin */\n"
              f"{_asset('uPlot.iife.min.js')}</script>",
              f"<script>{_asset('report.js')}</script>",
              "</body>", "</html>"]
    return "\n".join(parts) + "\n"


@functools.cache
def _asset(name: str) -> str:
    """A file of ruledsl/report/assets, shipped in the wheel."""
    return resources.files("ruledsl.report").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


# ---------------------------------------------------------------- header


def _header(doc: Document) -> list[str]:
    out = ["<header>", "<h1>ruledsl audit report</h1>", f'<p class="headline">{escape(doc.headline)}.</p>']
    out += _summary(doc)
    if doc.provenance is not None:
        p = doc.provenance
        rows = [("ruledsl", p.version), ("command", p.command), ("time", p.time),
                ("inputs", ", ".join(p.inputs)), ("rules", ", ".join(p.rule_sources))]
        out.append('<dl class="provenance">' + "".join(
            f"<dt>{name}</dt><dd>{_code(value) if name == 'command' else escape(value)}</dd>"
            for name, value in rows) + "</dl>")
    return out + ["</header>"]


def _summary(doc: Document) -> list[str]:
    chips = "".join(f'<span class="chip" data-severity="{s}">{_severity(s)} {n}</span>' for s, n in doc.counts)
    total = f'<span class="chip"><strong>total</strong> {len(doc.records)} alert episode(s)</span>'
    return [f'<div class="chips" id="summary" aria-label="alert episodes per severity"><strong>Summary</strong>'
            f"{chips}{total}</div>"]


def _featured(doc: Document) -> list[str]:
    """The chart of the most severe alert (its first), right under the header."""
    alerted = [(j, c) for j, c in enumerate(doc.charts) if c.kind == "alert" and c.alerts]
    if not alerted:
        return []
    j, chart = max(alerted, key=lambda item: (max(severity_rank(r["severity"]) for r in item[1].alerts), -item[0]))
    return [f'<div class="chart featured" data-chart="{j}">',
            f"<h4>Most severe: run {_path(chart.run)} · <code>{_path(chart.key)}</code></h4>",
            *_plot(chart, static=False), _alert_list(chart), "</div>"]


# ---------------------------------------------------------------- runs and alerts


def _runs(doc: Document) -> list[str]:
    if not doc.runs:
        return []
    healthy = sum(1 for r in doc.runs if not r.counts)
    rows = "\n".join(_run_row(r) for r in doc.runs)
    return ['<h2 id="runs">Runs</h2>',
            f"<p>{len(doc.runs)} run(s) audited, {len(doc.runs) - healthy} with alerts, {healthy} without.</p>",
            "<table><thead><tr><th>run</th><th>status</th><th>trainer</th><th>decided by</th>"
            f'<th class="num">rules</th></tr></thead><tbody>\n{rows}\n</tbody></table>']


def _run_row(row: RunRow) -> str:
    alerts = (", ".join(f"{n} {_severity(s)}" for s, n in row.counts) if row.counts
              else '<span class="healthy">no alerts</span>')
    missing = f"; not evaluated: {escape(row.not_evaluated)}" if row.not_evaluated else ""
    return (f'<tr class="run" data-run="{escape(row.run)}" data-status="{escape(row.worst or "ok")}">'
            f"<td>{_path(row.run)}</td><td>{alerts}{missing}</td><td>{escape(row.trainer or 'unknown')}</td>"
            f'<td>{escape(row.how)}</td><td class="num">{row.n_rules}</td></tr>')


COLUMNS = ("severity", "run", "rule", "metric", "steps", "evaluations", "value")


def _alerts(doc: Document) -> list[str]:
    head = "".join(f'<th class="num">{c}</th>' if c in ("evaluations", "value") else f"<th>{c}</th>" for c in COLUMNS)
    rows = "\n".join(_alert_rows(r) for r in doc.records)
    return ['<h2 id="alerts">Alerts</h2>', "<p>The most severe first; each message under its alert.</p>",
            f'<table class="alerts"><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>']


def _alert_rows(record: dict) -> str:
    metric = f"<code>{_path(record['metric'])}</code>" if record["metric"] is not None else "(expression)"
    cells = [_severity(record["severity"]), _path(record["run"]), f"<code>{_path(record['rule'])}</code>", metric,
             escape(steps_text(record))]
    numbers = [str(record["n_evals"]), escape(value_text(record))]
    return (f'<tr class="alert" data-severity="{escape(record["severity"])}">'
            + "".join(f"<td>{c}</td>" for c in cells) + "".join(f'<td class="num">{n}</td>' for n in numbers)
            + f'</tr>\n<tr class="message"><td colspan="{len(COLUMNS)}">{escape(record["message"])}</td></tr>')


# ---------------------------------------------------------------- charts


def _charts(doc: Document) -> list[str]:
    out = ['<h2 id="charts">Charts</h2>',
           "<p>Each alerted metric of each run over its steps: the logged values (blue), the window mean the "
           "rules compare (purple), a healthy run of the same trainer (green, dashed, where the archive has one), "
           "non-finite values (red ticks at the bottom), the alert episodes (shaded in the colour of their "
           "severity) and the thresholds of the rules (dashed); then the run's loss and learning rate for "
           "context. Hover for the step and values, drag across a chart to zoom on those steps, double-click "
           "to see them all again.</p>"]
    if doc.uncharted:
        out.append(f"<p>{escape(uncharted_text(doc))}</p>")
    for run, charts in _by_run(doc):
        trainer = next((c.alerts[0]["trainer"] for _, c in charts if c.alerts), None)
        out.append(f'<h3>Run {_path(run)} (trainer {escape(trainer or "unknown")})</h3>')
        out.append('<div class="charts">' + "\n".join(_chart(j, c) for j, c in charts) + "</div>")
    return out


def _by_run(doc: Document) -> list[tuple[object, list[tuple[int, Chart]]]]:
    """The charts grouped by run, the runs in the order of the runs table (the most severe first)."""
    groups: dict[object, list[tuple[int, Chart]]] = {}
    for j, chart in enumerate(doc.charts):
        groups.setdefault(chart.run, []).append((j, chart))
    rank = {row.run: n for n, row in enumerate(doc.runs)}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


def _chart(index: int, chart: Chart) -> str:
    css = "chart" if chart.kind == "alert" else "chart context"
    title = f"<code>{_path(chart.key)}</code>" + (" (context)" if chart.kind == "context" else "")
    return "\n".join([f'<div class="{css}" data-run="{escape(chart.run)}" data-metric="{escape(chart.key)}" '
                      f'data-chart="{index}">', f"<h4>{title}</h4>", *_plot(chart), _alert_list(chart), "</div>"])


def _plot(chart: Chart, static: bool = True) -> list[str]:
    """The interactive chart, and its static SVG for where scripts do not run (once a chart: the
    featured copy at the top has none)."""
    svg = f'<div class="static">{chart.svg}</div>' if chart.svg and static else ""
    return ['<div class="controls"><label><input type="checkbox" class="log"> log scale</label>'
            "<span>drag: zoom · double-click: all steps</span></div>", '<div class="plot"></div>', svg]


def _alert_list(chart: Chart) -> str:
    if not chart.alerts:
        return ""
    items = "".join(f"<li>{_severity(r['severity'])} <code>{escape(r['rule'])}</code>, "
                    f"steps {escape(steps_text(r))}: {escape(r['message'])}</li>" for r in chart.alerts)
    return f"<ul>{items}</ul>"


# ---------------------------------------------------------------- rules and coverage


def _rules(doc: Document) -> list[str]:
    out = ['<h2 id="rules">Rules that fired</h2>', "<dl>"]
    for rule in doc.fired:
        out.append(f"<dt><code>{escape(rule.name)}</code> {_severity(rule.severity)}: "
                   f"<code>{escape(one_line(condition_text(rule)))}</code></dt>")
        if rule.description:
            out.append(f'<dd class="description">{escape(one_line(rule.description))}</dd>')
        out.append(f"<dd>message: {escape(one_line(rule.message.source))}</dd>")
        out += [f"<dd>reference: {escape(one_line(ref))}</dd>" for ref in rule.reference]
    out.append("</dl>")
    return out


def _coverage(doc: Document) -> list[str]:
    """Per run, the rules never evaluated there; those that do not apply listed apart."""
    if not doc.coverage:
        return []
    out = ['<h2 id="not-evaluated">Not evaluated</h2>', f"<p>{escape(COVERAGE_INTRO)}</p>"]
    for run in doc.coverage:
        items = [_coverage_item(r) for r in run.missing] + [_coverage_item(r, "does not apply: ") for r in run.apart]
        out.append(f'<div class="coverage" data-run="{escape(run.run)}"><h3>Run {escape(run.run)}</h3>'
                   f"<ul>{''.join(items)}</ul></div>")
    return out


def _coverage_item(record: CoverageRecord, lead: str = "") -> str:
    metric = f" (<code>{escape(record.metric)}</code>)" if record.metric is not None else ""
    reason = "" if lead else f'<span class="reason">{escape(record.reason)}</span> — '
    return (f'<li data-reason="{escape(record.reason)}">{escape(lead)}<code>{escape(record.rule)}</code>{metric}: '
            f"{reason}{escape(record.detail)}</li>")


# ---------------------------------------------------------------- text


def _severity(severity: str) -> str:
    colour = SEVERITY_COLOURS.get(severity, "#57606a")
    return f'<span class="sev" style="color:{colour}">{escape(severity)}</span>'


def _path(text: object) -> str:
    """Escaped text that may break after each `/` and `_` (run ids, metric keys, rule names are
    long words otherwise, which would widen their column past the page)."""
    return escape(text).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _code(text: object) -> str:
    return f"<code>{escape(text)}</code>"
