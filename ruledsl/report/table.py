"""Alert records as a text table for people: grouped by run, worst severity first.

On a terminal each severity gets an icon and (unless NO_COLOR is set) a
colour; anywhere else (a pipe, a file) the text is plain. Control characters in
run ids and messages are shown escaped, so a log cannot drive the terminal.

The table ends with the rules not evaluated on some run (docs/language.md §4): the
entries per reason, then one line per entry, the runs sharing it named together.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import polars as pl

from ruledsl.alerts import SEVERITIES, CoverageRecord, Severity, severity_mark
from ruledsl.report.context import ReportContext
from ruledsl.report.coverage import counts_text, not_applying, not_evaluated, runs_text, shared
from ruledsl.report.text import printable

__all__ = ["coverage_section", "headline", "printable", "severity_counts", "severity_summary", "to_table"]

SEVERITY_RANK = {s.value: s.rank for s in Severity}  # as polars' replace_strict wants it
COVERAGE_LINES = 20  # lines of the "not evaluated" section at most; the rest is counted


def to_table(records: pl.DataFrame, context: ReportContext) -> str:
    colour = context.terminal and not os.environ.get("NO_COLOR")
    lines = [headline(context) + "."]
    if records.is_empty():
        return "\n".join(lines + ["No alerts.", *coverage_section(context.coverage)]) + "\n"
    ordered = records.with_columns(
        pl.col("severity").replace_strict(SEVERITY_RANK, return_dtype=pl.Int64).alias("_rank")
    ).sort(["run", "_rank", "first_step"], descending=[False, True, False])
    for (run,), group in ordered.group_by("run", maintain_order=True):
        lines.append(f"\n{printable(run)}")
        for row in group.iter_rows(named=True):
            mark = severity_mark(row["severity"], context.terminal, colour)
            lines.append(f"  {mark} {printable(row['rule'])}  {_steps(row)}")
            lines.append(f"      {printable(row['message'])}")
    lines.append(f"\n{len(records)} alert episode(s): {severity_summary(records)}.")
    lines += coverage_section(context.coverage)
    return "\n".join(lines) + "\n"


def coverage_section(coverage: Sequence[CoverageRecord], limit: int = COVERAGE_LINES) -> list[str]:
    """The rules never evaluated on some run, and apart those that do not apply; nothing when
    every rule was evaluated on every run."""
    lines: list[str] = []
    missing, apart = not_evaluated(coverage), not_applying(coverage)
    if missing:
        lines.append(f"\nNot evaluated ({counts_text(missing)}):")
        lines += _entries(missing, limit, with_reason=True)
    if apart:
        lines.append(f"\nDoes not apply ({counts_text(apart)}: `when` is false):")
        lines += _entries(apart, limit, with_reason=False)
    return lines


def _entries(coverage: list[CoverageRecord], limit: int, with_reason: bool) -> list[str]:
    entries = shared(coverage)
    lines = []
    for entry in entries[:limit]:
        rule = entry.rule + (f" [{entry.metric}]" if entry.metric is not None else "")
        reason = f"{entry.reason} on " if with_reason else "on "
        lines.append(printable(f"  {rule}: {reason}{runs_text(entry.runs)}: {entry.detail}"))
    if len(entries) > limit:
        lines.append(f"  … and {len(entries) - limit} more (--coverage FILE writes every entry)")
    return lines


def headline(context: ReportContext) -> str:
    """What was audited with how many rules: those each run was checked with (its trainer's,
    `context.runs`), not the number loaded (the whole builtin library, of which a DPO run gets a third)."""
    if not context.runs:  # a context built without them (the Python API): the rules as given
        trainer = f" for trainer {context.trainer}" if context.trainer else ""
        return f"Audited {context.n_runs} run(s) with {context.n_rules} rule(s){trainer}"
    groups = Counter((info.trainer or "unknown", info.n_rules) for info in context.runs)
    if len(groups) == 1:
        ((trainer, n_rules),) = groups
        return f"Audited {context.n_runs} run(s) with {n_rules} rule(s) for trainer {trainer}"
    parts = [f"{runs} {trainer} with {n_rules}" for (trainer, n_rules), runs in sorted(groups.items())]
    return f"Audited {context.n_runs} run(s), each with the rules for its trainer: {', '.join(parts)}"


def severity_counts(records: pl.DataFrame) -> list[tuple[str, int]]:
    """(severity, episodes) for every severity, worst first."""
    counts = dict(records.group_by("severity").len().iter_rows()) if not records.is_empty() else {}
    return [(s, counts.get(s, 0)) for s in reversed(SEVERITIES)]


def severity_summary(records: pl.DataFrame) -> str:
    return ", ".join(f"{n} {s}" for s, n in severity_counts(records) if n)


def _steps(row: dict) -> str:
    return f"steps {row['first_step']}–{row['last_step']} ({row['n_evals']} evaluations)"
