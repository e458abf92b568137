"""What an alert is, for every engine and every output: severities, records, messages, JSON.

Both engines report episodes as records with the fields of docs/language.md §4, in that
order; the callback, the trackers and the report formats read them. This module
is the one place those fields, the severity scale and the JSON spelling of
non-finite numbers are written down.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rules import the severity scale from here: no import back at run time
    from ruledsl.compile import CompiledRule


class Severity(enum.Enum):
    """The severity scale, mildest first: a severity ranks above every one before it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @property
    def icon(self) -> str:
        return _ICONS[self]

    @property
    def ansi(self) -> str:
        """The terminal colour (ANSI SGR code) of its mark."""
        return _ANSI[self]


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}
_ICONS = {Severity.LOW: "·", Severity.MEDIUM: "⚠", Severity.HIGH: "🚨", Severity.CRITICAL: "🔥"}
_ANSI = {Severity.LOW: "2", Severity.MEDIUM: "33", Severity.HIGH: "31", Severity.CRITICAL: "1;31"}
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)


def severity_rank(name: str) -> int:
    """The rank of a severity by name (ValueError for a name not on the scale)."""
    return Severity(name).rank


def severity_mark(name: str, terminal: bool, colour: bool = False) -> str:
    """`[HIGH]`; with its icon on a terminal, in colour when asked."""
    severity = Severity(name)
    mark = f"[{name.upper()}]"
    if colour:
        mark = f"\x1b[{severity.ansi}m{mark}\x1b[0m"
    return f"{severity.icon} {mark}" if terminal else mark


def at_least(name: str, floor: str) -> bool:
    """Whether severity `name` is `floor` or worse (an unknown name never is)."""
    try:
        return severity_rank(name) >= severity_rank(floor)
    except ValueError:
        return False


@dataclass(frozen=True)
class AlertRecord:
    """One alert episode (docs/language.md §4): the run, the rule, where it started and ended, what it read."""

    run: Any
    rule: str
    severity: str
    trainer: str | None
    metric: str | None  # the log key read (shorthand rules); None for a full expression
    first_step: int
    last_step: int
    n_evals: int
    value: float | None  # the reported value at first_step
    message: str

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(RECORD_FIELDS, astuple(self)))

    def as_row(self) -> tuple[Any, ...]:
        return astuple(self)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(AlertRecord))


@dataclass(frozen=True)
class CoverageRecord:
    """A rule never evaluated on a run, and why (docs/language.md §4): `metric` is the matched key
    of a pattern rule, else None; `reason` is one of COVERAGE_REASONS, the first that applies."""

    run: Any
    rule: str
    metric: str | None
    reason: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(COVERAGE_FIELDS, astuple(self)))


COVERAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CoverageRecord))
COVERAGE_REASONS = ("when_false", "config_unknown", "no_key", "no_joint_rows", "too_short")
EVALUATION_FIELDS = ("run", "step", "rule", "fired", "value")


def episode_message(compiled: CompiledRule, trainer: str | None, *, run: Any, metric: str | None,
                    step: int, value: float | None, baseline: float | None) -> str:
    """The rule's message for an episode starting at `step` (docs/language.md §4, §5)."""
    rule = compiled.rule
    fields_ = {
        "value": value, "metric": metric, "step": step, "run": str(run),
        "name": rule.name, "severity": rule.severity, "trainer": trainer,
        "window": rule.window if rule.condition.is_shorthand else None,
        "threshold": compiled.threshold, "baseline": _finite_or_none(baseline),
    }
    return rule.message.render(fields_)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """Spec §4 JSON: non-finite floats as "nan"/"inf"/"-inf"; other objects as numbers or text."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    try:
        return json_safe(float(value))  # numpy and torch scalars
    except (TypeError, ValueError):
        return str(value)
