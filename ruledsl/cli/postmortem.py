"""`ruledsl postmortem`: the postmortem.json a DiagnosticsCallback wrote when training ended abnormally.

Reads the file (or finds it in a diagnostics folder or a run's output_dir), checks its shape,
and prints it for a person (what ended the run and when, the last lines of the traceback, the
open alert episodes, the last rows as a table with one line per metric, the coverage, the
versions) or as JSON. A file that is missing, not JSON or not a postmortem is a usage error
(exit 2) naming the path, never a traceback. This module does not import transformers: the
file is read on any machine (ruledsl/integrations/postmortem.py writes it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from ruledsl.alerts import severity_mark
from ruledsl.cli.app import app, fail, terminal_text

POSTMORTEM_FILE = "postmortem.json"  # as ruledsl/integrations/postmortem.py writes it
DIAGNOSTICS_DIR = "diagnostics"
KNOWN_SCHEMA = 1
TRACEBACK_LINES = 8  # the end of the traceback: where it was raised, and what
REQUIRED = ("schema_version", "reason")
# field → (the types it may have, how the error says it)
SHAPES: dict[str, tuple[tuple[type, ...], str]] = {
    "schema_version": ((int,), "a whole number"),
    "reason": ((str,), "text"),
    "exception": ((Mapping, type(None)), "an object or null"),
    "stopped": ((Mapping, type(None)), "an object or null"),
    "signal": ((Mapping, type(None)), "an object or null"),
    "recent_rows": ((list,), "a list of rows"),
    "episodes": ((list,), "a list of episodes"),
    "coverage": ((list, type(None)), "a list of records or null"),
    "rules": ((list,), "a list of rules"),
    "versions": ((Mapping,), "an object"),
    "files": ((Mapping, type(None)), "an object or null"),
}
LISTS_OF_OBJECTS = ("recent_rows", "episodes", "coverage", "rules")


class PostmortemFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def postmortem(
    path: Path = typer.Argument(..., metavar="PATH", help=(
        "A postmortem.json, a diagnostics folder holding one, or a run's output_dir holding "
        "diagnostics/postmortem.json.")),
    output_format: PostmortemFormat = typer.Option(PostmortemFormat.text, "--format", metavar="text|json",
                                                   help="text (for a person) or json (the file, checked)."),
    rows: int = typer.Option(8, "--rows", min=0, metavar="N", help=(
        "How many of the last rows the text shows (the file keeps the callback's postmortem_rows, 50 by default).")),
) -> None:
    """Show why and where a training run ended abnormally.

    DiagnosticsCallback writes diagnostics/postmortem.json when training ends on an exception,
    Ctrl-C, SIGTERM or a stop_on decision: the reason, the last step, the traceback, the last
    rows, the open alert episodes, the coverage, the rules and the versions.
    Exit status: 0 shown, 2 no postmortem there or not a readable one.

    \b
    Examples:
      ruledsl postmortem out/                          # the run's output_dir
      ruledsl postmortem out/diagnostics/postmortem.json --format json
    """
    found = postmortem_path(path)
    report = read_postmortem(found)
    if output_format is PostmortemFormat.json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    typer.echo(terminal_text(postmortem_text(report, found, rows)))


def postmortem_path(path: Path) -> Path:
    """The postmortem.json that `path` names: itself, or in it, or in its diagnostics/ folder."""
    if not path.exists():
        fail(f"{path}: no such file or directory")
    if not path.is_dir():
        return path
    for candidate in (path / POSTMORTEM_FILE, path / DIAGNOSTICS_DIR / POSTMORTEM_FILE):
        if candidate.is_file():
            return candidate
    fail(f"{path}: no {POSTMORTEM_FILE} in it nor in {path / DIAGNOSTICS_DIR}; the callback writes one only "
         f"when training ends abnormally (an exception, Ctrl-C, SIGTERM, stop_on)")


def read_postmortem(path: Path) -> dict[str, Any]:
    """The report in `path`, its shape checked; a usage error naming the path when it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        fail(f"{path}: not a postmortem: not UTF-8 text (byte {exc.start})")
    except OSError as exc:
        fail(f"{path}: cannot be read ({exc.strerror or exc})")
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); a postmortem is written whole "
             f"or not at all, so this file was made or changed by something else")
    problem = shape_problem(report)
    if problem is not None:
        fail(f"{path}: not a ruledsl postmortem: {problem}")
    return report


def shape_problem(report: Any) -> str | None:
    """What keeps `report` from being a postmortem this command can show, or None."""
    if not isinstance(report, Mapping):
        return f"the file holds {_json_kind(report)}, not an object"
    missing = [field for field in REQUIRED if field not in report]
    if missing:
        return f"no {', '.join(map(repr, missing))} field"
    for field, (types, wanted) in SHAPES.items():
        if field in report and (not isinstance(report[field], types) or isinstance(report[field], bool)):
            return f"{field!r} should be {wanted}, not {_json_kind(report[field])}"
    for field in LISTS_OF_OBJECTS:
        items = report.get(field) or []
        bad = next((i for i, item in enumerate(items) if not isinstance(item, Mapping)), None)
        if bad is not None:
            return f"{field!r} item {bad + 1} should be an object, not {_json_kind(items[bad])}"
    if report["schema_version"] > KNOWN_SCHEMA:
        return (f"schema_version {report['schema_version']} is newer than this ruledsl reads "
                f"({KNOWN_SCHEMA}); upgrade ruledsl")
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


# ---------------------------------------------------------------- the text


def postmortem_text(report: Mapping[str, Any], path: Path, rows: int) -> str:
    sections = [_headline(report, path), _exception(report), _episodes(report), _rows(report, rows),
                _coverage(report), _setup(report)]
    return "\n\n".join(section for section in sections if section)


def _headline(report: Mapping[str, Any], path: Path) -> str:
    run = report.get("run") or "?"
    trainer = report.get("trainer") or "unknown"
    lines = [f"Postmortem of run {run} (trainer {trainer}): {path}",
             f"  ended by:  {_reason(report)}",
             f"  at step:   {_shown(report.get('last_step'))}  (last row logged at step "
             f"{_shown(report.get('last_logged_step'))})",
             f"  time:      {_shown(report.get('time'))}"]
    incomplete = report.get("incomplete")
    if isinstance(incomplete, Mapping) and incomplete:
        lines.append("  incomplete: " + "; ".join(f"{k} ({v})" for k, v in incomplete.items()))
    return "\n".join(lines)


def _reason(report: Mapping[str, Any]) -> str:
    reason = report["reason"]
    if reason == "stop_on" and report.get("stopped"):
        stopped = report["stopped"]
        return (f"stop_on={report.get('stop_on')!r}: rule {stopped.get('rule')} ({stopped.get('severity')}) "
                f"fired at step {stopped.get('step')}")
    if reason == "sigterm":
        handler = (report.get("signal") or {}).get("previous_handler")
        return "SIGTERM" + (f" (then the handler before ruledsl's: {handler})" if handler else "")
    if reason == "keyboard_interrupt":
        return "KeyboardInterrupt (Ctrl-C)"
    exc = report.get("exception") or {}
    return f"exception {exc.get('type')}: {exc.get('message')}" if exc else str(reason)


def _exception(report: Mapping[str, Any]) -> str:
    exc = report.get("exception")
    if not exc or not isinstance(exc.get("traceback"), str):
        return ""
    lines = exc["traceback"].rstrip("\n").split("\n")
    shown = lines[-TRACEBACK_LINES:]
    head = f"Traceback, last {len(shown)} of {len(lines)} lines:" if len(shown) < len(lines) else "Traceback:"
    return "\n".join([head, *("  " + line for line in shown)])


def _episodes(report: Mapping[str, Any]) -> str:
    episodes = report.get("episodes") or []
    still_open = [e for e in episodes if e.get("open")]
    closed = len(episodes) - len(still_open)
    head = f"Open alert episodes: {len(still_open)}" + (f" ({closed} closed before)" if closed else "")
    lines = [head]
    for episode in still_open:
        metric = f" on {episode['metric']}" if episode.get("metric") else ""
        lines.append(f"  {_mark(episode.get('severity'))} {episode.get('rule')}{metric}, steps "
                     f"{episode.get('first_step')}–{episode.get('last_step')}: {episode.get('message')}")
    return "\n".join(lines)


def _mark(severity: Any) -> str:
    try:
        return severity_mark(str(severity), terminal=False)
    except ValueError:
        return f"[{str(severity).upper()}]"


def _rows(report: Mapping[str, Any], count: int) -> str:
    """The last rows as a table with a line per metric and a column per step: a TRL row has
    dozens of keys, which fit down a terminal, not across it."""
    rows = (report.get("recent_rows") or [])[-count:] if count else []
    if not rows:
        return "Last rows: none read" if count else ""
    keys = list(dict.fromkeys(key for row in rows for key in row if key != "step"))
    table = [["step", *(_shown(row.get("step")) for row in rows)]]
    table += [[key, *(_number(row.get(key)) for row in rows)] for key in keys]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in table]
    return "\n".join([f"Last {len(rows)} rows read:", *("  " + line for line in lines)])


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)  # "nan", "inf": json_safe's spellings
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.4g}"


def _coverage(report: Mapping[str, Any]) -> str:
    coverage = report.get("coverage")
    if coverage is None:
        return "Coverage: not known"
    if not coverage:
        return "Coverage: every rule has been evaluated"
    lines = [f"Coverage: {len(coverage)} rule{'s' if len(coverage) != 1 else ''} not evaluated so far"]
    for record in coverage:
        metric = f" [{record['metric']}]" if record.get("metric") else ""
        lines.append(f"  {record.get('rule')}{metric} ({record.get('reason')}: {record.get('detail')})")
    return "\n".join(lines)


def _setup(report: Mapping[str, Any]) -> str:
    rules: Sequence[Mapping[str, Any]] = report.get("rules") or []
    versions = report.get("versions") or {}
    files = report.get("files") or {}
    lines = [f"Rules: {len(rules)} applied; stop_on: {report.get('stop_on') or 'off'}",
             "Versions: " + (", ".join(f"{name} {version}" for name, version in versions.items()) or "not known")]
    if files.get("directory"):
        lines.append(f"Diagnostics: {files['directory']} (metrics.jsonl, alerts.jsonl, run.json; "
                     f"ruledsl audit reads it)")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return "?" if value is None else str(value)
