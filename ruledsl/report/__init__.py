"""Alert records → reports: a table for the terminal, JSON, JSON Lines and CSV for
programs, Markdown and HTML with charts for people (one module per format)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path

import polars as pl

from ruledsl.report.context import ReportContext
from ruledsl.report.document import build
from ruledsl.report.html import to_html
from ruledsl.report.markdown import to_markdown
from ruledsl.report.provenance import provenance
from ruledsl.report.records import to_csv, to_json, to_jsonl
from ruledsl.report.runs import run_infos, with_callback_rules
from ruledsl.report.table import to_table

__all__ = ["Format", "ReportContext", "choose_format", "described", "render"]


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    markdown = "markdown"
    html = "html"


SUFFIX_FORMATS = {".txt": Format.table, ".json": Format.json, ".jsonl": Format.jsonl,
                  ".ndjson": Format.jsonl, ".csv": Format.csv, ".md": Format.markdown,
                  ".markdown": Format.markdown, ".html": Format.html, ".htm": Format.html}


def choose_format(requested: Format | None, output: Path | None) -> tuple[Format, str | None]:
    """The format to write, and a warning when --format and the --output suffix disagree.

    --format wins when given. Without it, a known --output suffix chooses
    (report.html → html); otherwise the table.
    """
    suffix = output.suffix if output is not None else ""
    implied = SUFFIX_FORMATS.get(suffix.lower())
    if requested is None:
        return implied or Format.table, None
    if implied is not None and implied is not requested:
        return requested, (f"writing {requested.value} to {output}, whose suffix "
                           f"{suffix} suggests {implied.value} (--format wins)")
    return requested, None


def described(context: ReportContext, output_format: Format, sources: Sequence, run_ids: Sequence[str], *,
              inputs: Sequence[Path | str], rule_paths: Sequence[Path | str] = (), builtin: bool = True,
              inline_alerts: int = 0, extra_rules: Sequence[str] = (), command: Sequence[str] = ()
              ) -> ReportContext:
    """`context` with what the reports for people show besides the alerts: every audited run
    (with its trainer and rule count), the provenance, and the sources the charts read from.
    Markdown and html show them all; the table only counts each run's rules in its headline; the
    record formats are left as they were (no cost)."""
    if output_format in (Format.json, Format.jsonl, Format.csv):  # records only: no headline
        return context
    context = replace(context, rules=with_callback_rules(context.rules, sources) if builtin else context.rules)
    runs = run_infos(sources, run_ids, context.trainer, context.rules, builtin=builtin)
    if output_format is Format.table:  # its headline counts the rules each run was checked with
        return replace(context, runs=runs)
    made = provenance(inputs, rule_paths, builtin, inline_alerts, extra_rules=extra_rules,
                      command=command or ["ruledsl", "audit", *map(str, inputs)])
    return replace(context, runs=runs, provenance=made, sources=list(sources))


def render(records: pl.DataFrame, output_format: Format, context: ReportContext) -> str:
    if output_format is Format.json:
        return to_json(records)
    if output_format is Format.jsonl:
        return to_jsonl(records)
    if output_format is Format.csv:
        return to_csv(records)
    if output_format is Format.markdown:
        return to_markdown(build(records, context))
    if output_format is Format.html:
        return to_html(build(records, context))
    return to_table(records, context)
