"""Lint reports as text: for people (human), programs (json), GitHub Actions (github), code scanning (sarif)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ruledsl import __version__
from ruledsl.lang.codes import describe
from ruledsl.lang.errors import render_snippet
from ruledsl.lint import LintReport
from ruledsl.model.loader import FileProblem

COLOURS = {"error": typer.colors.RED, "warning": typer.colors.YELLOW}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def shown_path(path: Path) -> str:
    """The path relative to the working directory when it lies below it (annotations need that)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if relative.startswith("..") else relative


def human(report: LintReport, colour: bool) -> str:
    blocks = [_human_problem(p, colour) for p in report.problems]
    n_errors, n_warnings = len(report.errors), len(report.warnings)
    summary = f"{len(report.files)} file(s) checked: {n_errors} error(s), {n_warnings} warning(s)."
    if not report.problems:
        summary = f"{len(report.files)} file(s) checked: no problems."
    return "\n\n".join([*blocks, summary]) + "\n"


def _human_problem(problem: FileProblem, colour: bool) -> str:
    d = problem.diagnostic
    label = f"{d.severity}[{d.code}]"
    if colour:
        label = typer.style(label, fg=COLOURS[d.severity], bold=True)
    lines = [f"{_where(problem)}: {label} {d.message}"]
    if d.span is not None and problem.source is not None:
        lines.append(render_snippet(problem.source, d.span))
    if d.hint:
        lines.append(f"  hint: {d.hint}")
    return "\n".join(lines)


def _where(problem: FileProblem) -> str:
    span = problem.diagnostic.span
    path = shown_path(problem.path)
    return f"{path}:{span.line}:{span.column}" if span is not None else path


def as_json(report: LintReport) -> str:
    return json.dumps([_record(p) for p in report.problems], indent=2) + "\n"


def _record(problem: FileProblem) -> dict:
    d, span = problem.diagnostic, problem.diagnostic.span
    return {
        "path": shown_path(problem.path), "line": span.line if span else None,
        "column": span.column if span else None, "end_line": span.end_line if span else None,
        "end_column": span.end_column if span else None, "code": d.code, "severity": d.severity,
        "title": describe(d.code).title, "message": d.message, "hint": d.hint, "field": d.field,
    }


def github(report: LintReport) -> str:
    """GitHub Actions workflow commands: one `::error`/`::warning` annotation a problem."""
    lines = []
    for problem in report.problems:
        d, span = problem.diagnostic, problem.diagnostic.span
        properties = [f"file={_escape_property(shown_path(problem.path))}"]
        if span is not None:
            properties += [f"line={span.line}", f"col={span.column}", f"endLine={span.end_line}",
                           f"endColumn={span.end_column}"]
        properties.append(f"title={_escape_property(f'{d.code} {describe(d.code).title}')}")
        text = d.message + (f" (hint: {d.hint})" if d.hint else "")
        lines.append(f"::{d.severity} {','.join(properties)}::{_escape_data(text)}")
    return "".join(line + "\n" for line in lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def sarif(report: LintReport) -> str:
    """SARIF 2.1.0, as GitHub code scanning and other tools read it."""
    used = sorted({p.diagnostic.code for p in report.problems})
    rules = [{"id": code, "name": describe(code).title.title().replace(" ", ""),
              "shortDescription": {"text": describe(code).title},
              "fullDescription": {"text": describe(code).explanation},
              "defaultConfiguration": {"level": describe(code).severity}} for code in used]
    index = {code: i for i, code in enumerate(used)}
    results = [_sarif_result(p, index) for p in report.problems]
    run = {"tool": {"driver": {"name": "ruledsl", "version": __version__, "informationUri":
                               "https://github.com/ruledsl/ruledsl", "rules": rules}},
           "results": results}
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2) + "\n"


def _sarif_result(problem: FileProblem, index: dict[str, int]) -> dict:
    d, span = problem.diagnostic, problem.diagnostic.span
    location: dict = {"artifactLocation": {"uri": Path(shown_path(problem.path)).as_posix()}}
    if span is not None:
        location["region"] = {"startLine": span.line, "startColumn": span.column,
                              "endLine": span.end_line, "endColumn": span.end_column}
    text = d.message + (f" (hint: {d.hint})" if d.hint else "")
    return {"ruleId": d.code, "ruleIndex": index[d.code], "level": d.severity, "message": {"text": text},
            "locations": [{"physicalLocation": location}]}
