"""The rule model (spec §1): one immutable `Rule` per rule file or inline alert.

`Rule.from_dict` is where a mapping (a loaded YAML file, a dict in code)
becomes a rule: it checks every field, parses the condition and the message,
and reports *all* problems at once as a RuleValidationError whose
diagnostics name the field (and the position inside it, for conditions).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ruledsl.alerts import SEVERITIES
from ruledsl.lang import ast
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, RuleValidationError
from ruledsl.lang.read import parse_condition, read_inline_alert
from ruledsl.lang.templates import Template, parse_template

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
TRAINER_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
ALL_TRAINERS = "all"
TRAINER_SYNONYMS = {"common": ALL_TRAINERS, "*": ALL_TRAINERS}

FIELDS = ("name", "trainers", "metric", "condition", "severity", "message", "description",
          "window", "min_steps", "for", "reference", "enabled", "tags", "tests")
REQUIRED = ("name", "trainers", "condition", "severity", "message")


@dataclass(frozen=True)
class Rule:
    name: str
    trainers: tuple[str, ...]
    condition: ast.Condition
    severity: str
    message: Template
    metric: str | None = None
    description: str | None = None
    window: int = 1
    min_steps: int = 0
    sustain: int = 1  # the `for` field, or `for N steps` written in the condition
    reference: tuple[str, ...] = ()
    enabled: bool = True
    tags: tuple[str, ...] = ()
    tests: tuple[Mapping[str, Any], ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)  # the `x-…` keys
    origin: str | None = None  # where the rule came from: a file path, "inline", "code"

    @property
    def applies_to_all(self) -> bool:
        return ALL_TRAINERS in self.trainers

    def applies_to(self, trainer: str | None) -> bool:
        """Whether this rule runs for `trainer` (None: unknown, every rule runs)."""
        return trainer is None or self.applies_to_all or trainer in self.trainers

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names the rule reads, as written (aliases unresolved)."""
        if self.condition.is_shorthand:
            return (self.metric,) if self.metric else ()
        return tuple(ast.metric_names(self.condition.body))

    def to_dict(self) -> dict[str, Any]:
        """The rule as a mapping that `from_dict` reads back to an equal rule."""
        out: dict[str, Any] = {
            "name": self.name, "trainers": list(self.trainers), "condition": self.condition.source,
            "severity": self.severity, "message": self.message.source, "window": self.window,
            "min_steps": self.min_steps, "for": self.sustain, "enabled": self.enabled,
        }
        if self.metric is not None:
            out["metric"] = self.metric
        if self.condition.sustain is not None:
            del out["for"]
        optional = {"description": self.description, "reference": list(self.reference) or None,
                    "tags": list(self.tags) or None, "tests": list(self.tests) or None}
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extensions)
        return out

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], *, origin: str | None = None) -> "Rule":
        """Build a rule from a mapping with the fields of spec §1, or raise RuleValidationError."""
        return _RuleReader(mapping, origin).read()


class _RuleReader:
    """Reads one mapping field by field, collecting every problem."""

    def __init__(self, mapping: Mapping[str, Any], origin: str | None):
        self.mapping = mapping
        self.origin = origin
        self.problems: list[Diagnostic] = []

    def problem(self, field_name: str, message: str, hint: str | None = None, code: str = "E301",
                span=None) -> None:
        self.problems.append(Diagnostic(code, message, span, hint, field=field_name))

    def read(self) -> Rule:
        if not isinstance(self.mapping, Mapping):
            raise RuleValidationError([Diagnostic(
                "E301", f"a rule must be a mapping of fields, not {type(self.mapping).__name__}")])
        self.unknown_keys()
        for name in REQUIRED:
            if name not in self.mapping:
                self.problem(name, f"the required field '{name}' is missing", code="E302")
        name = self.text("name", pattern=NAME_PATTERN, pattern_words="lower case letters, digits and _, "
                         "starting with a letter")
        values = dict(
            name=name,
            trainers=self.trainers(),
            severity=self.choice("severity", SEVERITIES),
            metric=self.text("metric", required=False),
            description=self.text("description", required=False),
            window=self.integer("window", 1, minimum=1),
            min_steps=self.integer("min_steps", 0, minimum=0),
            reference=self.strings("reference"),
            enabled=self.boolean("enabled", True),
            tags=self.strings("tags"),
            tests=self.tests(),
            message=self.message(),
            extensions={k: v for k, v in self.mapping.items() if isinstance(k, str) and k.startswith("x-")},
            origin=self.origin,
        )
        condition = self.condition()
        sustain = self.sustain(condition)
        if condition is not None and condition.is_shorthand and "metric" not in self.mapping:
            self.problem("metric", "a shorthand condition needs the rule's `metric`", code="E302",
                         hint="add `metric: <log key>`, or name the metric in the condition, "
                         "e.g. 'loss < 0.5'")
        if self.problems:
            raise RuleValidationError(self.problems, name if isinstance(name, str) else None)
        return Rule(condition=condition, sustain=sustain, **values)

    # ------------------------------------------------------------ fields

    def unknown_keys(self) -> None:
        for key in self.mapping:
            if not isinstance(key, str) or (key not in FIELDS and not key.startswith("x-")):
                close = [f for f in FIELDS if isinstance(key, str) and f[:3] == key[:3]]
                hint = f"did you mean '{close[0]}'?" if close else "extension keys start with 'x-'"
                self.problem(str(key), f"unknown field '{key}'", hint, code="E303")

    def text(self, name: str, *, required: bool = True, pattern=None, pattern_words: str = ""):
        value = self.mapping.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(name, f"'{name}' must be a non-empty string, got {_shown(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(name, f"'{name}' {value!r} must be {pattern_words}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]):
        value = self.mapping.get(name)
        if value is None:
            return None
        if value not in allowed:
            self.problem(name, f"'{name}' must be one of {', '.join(allowed)}, got {_shown(value)}")
            return None
        return value

    def integer(self, name: str, default: int, *, minimum: int):
        value = self.mapping.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, f"'{name}' must be a whole number, got {_shown(value)}", code="E304")
            return default
        if value < minimum:
            self.problem(name, f"'{name}' must be at least {minimum}, got {value}", code="E304")
            return default
        return value

    def boolean(self, name: str, default: bool):
        value = self.mapping.get(name, default)
        if not isinstance(value, bool):
            self.problem(name, f"'{name}' must be true or false, got {_shown(value)}")
            return default
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.mapping.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        self.problem(name, f"'{name}' must be a string or a list of strings, got {_shown(value)}")
        return ()

    def trainers(self) -> tuple[str, ...]:
        value = self.mapping.get("trainers")
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            self.problem("trainers", f"'trainers' must be a non-empty list of trainer ids, got {_shown(value)}",
                         hint="e.g. trainers: [grpo, ppo], or [all]")
            return ()
        trainers = []
        for item in value:
            if not isinstance(item, str) or not TRAINER_PATTERN.match(TRAINER_SYNONYMS.get(item, item)):
                self.problem("trainers", f"{_shown(item)} is not a trainer id",
                             hint="trainer ids are TRL's module names: sft, dpo, grpo, …, or all")
                continue
            trainers.append(TRAINER_SYNONYMS.get(item, item))
        return tuple(dict.fromkeys(trainers))

    def tests(self) -> tuple[Mapping[str, Any], ...]:
        value = self.mapping.get("tests")
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, Mapping) for c in value):
            self.problem("tests", "'tests' must be a list of cases (mappings)")
            return ()
        return tuple(value)

    def message(self) -> Template | None:
        source = self.mapping.get("message")
        if source is None:
            return None
        if not isinstance(source, str):
            self.problem("message", f"'message' must be a string, got {_shown(source)}")
            return None
        try:
            return parse_template(source)
        except RuleSyntaxError as exc:
            self.problems.append(_in_field(exc, "message"))
            return None

    def condition(self) -> ast.Condition | None:
        source = self.mapping.get("condition")
        if source is None:
            return None
        if isinstance(source, (int, float)) and not isinstance(source, bool):
            self.problem("condition", f"'condition' must be a string, got the number {source}",
                         hint=f"quote it in YAML, e.g. condition: \"< {source}\"")
            return None
        if not isinstance(source, str):
            self.problem("condition", f"'condition' must be a string, got {_shown(source)}")
            return None
        try:
            return parse_condition(source)
        except RuleSyntaxError as exc:
            self.problems.append(_in_field(exc, "condition"))
            return None

    def sustain(self, condition: ast.Condition | None) -> int:
        written = self.integer("for", 1, minimum=1)
        if condition is not None and condition.sustain is not None:
            if "for" in self.mapping:
                self.problem("for", "both the `for` field and 'for N steps' in the condition are given",
                             hint="keep one of them", code="E305")
            return condition.sustain
        return written


def _in_field(exc: RuleSyntaxError, field_name: str) -> Diagnostic:
    d = exc.diagnostic
    return Diagnostic(d.code, d.message, d.span, d.hint, d.severity, field_name)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rule_from_inline(text: str) -> Rule:
    """The `Rule` an inline alert describes (spec §6)."""
    alert = read_inline_alert(text)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9]+", "_", (alert.metric or "expr").lower()).strip("_") or "expr"
    name = f"inline_{stem[:40]}_{digest}"
    return Rule(
        name=name, trainers=alert.trainers, condition=alert.condition, severity=alert.severity,
        message=alert.message, metric=alert.metric, window=1,
        sustain=alert.condition.sustain or 1, origin="inline",
    )
