"""What the incremental engine reports: episode events and rule faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ruledsl.model.rule import Rule

STARTED, RESOLVED, WITHDRAWN = "started", "resolved", "withdrawn"


@dataclass(frozen=True)
class AlertEvent:
    """An episode started or resolved (or, rarely, an earlier event withdrawn).

    `record` has the docs/language.md §4 fields (as `ruledsl.audit` rows). For "started" it is
    the episode so far: last_step = first_step, n_evals = 1. For "resolved" it is
    the finished episode. For "withdrawn" it is the record of an event returned
    earlier that no longer holds, and `withdraws` is that event's kind: this only
    happens when a later row of the same step replaced a value the rule had read
    (see ruledsl/engines/live/monitor.py).
    """

    kind: str
    record: dict[str, Any]
    rule: Rule = field(repr=False, compare=False)
    step: int  # the step whose row caused the event
    withdraws: str | None = None


@dataclass(frozen=True)
class Fault:
    """A rule that raised while evaluating: it is switched off, the others go on."""

    rule: str
    step: int
    error: str
