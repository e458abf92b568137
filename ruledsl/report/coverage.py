"""The coverage in reports (docs/language.md §4): the rules never evaluated on a run, and why.

Every format that people read ends with it: the table as a short section where runs sharing
an entry share a line, markdown and html per run. Rules whose `when` is false do not apply
to the run: they are shown apart from the rules that could not see their data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruledsl.alerts import COVERAGE_REASONS, CoverageRecord

DOES_NOT_APPLY = "when_false"
_REASON_ORDER = {reason: n for n, reason in enumerate(COVERAGE_REASONS)}


def not_evaluated(coverage: Iterable[CoverageRecord]) -> list[CoverageRecord]:
    """The entries of rules that could never fire for want of data (every reason but when_false)."""
    return [r for r in coverage if r.reason != DOES_NOT_APPLY]


def not_applying(coverage: Iterable[CoverageRecord]) -> list[CoverageRecord]:
    """The entries of rules whose `when` is false on the run."""
    return [r for r in coverage if r.reason == DOES_NOT_APPLY]


def reason_counts(coverage: Iterable[CoverageRecord]) -> list[tuple[str, int]]:
    """(reason, entries) for each reason present, in the order of docs/language.md §4."""
    counts: dict[str, int] = {}
    for record in coverage:
        counts[record.reason] = counts.get(record.reason, 0) + 1
    return sorted(counts.items(), key=lambda item: _REASON_ORDER.get(item[0], len(_REASON_ORDER)))


@dataclass(frozen=True)
class Shared:
    """One entry (rule, metric, reason, detail) and the runs it holds for, in their order."""

    rule: str
    metric: str | None
    reason: str
    detail: str
    runs: list[Any]


def shared(coverage: Iterable[CoverageRecord]) -> list[Shared]:
    """The entries with the same rule, metric, reason and detail as one, ordered by reason (§4's
    order), rule, then metric."""
    found: dict[tuple[str, str | None, str, str], list[Any]] = {}
    for r in coverage:
        found.setdefault((r.rule, r.metric, r.reason, r.detail), []).append(r.run)
    ordered = sorted(found.items(), key=lambda item: (_REASON_ORDER.get(item[0][2], len(_REASON_ORDER)),
                                                      item[0][0], item[0][1] or ""))
    return [Shared(rule, metric, reason, detail, runs) for (rule, metric, reason, detail), runs in ordered]


def runs_text(runs: Sequence[Any], shown: int = 4) -> str:
    """`run a`, or `3 runs (a, b, c)`, or `9 runs (a, b, c, d and 5 more)`."""
    if len(runs) == 1:
        return f"run {runs[0]}"
    named = ", ".join(str(run) for run in runs[:shown])
    more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
    return f"{len(runs)} runs ({named}{more})"


@dataclass(frozen=True)
class RunCoverage:
    """A run's coverage, as the markdown and html reports show it: the rules never evaluated
    there, and apart, those that do not apply."""

    run: Any
    missing: list[CoverageRecord] = field(default_factory=list)
    apart: list[CoverageRecord] = field(default_factory=list)


def by_run(coverage: Iterable[CoverageRecord]) -> list[RunCoverage]:
    """The coverage per run, in run order; within a run, by reason (§4's order), rule, metric."""
    found: dict[Any, RunCoverage] = {}
    for r in coverage:
        entry = found.setdefault(r.run, RunCoverage(r.run))
        (entry.apart if r.reason == DOES_NOT_APPLY else entry.missing).append(r)
    for entry in found.values():
        entry.missing.sort(key=lambda r: (_REASON_ORDER.get(r.reason, len(_REASON_ORDER)), r.rule, r.metric or ""))
        entry.apart.sort(key=lambda r: (r.rule, r.metric or ""))
    return sorted(found.values(), key=lambda entry: str(entry.run))


def counts_text(coverage: Iterable[CoverageRecord]) -> str:
    """`3 no_key, 1 config_unknown`."""
    return ", ".join(f"{n} {reason}" for reason, n in reason_counts(coverage))
