"""Live alerts as people read them: one line with the severity, then the message; and the
coverage lines (docs/language.md §4): which rules see their keys, which were never evaluated."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from ruledsl.alerts import CoverageRecord, severity_mark

# The reasons that come from the run's configuration: the rule does not run on it (shown apart)
CONFIG_REASONS = frozenset({"when_false", "config_unknown"})

LOG_LEVELS = {"low": logging.INFO, "medium": logging.WARNING, "high": logging.WARNING,
              "critical": logging.ERROR}


def alert_text(record: Mapping[str, Any], *, plain: bool) -> str:
    """`🚨 [HIGH] rule_name at step N` and the indented message (no icon when plain)."""
    mark = severity_mark(str(record.get("severity", "")), terminal=not plain)
    return f"{mark} {record.get('rule')} at step {record.get('first_step')}\n    {record.get('message')}"


def is_plain(stream: TextIO) -> bool:
    """Icons only on a terminal; logs, pipes and notebooks captured to files get plain text."""
    isatty = getattr(stream, "isatty", None)
    try:
        return not (isatty is not None and isatty())
    except ValueError:  # a closed stream
        return True


def say(text: str, logger: logging.Logger, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """`text` to the console (stdout by default) and to `logger`."""
    stream = stream if stream is not None else sys.stdout
    print(text, file=stream, flush=True)
    logger.log(level, text)


def coverage_so_far(records: Sequence[CoverageRecord], total: int) -> str:
    """`ruledsl: 7 of 9 rules see their keys; not yet: a (why), …; not on this configuration: b (why)`.

    Said after the first training row: a rule sees its keys when it is not held back by the
    configuration and each of its metrics has a key in the run (a rule still filling its
    windows, `too_short` so far, sees them)."""
    blind = _first_per_rule(r for r in records if r.reason not in CONFIG_REASONS and r.reason != "too_short")
    config = _first_per_rule(r for r in records if r.reason in CONFIG_REASONS)
    text = f"ruledsl: {total - len(blind) - len(config)} of {total} rules see their keys"
    if blind:
        text += "; not yet: " + ", ".join(f"{r.rule} ({r.detail})" for r in blind)
    if config:
        text += "; not on this configuration: " + ", ".join(f"{r.rule} ({r.detail})" for r in config)
    return text


def coverage_at_end(records: Sequence[CoverageRecord], total: int) -> str:
    """The rules never evaluated on the run, one line each with the reason; those the configuration
    kept from running apart."""
    evaluated = total - len({r.rule for r in records})
    lines = [f"ruledsl: at the end of training, {evaluated} of {total} rules were evaluated on this run"]
    lines += [f"  never evaluated: {_who(r)} ({r.reason}: {r.detail})" for r in records
              if r.reason not in CONFIG_REASONS]
    lines += [f"  not on this configuration: {_who(r)} ({r.reason}: {r.detail})" for r in records
              if r.reason in CONFIG_REASONS]
    return "\n".join(lines)


def _first_per_rule(records: Iterable[CoverageRecord]) -> list[CoverageRecord]:
    found: dict[str, CoverageRecord] = {}
    for record in records:
        found.setdefault(record.rule, record)
    return list(found.values())


def _who(record: CoverageRecord) -> str:
    return f"{record.rule} [{record.metric}]" if record.metric is not None else record.rule
