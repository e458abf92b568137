"""A self-contained HTML report: inline CSS and inline <svg> charts, no script, nothing fetched.

Every text goes through `escape` (html-escaped, control characters shown as \\x..
escapes); prose from rule files (descriptions, conditions, message templates) is put on
one line first, so that its line breaks read as the spaces HTML makes of them.
"""

from __future__ import annotations

from ruledsl.alerts import CoverageRecord
from ruledsl.report.charts import SEVERITY_COLOURS, escape
from ruledsl.report.document import (
    COVERAGE_INTRO,
    Chart,
    Document,
    condition_text,
    run_heading,
    steps_text,
    uncharted_text,
    value_text,
)
from ruledsl.report.text import one_line

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 62rem; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.sev { font-weight: bold; }
.chart { margin: 1rem 0 2rem; }
.description { color: #57606a; }
code { background: #f6f8fa; padding: 0 0.2rem; }
"""

COLUMNS = ("run", "rule", "severity", "metric", "steps", "evaluations", "value", "message")


def to_html(doc: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>ruledsl audit report</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
             "<h1>ruledsl audit report</h1>", f"<p>{escape(doc.headline)}.</p>"]
    parts += _summary(doc)
    if doc.records:
        parts += _alerts(doc)
        parts += _charts(doc)
        parts += _rules(doc)
    else:
        parts.append("<p>No alerts.</p>")
    parts += _coverage(doc)
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _summary(doc: Document) -> list[str]:
    rows = "".join(f"<tr><td>{_severity(s)}</td><td>{n}</td></tr>" for s, n in doc.counts)
    return ['<h2 id="summary">Summary</h2>',
            f"<table><thead><tr><th>severity</th><th>alert episodes</th></tr></thead><tbody>{rows}"
            f"<tr><th>total</th><th>{len(doc.records)}</th></tr></tbody></table>"]


def _alerts(doc: Document) -> list[str]:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = "\n".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in _cells(r)) + "</tr>" for r in doc.records)
    return ['<h2 id="alerts">Alerts</h2>', f"<table><thead><tr>{head}</tr></thead><tbody>\n{rows}\n</tbody></table>"]


def _cells(record: dict) -> list[str]:
    metric = f"<code>{escape(record['metric'])}</code>" if record["metric"] is not None else "(expression)"
    return [escape(record["run"]), f"<code>{escape(record['rule'])}</code>", _severity(record["severity"]),
            metric, escape(steps_text(record)), str(record["n_evals"]), escape(value_text(record)),
            escape(record["message"])]


def _charts(doc: Document) -> list[str]:
    out = ['<h2 id="charts">Charts</h2>',
           "<p>Each chart shows one alerted metric of one run over its steps: the logged values "
           "(line), non-finite values (red ticks at the bottom), the alert episodes (shaded, in the "
           "colour of their severity) and the thresholds of the rules (dashed).</p>"]
    if doc.uncharted:
        out.append(f"<p>{escape(uncharted_text(doc))}</p>")
    run = object()
    for chart in doc.charts:
        if chart.run != run:
            run = chart.run
            out.append(f"<h3>{escape(run_heading(chart))}</h3>")
        out.append(_chart(chart))
    return out


def _chart(chart: Chart) -> str:
    items = "".join(f"<li>{_severity(r['severity'])} <code>{escape(r['rule'])}</code>, "
                    f"steps {escape(steps_text(r))}: {escape(r['message'])}</li>" for r in chart.alerts)
    return (f'<div class="chart" data-run="{escape(chart.run)}" data-metric="{escape(chart.key)}">'
            f"<h4><code>{escape(chart.key)}</code></h4>\n{chart.svg}\n"
            f"<ul>{items}</ul></div>")


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


def _severity(severity: str) -> str:
    colour = SEVERITY_COLOURS.get(severity, "#57606a")
    return f'<span class="sev" style="color:{colour}">{escape(severity)}</span>'
