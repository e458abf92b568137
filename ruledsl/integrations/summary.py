"""The end-of-training summary: what the rules found on the run, said once when training ends.

    summary = build_summary(episodes, run="r1", trainer="sft", last_step=5, total_rules=14,
                            coverage=records, stopped=None, directory=Path("out/diagnostics"))
    print(console_text(summary, colour=False))      # the console block (stderr, see console.py)
    write_summary(directory / SUMMARY_FILE, markdown(summary))

It holds the alert episodes grouped by rule (worst severity first: how many episodes, the first
and last step, the evaluations, the last message), the rules never evaluated with their reasons,
how the run ended (a `stop_on` stop), and where the files are. The same content goes to the
console, to `diagnostics/summary.md` (markdown, replaced atomically) and to the trackers
(integrations/trackers.py). An abnormal end (an exception, Ctrl-C, SIGTERM) calls no
`on_train_end`: there is no summary then, the postmortem (integrations/postmortem.py) tells.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruledsl.alerts import CoverageRecord, severity_mark, severity_rank
from ruledsl.integrations.console import CONFIG_REASONS, coverage_at_end

SUMMARY_FILE = "summary.md"
# The files of the diagnostics folder the summary points to, in the order it names them
LISTED_FILES = ("metrics.jsonl", "alerts.jsonl", "run.json", SUMMARY_FILE, "report.html", "postmortem.json")
MESSAGE_WIDTH = 100  # the console table's last column: a longer message is cut, summary.md has it whole
TABLE_COLUMNS = ("rule", "severity", "episodes", "first_step", "last_step", "evaluations", "last_message")


@dataclass(frozen=True)
class RuleLine:
    """The episodes of one rule on the run."""

    rule: str
    severity: str  # the worst of its episodes'
    episodes: int
    first_step: int  # the first step of its first episode
    last_step: int  # the last step of its last episode
    evaluations: int  # the evaluations that fired, over all its episodes (n_evals)
    last_message: str

    def row(self) -> list[Any]:
        return [self.rule, self.severity, self.episodes, self.first_step, self.last_step, self.evaluations,
                self.last_message]


@dataclass(frozen=True)
class RunSummary:
    run: str
    trainer: str | None
    last_step: int | None  # the Trainer's global step when training ended
    rules: list[RuleLine]  # worst severity first, then by first step
    total_rules: int  # the rules that applied to the run
    coverage: list[CoverageRecord] | None  # the rules never evaluated; None when not known (a fault)
    stopped: Mapping[str, Any] | None  # the callback's stop record (`stop_on`)
    directory: Path | None  # the diagnostics folder (None: no files were written)
    files: list[str] = field(default_factory=list)  # the names of LISTED_FILES in it

    @property
    def episodes(self) -> int:
        return sum(line.episodes for line in self.rules)

    def table(self) -> list[list[Any]]:
        """One row per rule, the columns of TABLE_COLUMNS (a tracker's table)."""
        return [line.row() for line in self.rules]


def build_summary(episodes: Iterable[Mapping[str, Any]], *, run: str, trainer: str | None, last_step: int | None,
                  total_rules: int, coverage: Sequence[CoverageRecord] | None, stopped: Mapping[str, Any] | None,
                  directory: Path | None, report: bool = False, postmortem: bool = False) -> RunSummary:
    """The summary of `episodes` (alert records, docs/language.md §4). `directory`: the diagnostics
    folder, whose files are listed: summary.md (about to be written), the others present now,
    report.html and postmortem.json only when this session wrote them (`report`, `postmortem`),
    not a file an earlier session left."""
    files: list[str] = []
    if directory is not None:
        wanted = {"report.html": report, "postmortem.json": postmortem}
        files = [name for name in LISTED_FILES if name == SUMMARY_FILE
                 or (wanted.get(name, True) and (directory / name).is_file())]
    return RunSummary(run=run, trainer=trainer, last_step=last_step, rules=per_rule(episodes),
                      total_rules=total_rules, coverage=list(coverage) if coverage is not None else None,
                      stopped=stopped, directory=directory, files=files)


def per_rule(episodes: Iterable[Mapping[str, Any]]) -> list[RuleLine]:
    """The episodes grouped by rule: worst severity first, then the rule whose first episode came first."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for record in episodes:
        grouped.setdefault(str(record.get("rule")), []).append(record)
    lines = []
    for rule, records in grouped.items():
        records = sorted(records, key=lambda r: _step(r.get("first_step")))
        lines.append(RuleLine(
            rule=rule, severity=max((str(r.get("severity")) for r in records), key=_rank), episodes=len(records),
            first_step=_step(records[0].get("first_step")),
            last_step=max(_step(r.get("last_step", r.get("first_step"))) for r in records),
            evaluations=sum(_step(r.get("n_evals")) for r in records),
            last_message=str(records[-1].get("message", ""))))
    return sorted(lines, key=lambda line: (-_rank(line.severity), line.first_step, line.rule))


def _rank(severity: str) -> int:
    try:
        return severity_rank(severity)
    except ValueError:
        return -1


def _step(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ---------------------------------------------------------------- the console


def headline(summary: RunSummary) -> str:
    """`ruledsl: summary of training: 3 alert episodes from 2 rules (trainer sft, ended at step 5)`."""
    found, where = _found(summary)
    return f"ruledsl: summary of training: {found} ({where})"


def _found(summary: RunSummary) -> tuple[str, str]:
    if summary.rules:
        found = f"{_count(summary.episodes, 'alert episode')} from {_count(len(summary.rules), 'rule')}"
    else:
        found = "no alert"
    where = [f"trainer {summary.trainer or 'unknown'}"]
    if summary.last_step is not None:
        where.append(f"ended at step {summary.last_step}")
    return found, ", ".join(where)


def console_text(summary: RunSummary, *, colour: bool) -> str:
    """The block printed when training ends: the headline, the stop, a table of the rules that fired,
    the coverage lines (console.coverage_at_end) and where the files are. `colour`: the severities
    in their colour and the headline bold (a terminal without NO_COLOR)."""
    title = headline(summary)
    lines = [f"\x1b[1m{title}\x1b[0m" if colour else title]
    if summary.stopped is not None:
        lines.append(f"  {summary.stopped.get('reason')}")
    lines += _rule_table(summary.rules, colour)
    if summary.coverage is not None:
        lines.append(coverage_at_end(summary.coverage, summary.total_rules))
    else:
        lines.append("ruledsl: the rules never evaluated on this run are not known (a fault switched that report off)")
    if summary.directory is not None and summary.files:
        lines.append(f"ruledsl: written to {summary.directory}: {', '.join(summary.files)}")
    return "\n".join(lines)


def _rule_table(rules: Sequence[RuleLine], colour: bool) -> list[str]:
    """Aligned columns; the marks padded on their plain text, so colour codes do not shift them."""
    if not rules:
        return []
    header = ("severity", "rule", "episodes", "steps", "evaluations", "last message")
    cells = [(f"[{line.severity.upper()}]", line.rule, str(line.episodes), f"{line.first_step}-{line.last_step}",
              str(line.evaluations), _short(line.last_message)) for line in rules]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(5)]
    right = (False, False, True, False, True)

    def joined(row: Sequence[str], mark: str | None = None) -> str:
        parts = [cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i]) for i, cell in enumerate(row[:5])]
        if mark is not None:  # the coloured mark in place of its padded plain text
            parts[0] = mark + " " * (widths[0] - len(row[0]))
        return ("  " + "  ".join([*parts, row[5]])).rstrip()

    out = [joined(header)]
    for line, row in zip(rules, cells):
        out.append(joined(row, _coloured(line.severity) if colour else None))
    return out


def _short(message: str) -> str:
    """A message on one line of at most MESSAGE_WIDTH characters (the whole one is in summary.md)."""
    one_line = " ".join(message.split())
    return one_line if len(one_line) <= MESSAGE_WIDTH else one_line[:MESSAGE_WIDTH - 1] + "…"


def _coloured(severity: str) -> str | None:
    try:
        return severity_mark(severity, terminal=False, colour=True)
    except ValueError:
        return None


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" + ("" if number == 1 else "s")


# ---------------------------------------------------------------- summary.md


def markdown(summary: RunSummary) -> str:
    """diagnostics/summary.md: the same content as the console block, as markdown tables."""
    found, where = _found(summary)
    out = [f"# ruledsl summary: {_cell(summary.run)}", "", f"**{found[:1].upper()}{found[1:]}** ({where}).", ""]
    if summary.stopped is not None:
        reason = _cell(str(summary.stopped.get("reason")))
        out += [f"**{reason[:1].upper()}{reason[1:]}**", ""]
    out += ["## Alerts", ""]
    if summary.rules:
        out += ["| rule | severity | episodes | first step | last step | evaluations | last message |",
                "|---|---|---:|---:|---:|---:|---|"]
        out += [f"| `{line.rule}` | {line.severity} | {line.episodes} | {line.first_step} | {line.last_step} | "
                f"{line.evaluations} | {_cell(line.last_message)} |" for line in summary.rules]
    else:
        out.append("No rule fired on this run.")
    out += ["", "## Rules not evaluated", ""] + _coverage_markdown(summary)
    if summary.directory is not None and summary.files:
        out += ["", "## Files", ""]
        out += [f"- {name}: `{summary.directory / name}`" for name in summary.files if name != SUMMARY_FILE]
    return "\n".join(out) + "\n"


def _coverage_markdown(summary: RunSummary) -> list[str]:
    if summary.coverage is None:
        return ["Not known: a fault switched the coverage report off on this run."]
    evaluated = summary.total_rules - len({r.rule for r in summary.coverage})
    out = [f"{evaluated} of {summary.total_rules} rules were evaluated on this run."]
    if summary.coverage:
        out += ["", "| rule | metric | reason | detail |", "|---|---|---|---|"]
        records = sorted(summary.coverage, key=lambda r: (r.reason in CONFIG_REASONS, r.rule))
        out += [f"| `{r.rule}` | {_cell(r.metric or '')} | {r.reason} | {_cell(r.detail)} |" for r in records]
    return out


def _cell(text: str) -> str:
    """Text that stays inside one markdown table cell: no line break, `|` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def write_summary(path: Path, text: str) -> Path:
    """`text` as `path`, whole or not at all: a temporary file beside it, flushed to disk, renamed over it."""
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
