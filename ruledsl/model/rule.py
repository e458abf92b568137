"""The rule model (docs/language.md §1): one immutable `Rule` per rule file or inline alert.

`Rule.from_dict` is where a mapping (a loaded YAML file, a dict in code)
becomes a rule: it checks every field, parses the condition and the message,
and reports *all* problems at once as a RuleValidationError whose
diagnostics name the field (and the position inside it, for conditions).

It accepts exactly what schemas/rule.schema.json accepts, and rejects more only
where a schema cannot see (the condition and template grammars, a shorthand
without `metric`, `for` given twice): the builtin library is loaded without the
schema, so this is then the only check. tests/data/rule_contract_cases.yaml runs
both on one table of cases, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ruledsl.alerts import SEVERITIES
from ruledsl.lang import ast
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, RuleValidationError, Span
from ruledsl.lang.meaning import MAX_STEPS, MAX_WINDOW, is_pattern
from ruledsl.lang.read import parse_condition, parse_when, read_inline_alert
from ruledsl.lang.templates import Template, parse_template
from ruledsl.model.catalog import Catalog, trainer_catalog

# The schema's patterns, verbatim (a test compares them): `(?!\n)` keeps Python's `$`, which also
# matches before a final newline, to the end of the text as in the editors' (ECMA) regexes.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$(?!\n)")
TRAINER_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$(?!\n)")
NOT_BLANK = re.compile(r"\S")  # a text must hold more than white space (the schema's pattern)
ALL_TRAINERS = "all"
# Only `common` in rule files (docs/language.md §8); `*` is the inline alerts' wildcard, read by lang/read.py.
TRAINER_SYNONYMS = {"common": ALL_TRAINERS}

FIELDS = ("name", "trainers", "metric", "condition", "severity", "message", "description",
          "window", "min_steps", "for", "when", "reference", "enabled", "tags", "tests")
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
    when: ast.Condition | None = None  # config.KEY comparisons: the runs the rule applies to (docs/language.md §1, §2)
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
            "name": self.name, "trainers": list(self.trainers), "condition": self.condition.text,
            "severity": self.severity, "message": self.message.source, "window": self.window,
            "min_steps": self.min_steps, "for": self.sustain, "enabled": self.enabled,
        }
        if self.metric is not None:
            out["metric"] = self.metric
        if self.condition.sustain is not None:
            del out["for"]
        if self.when is not None:
            out["when"] = self.when.text
        optional = {"description": self.description, "reference": list(self.reference) or None,
                    "tags": list(self.tags) or None, "tests": list(self.tests) or None}
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update(self.extensions)
        return out

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], *, origin: str | None = None) -> Rule:
        """Build a rule from a mapping with the fields of docs/language.md §1, or raise RuleValidationError."""
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
            metric=self.text("metric"),
            description=self.text("description"),
            window=self.integer("window", 1, minimum=1, maximum=MAX_WINDOW),
            min_steps=self.integer("min_steps", 0, minimum=0, maximum=MAX_STEPS),
            reference=self.strings("reference", or_one=True),
            enabled=self.boolean("enabled", True),
            tags=self.strings("tags", or_one=False),
            tests=self.tests(),
            message=self.message(),
            extensions={k: v for k, v in self.mapping.items() if isinstance(k, str) and k.startswith("x-")},
            origin=self.origin,
        )
        condition = self.condition()
        sustain = self.sustain(condition)
        when = self.when()
        if condition is not None and condition.is_shorthand and "metric" not in self.mapping:
            self.problem("metric", "a shorthand condition needs the rule's `metric`", code="E302",
                         hint="add `metric: <log key>`, or name the metric in the condition, "
                         "e.g. 'loss < 0.5'")
        metric = values["metric"]
        if condition is not None and not condition.is_shorthand and isinstance(metric, str) and is_pattern(metric):
            self.problem("metric", f"the metric pattern '{metric}' only goes with a shorthand condition; this "
                         "condition is a full expression, which names its own metrics", code="E113",
                         hint="remove `metric`, or write the condition as a shorthand (`< 0.5`)")
        if self.problems:
            raise RuleValidationError(self.problems, name if isinstance(name, str) else None)
        assert condition is not None  # a required field: without it, there was a problem
        return Rule(condition=condition, sustain=sustain, when=when, **values)

    # ------------------------------------------------------------ fields

    def unknown_keys(self) -> None:
        for key in self.mapping:
            if not isinstance(key, str) or (key not in FIELDS and not key.startswith("x-")):
                close = [f for f in FIELDS if isinstance(key, str) and f[:3] == key[:3]]
                hint = f"did you mean '{close[0]}'?" if close else "extension keys start with 'x-'"
                self.problem(str(key), f"unknown field '{key}'", hint, code="E303")

    def value(self, name: str) -> Any:
        """The field's value, None when it is not given. A null is reported: no field takes one."""
        value = self.mapping.get(name)
        if value is None and name in self.mapping:
            self.problem(name, f"'{name}' has no value (null)",
                         hint=f"in YAML, '{name}:' with nothing after it is null: give a value, "
                         "or remove the line" + (" (the field is required)" if name in REQUIRED else ""))
        return value

    def text(self, name: str, *, pattern=None, pattern_words: str = ""):
        value = self.value(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(name, f"'{name}' must be a string, got {_shown(value)}", hint=_quote_hint(name, value))
            return None
        if not NOT_BLANK.search(value):
            self.problem(name, f"'{name}' is blank, got {value!r}", hint="write the text, or remove the line")
            return None
        if pattern is not None and not pattern.search(value):
            self.problem(name, f"'{name}' {value!r} must be {pattern_words}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]):
        value = self.value(name)
        if value is None:
            return None
        if not isinstance(value, str) or value not in allowed:
            lower = value.strip().lower() if isinstance(value, str) else None
            hint = f"write it in lower case: {name}: {lower}" if lower in allowed else None
            self.problem(name, f"'{name}' must be one of {', '.join(allowed)}, got {_shown(value)}", hint)
            return None
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int):
        value = self.value(name)
        if value is None:
            return default
        if not _is_whole(value):
            hint = f"write the number without quotes: {name}: {value.strip()}" \
                if isinstance(value, str) and value.strip().isdigit() else f"a count such as {name}: {minimum + 1}"
            self.problem(name, f"'{name}' must be a whole number, got {_shown(value)}", hint, code="E304")
            return default
        value = int(value)  # JSON has one kind of number: the schema's integer takes 3.0 as 3
        if value < minimum:
            self.problem(name, f"'{name}' must be at least {minimum}, got {value}", code="E304")
            return default
        if value > maximum:  # bounded where it is written: no engine ever allocates for it
            self.problem(name, f"'{name}' must be at most {maximum:,}, got {value:,}", code="E304")
            return default
        return value

    def boolean(self, name: str, default: bool):
        value = self.value(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(name, f"'{name}' must be true or false, got {_shown(value)}",
                         hint=f"write {name}: true or {name}: false, without quotes")
            return default
        return value

    def strings(self, name: str, *, or_one: bool) -> tuple[str, ...]:
        """A list of strings, or (`or_one`) a single string standing for a list of one."""
        value = self.value(name)
        if value is None:
            return ()
        if isinstance(value, str):
            if or_one:
                return (value,)
            self.problem(name, f"'{name}' must be a list of strings, got the string {value!r}",
                         hint=f"write a list: {name}: [{value}]")
            return ()
        if not isinstance(value, (list, tuple)):
            words = "a string or a list of strings" if or_one else "a list of strings"
            self.problem(name, f"'{name}' must be {words}, got {_shown(value)}")
            return ()
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(name, f"{name}[{index}] must be a string, got {_shown(item)}",
                             hint=_quote_hint(None, item))
        return tuple(value) if all(isinstance(item, str) for item in value) else ()

    def trainers(self) -> tuple[str, ...]:
        value = self.value("trainers")
        if value is None:
            return ()
        if isinstance(value, str):
            self.problem("trainers", f"'trainers' must be a list of trainer ids, got the string {value!r}",
                         hint=f"write a list: trainers: [{_trainer_hint_id(value)}]")
            return ()
        if not isinstance(value, (list, tuple)) or not value:
            self.problem("trainers", f"'trainers' must be a non-empty list of trainer ids, got {_shown(value)}",
                         hint="e.g. trainers: [grpo, ppo], or [all]")
            return ()
        trainers = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not TRAINER_PATTERN.search(item):
                self.problem("trainers", f"{trainer_item(index)}: {_shown(item)} is not a trainer id",
                             hint=_trainer_hint(item))
                continue
            trainers.append(TRAINER_SYNONYMS.get(item, item))
        return tuple(dict.fromkeys(trainers))

    def tests(self) -> tuple[Mapping[str, Any], ...]:
        value = self.value("tests")
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            self.problem("tests", f"'tests' must be a list of cases, got {_shown(value)}",
                         hint="each case: {series: {metric: [values]}, expect: [{first_step: N}]}")
            return ()
        problems = [p for index, case in enumerate(value) for p in _case_problems(case, f"tests[{index}]")]
        for message in problems:
            self.problem("tests", message, hint="a case has series and expect, optionally name, steps and config "
                         "(docs/language.md §7)")
        return () if problems else tuple(value)

    def message(self) -> Template | None:
        source = self.value("message")
        if source is None:
            return None
        if not isinstance(source, str):
            self.problem("message", f"'message' must be a string, got {_shown(source)}",
                         hint=_quote_hint("message", source))
            return None
        try:
            return parse_template(source)
        except RuleSyntaxError as exc:
            self.problems.append(_in_field(exc, "message"))
            return None

    def condition(self) -> ast.Condition | None:
        source = self.value("condition")
        if source is None:
            return None
        if isinstance(source, (int, float)) and not isinstance(source, bool):
            self.problem("condition", f"'condition' must be a string, got the number {source}",
                         hint=f"quote it in YAML, e.g. condition: \"< {source}\"")
            return None
        if not isinstance(source, str):
            self.problem("condition", f"'condition' must be a string, got {_shown(source)}")
            return None
        if not NOT_BLANK.search(source):
            self.problem("condition", f"'condition' is blank, got {source!r}",
                         hint="e.g. condition: \"< 0.5\", or a full expression such as 'loss > 2'")
            return None
        try:
            return parse_condition(source)
        except RuleSyntaxError as exc:
            self.problems.append(_in_field(exc, "condition"))
            return None

    def when(self) -> ast.Condition | None:
        """The `when` field: comparisons of config.KEY with literals, parsed like `condition`
        (its errors carry a span inside the string, which the loader places in the file)."""
        source = self.value("when")
        if source is None:
            return None
        if not isinstance(source, str):
            self.problem("when", f"'when' must be a string, got {_shown(source)}",
                         hint="e.g. when: \"config.loss_type == 'sigmoid'\"")
            return None
        if not NOT_BLANK.search(source):
            self.problem("when", f"'when' is blank, got {source!r}",
                         hint="e.g. when: \"config.use_vllm == true\", or remove the line")
            return None
        try:
            return parse_when(source)
        except RuleSyntaxError as exc:
            self.problems.append(_in_field(exc, "when"))
            return None

    def sustain(self, condition: ast.Condition | None) -> int:
        written = self.integer("for", 1, minimum=1, maximum=MAX_STEPS)
        if condition is not None and condition.sustain is not None:
            if "for" in self.mapping:
                self.problem("for", "both the `for` field and 'for N steps' in the condition are given",
                             hint="keep one of them", code="E305")
            return condition.sustain
        return written


def _quote_hint(key: str | None, value: Any) -> str | None:
    """For a YAML scalar read as a number or a boolean where text belongs."""
    if not isinstance(value, (bool, int, float)):
        return None
    quoted = f'"{str(value).lower() if isinstance(value, bool) else value}"'
    return f"quote it in YAML, e.g. {key}: {quoted}" if key else f"quote it in YAML: {quoted}"


def trainer_item(index: int) -> str:
    """How a problem names the index-th item of `trainers` (its message starts with this and a colon)."""
    return f"trainers[{index}]"


def _trainer_hint_id(text: str) -> str:
    return ALL_TRAINERS if text.strip() == "*" else text.strip()


def _trainer_hint(item: Any) -> str:
    if item == "*":
        return "a rule file says every trainer with `all` (`*` is the inline alerts' wildcard)"
    if isinstance(item, str) and TRAINER_PATTERN.search(item.strip().lower()):
        return f"trainer ids are lower case, without spaces: {item.strip().lower()}"
    return "trainer ids are TRL's module names: sft, dpo, grpo, …, or all"


# ---------------------------------------------------------------- the shape of `tests:` cases (docs/language.md §7)
# As the schema's `tests` says it, so that a file the schema rejects never loads: each check
# yields one sentence per problem, its place written as a path (`tests[0].expect[1].first_step`).


def _mapping(fields: Mapping[str, Callable], required: tuple[str, ...]) -> Callable:
    def check(value: Any, where: str) -> Iterator[str]:
        if not isinstance(value, Mapping):
            yield f"{where} must be a mapping with {', '.join(fields)}, got {_shown(value)}"
            return
        for key in value:
            if key not in fields:
                yield f"{where}: unknown field {key!r} (known: {', '.join(fields)})"
        for key in required:
            if key not in value:
                yield f"{where}: the required field '{key}' is missing"
        for key, check_value in fields.items():
            if key in value:
                yield from check_value(value[key], f"{where}.{key}")
    return check


def _list(item: Callable) -> Callable:
    def check(value: Any, where: str) -> Iterator[str]:
        if not isinstance(value, (list, tuple)):
            yield f"{where} must be a list, got {_shown(value)}"
            return
        for index, element in enumerate(value):
            yield from item(element, f"{where}[{index}]")
    return check


def _each_value(item: Callable, words: str) -> Callable:
    def check(value: Any, where: str) -> Iterator[str]:
        if not isinstance(value, Mapping):
            yield f"{where} must be a mapping of {words}, got {_shown(value)}"
            return
        for key, element in value.items():
            yield from item(element, f"{where}.{key}")
    return check


def _kind(accepts: Callable[[Any], bool], words: str) -> Callable:
    def check(value: Any, where: str) -> Iterator[str]:
        if not accepts(value):
            yield f"{where} must be {words}, got {_shown(value)}"
    return check


def _is_whole(value: Any) -> bool:
    """JSON Schema's integer: a number without a fraction, 3.0 included, never a boolean."""
    return not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, float) and value.is_integer())


def _is_log_value(value: Any) -> bool:
    return value is None or isinstance(value, str) or isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_config_value(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


_WHOLE = _kind(_is_whole, "a whole number")
_TEXT = _kind(lambda value: isinstance(value, str), "a string")
_EPISODE = _mapping({"first_step": _WHOLE, "last_step": _WHOLE, "message": _TEXT, "metric": _TEXT},
                    ("first_step",))
_CASE = _mapping({
    "name": _TEXT,
    "series": _each_value(_list(_kind(_is_log_value, "a number, 'nan', 'inf', '-inf' or null")),
                          "metric key → list of values"),
    "steps": _list(_WHOLE),
    # the run's configuration, flat as docs/language.md §2 has it: key → number, boolean, string or null
    "config": _each_value(_kind(_is_config_value, "a number, a boolean, a string or null"),
                          "configuration key → value"),
    "expect": _list(_EPISODE),
}, ("series", "expect"))


def _case_problems(case: Any, where: str) -> list[str]:
    return list(_CASE(case, where))


def _in_field(exc: RuleSyntaxError, field_name: str) -> Diagnostic:
    d = exc.diagnostic
    return Diagnostic(d.code, d.message, d.span, d.hint, d.severity, field_name)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rule_from_inline(text: str, catalog: Catalog | None = None) -> Rule:
    """The `Rule` an inline alert describes (docs/language.md §6).

    Its trainer ids are checked against `catalog` (default: the builtin metric catalog;
    docs/language.md §8): one it does not have, in any case, is RuleSyntaxError E020 at the
    id, with a did-you-mean. The wildcards are `*` and `all` (`common` is the rule files').
    """
    alert = read_inline_alert(text)
    _check_inline_trainers(text, trainer_catalog(catalog))
    # surrogatepass: a byte the shell could not decode reaches us as a lone surrogate
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9]+", "_", (alert.metric or "expr").lower()).strip("_") or "expr"
    name = f"inline_{stem[:40]}_{digest}"
    return Rule(
        name=name, trainers=alert.trainers, condition=alert.condition, severity=alert.severity,
        message=alert.message, metric=alert.metric, window=1,
        sustain=alert.condition.sustain or 1, origin="inline",
    )


# The trainer list ends at the first `:` (the grammar's `TRAINER` and `*` hold none); ids are words.
_INLINE_TRAINERS = re.compile(r"[A-Za-z0-9_]+|\*")
INLINE_WILDCARDS = ("*", ALL_TRAINERS)


def _check_inline_trainers(text: str, catalog: Catalog) -> None:
    """RuleSyntaxError E020 at the first trainer id of a parsed inline alert that `catalog` lacks."""
    for found in _INLINE_TRAINERS.finditer(text, 0, text.index(":")):
        trainer = found.group()
        if trainer in INLINE_WILDCARDS:
            continue
        if trainer == "common":  # a rule file's wildcard only
            message, hint = "'common' is not a wildcard of inline alerts", \
                "every trainer is `*` or `all` in an inline alert (`common` is for rule files)"
        else:
            problem = catalog.unknown_trainer(trainer)
            if problem is None:
                continue
            message, hint = problem.statement, problem.hint
        span = Span.at(text, found.start(), len(trainer))
        raise RuleSyntaxError(Diagnostic("E020", message, span, hint), text)
