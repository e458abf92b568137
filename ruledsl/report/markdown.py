"""A Markdown report (GitHub-flavoured tables) with each chart embedded as an image.

Charts are `<img src="data:image/svg+xml;base64,…">` tags: one line of HTML
with nothing in it that markdown could re-read, which VS Code, Markdown
Preview Enhanced, Jupyter, pandoc and browsers' markdown viewers show. GitHub
shows neither data: URIs nor inline <svg> (its sanitizer drops both); there the
image falls back to its alt text and everything else still reads (docs/report.md).
"""

from __future__ import annotations

import base64
import re

from ruledsl.alerts import CoverageRecord
from ruledsl.report.charts import escape
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
from ruledsl.report.text import one_line, printable

# Punctuation that can start markup anywhere in a line (emphasis, code, links, tables,
# strikethrough); `#`, `-`, `+`, `.` only matter at the start of a line, where user text never is.
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(text: object) -> str:
    """User text safe in a markdown paragraph or table cell: no markup, no HTML, one line.
    Control characters (a newline too, which would end a table row) are shown as \\x..
    escapes, as in the table; their backslash is then escaped like any other."""
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def md_prose(text: object) -> str:
    """Prose from a rule file (a description, a condition) as md_text, its line breaks spaces."""
    return md_text(one_line(text))


def to_markdown(doc: Document) -> str:
    lines = ["# ruledsl audit report", "", md_text(doc.headline + "."), ""]
    lines += _provenance(doc)
    lines += _summary(doc)
    lines += _runs(doc)
    if doc.records:
        lines += _alerts(doc) + _charts(doc) + _rules(doc)
    else:
        lines += ["No alerts.", ""]
    lines += _coverage(doc)
    return "\n".join(lines).rstrip("\n") + "\n"


def _summary(doc: Document) -> list[str]:
    rows = [f"| {s} | {n} |" for s, n in doc.counts]
    return ["## Summary", "", "| severity | alert episodes |", "|---|---:|", *rows,
            f"| **total** | **{len(doc.records)}** |", ""]


def _provenance(doc: Document) -> list[str]:
    """ruledsl version, command, time, inputs, rule sources: one bullet each."""
    p = doc.provenance
    if p is None:
        return []
    return [f"- ruledsl {md_text(p.version)}", f"- command: {md_text(p.command)}", f"- time: {md_text(p.time)}",
            f"- inputs: {md_text(', '.join(p.inputs))}", f"- rules: {md_text(', '.join(p.rule_sources))}", ""]


def _runs(doc: Document) -> list[str]:
    """Every audited run, healthy ones too: status, trainer and how it was decided, rules run."""
    if not doc.runs:
        return []
    rows = [f"| {md_text(r.run)} | {md_text(r.status)} | {md_text(r.trainer or 'unknown')} | {md_text(r.how)} "
            f"| {r.n_rules} |" for r in doc.runs]
    return ["## Runs", "", "| run | status | trainer | decided by | rules |", "|---|---|---|---|---:|", *rows, ""]


def _alerts(doc: Document) -> list[str]:
    rows = ["| " + " | ".join(_cells(r)) + " |" for r in doc.records]
    return ["## Alerts", "", "| run | rule | severity | metric | steps | evaluations | value | message |",
            "|---|---|---|---|---|---:|---:|---|", *rows, ""]


def _cells(record: dict) -> list[str]:
    metric = md_text(record["metric"]) if record["metric"] is not None else "(expression)"
    return [md_text(record["run"]), md_text(record["rule"]), record["severity"], metric,
            steps_text(record), str(record["n_evals"]), md_text(value_text(record)), md_text(record["message"])]


def _charts(doc: Document) -> list[str]:
    lines = ["## Charts", "",
             "Each chart shows one alerted metric of one run over its steps: the logged values (line), "
             "non-finite values (red ticks at the bottom), the alert episodes (shaded, in the colour of "
             "their severity) and the thresholds of the rules (dashed).", ""]
    if doc.uncharted:
        lines += [md_text(uncharted_text(doc)), ""]
    run = object()
    for chart in (c for c in doc.charts if c.kind == "alert"):  # the context charts are the HTML report's
        if chart.run != run:
            run = chart.run
            lines += [f"### {md_text(run_heading(chart))}", ""]
        lines += _chart(chart)
    return lines


def _chart(chart: Chart) -> list[str]:
    data = base64.b64encode(chart.svg.encode("utf-8")).decode("ascii")
    alt = escape(f"{chart.key} over steps in run {chart.run}")  # one line: escape shows a newline as \n
    items = [f"- **{r['severity']}** {md_text(r['rule'])}, steps {steps_text(r)}: {md_text(r['message'])}"
             for r in chart.alerts]
    return [f"#### {md_text(chart.key)}", "", f'<img alt="{alt}" src="data:image/svg+xml;base64,{data}">', "",
            *items, ""]


def _rules(doc: Document) -> list[str]:
    lines = ["## Rules that fired", ""]
    for rule in doc.fired:
        lines.append(f"- **{md_text(rule.name)}** ({rule.severity}): condition {md_prose(condition_text(rule))}")
        if rule.description:
            lines.append(f"  - {md_prose(rule.description)}")
        lines.append(f"  - message: {md_prose(rule.message.source)}")
        lines += [f"  - reference: {md_prose(ref)}" for ref in rule.reference]
    return lines + [""]


def _coverage(doc: Document) -> list[str]:
    """Per run, the rules never evaluated there; those that do not apply listed apart."""
    if not doc.coverage:
        return []
    lines = ["## Not evaluated", "", md_text(COVERAGE_INTRO), ""]
    for run in doc.coverage:
        lines += [f"### Run {md_text(run.run)}", ""]
        lines += [_coverage_item(r) for r in run.missing]
        lines += [_coverage_item(r, "does not apply: ") for r in run.apart]
        lines.append("")
    return lines


def _coverage_item(record: CoverageRecord, lead: str = "") -> str:
    """`- **rule** (key): reason — detail`; for a rule that does not apply, `does not apply` leads."""
    metric = f" ({md_text(record.metric)})" if record.metric is not None else ""
    reason = "" if lead else f"`{record.reason}` — "
    return f"- {lead}**{md_text(record.rule)}**{metric}: {reason}{md_text(record.detail)}"
