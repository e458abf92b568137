"""Message templates (docs/language.md §5): `{field}` and `{field:spec}`, nothing else.

Templates are parsed once, when the rule is built, into literal text and
field references; rendering only substitutes values. No `str.format` runs on
user text, so no attribute or index access, no conversion, and nothing can
raise or reveal an object at run time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span

NUMERIC_FIELDS = ("value", "step", "window", "threshold", "baseline")
TEXT_FIELDS = ("metric", "run", "name", "severity", "trainer")
FIELDS = NUMERIC_FIELDS + TEXT_FIELDS
NOT_APPLICABLE = "n/a"
MAX_WIDTH = 64  # digits of width or precision a spec may ask for

# [[fill]align][sign][z][#][0][width][grouping][.precision][type], numbers only.
_SPEC = re.compile(
    r"(?:(?P<fill>[^{}])?(?P<align>[<>=^]))?(?P<sign>[-+ ])?z?#?0?"
    r"(?P<width>\d+)?(?P<grouping>[,_])?(?:\.(?P<precision>\d+))?(?P<type>[eEfFgG%])?"
)
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class FieldRef:
    name: str
    spec: str
    span: Span


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[str | FieldRef, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if isinstance(p, FieldRef))

    def render(self, values: Mapping[str, object]) -> str:
        """The message; a field without a value (or not applicable) reads 'n/a'."""
        return "".join(p if isinstance(p, str) else _render_field(p, values.get(p.name))
                       for p in self.parts)


def parse_template(source: str) -> Template:
    """Parse a message template, or raise RuleSyntaxError pointing at the bad field."""
    if not isinstance(source, str):
        raise TypeError(f"a message must be a string, not {type(source).__name__}")
    parts: list[str | FieldRef] = []
    literal: list[str] = []
    position = 0
    while position < len(source):
        char = source[position]
        if source.startswith("{{", position) or source.startswith("}}", position):
            literal.append(char)
            position += 2
            continue
        if char == "}":
            raise _error(source, position, 1, "a single '}' has no matching '{'", "write '}}' for a literal '}'")
        if char != "{":
            literal.append(char)
            position += 1
            continue
        match = _FIELD.match(source, position)
        if match is None:
            raise _error(source, position, 1, "this '{' is not closed", "write '{{' for a literal '{'")
        parts.extend(["".join(literal)] if literal else [])
        literal = []
        parts.append(_field(source, match))
        position = match.end()
    if literal:
        parts.append("".join(literal))
    return Template(source, tuple(parts))


def _field(source: str, match: re.Match[str]) -> FieldRef:
    body = match.group(1)
    span = Span.at(source, match.start(), match.end() - match.start())
    name, _, spec = body.partition(":")
    if name not in FIELDS:
        close = [f for f in FIELDS if f.startswith(name[:2])] if name else []
        hint = f"did you mean '{{{close[0]}}}'?" if close else f"known fields: {', '.join(FIELDS)}"
        shown = name if name.isidentifier() else repr(name)
        raise _error(source, match.start(), len(match.group(0)), f"unknown template field {shown}", hint)
    if spec and name in TEXT_FIELDS:
        raise _error(source, match.start(), len(match.group(0)),
                     f"'{name}' is text: a format spec applies only to numeric fields "
                     f"({', '.join(NUMERIC_FIELDS)})", f"write {{{name}}}")
    spec_match = _SPEC.fullmatch(spec)
    if spec_match is None:
        raise _error(source, match.start(), len(match.group(0)), f"bad format spec {spec!r} for {{{name}}}",
                     "use the numeric format mini-language, e.g. .3f, .1%, .2e or ,")
    for part in ("width", "precision"):
        if spec_match.group(part) and int(spec_match.group(part)) > MAX_WIDTH:
            raise _error(source, match.start(), len(match.group(0)),
                         f"the {part} in {{{name}:{spec}}} is larger than {MAX_WIDTH}", None)
    return FieldRef(name, spec, span)


def _error(source: str, offset: int, length: int, message: str, hint: str | None) -> RuleSyntaxError:
    return RuleSyntaxError(Diagnostic("E201", message, Span.at(source, offset, length), hint), source)


def _render_field(field: FieldRef, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value) and field.name != "value"):
        return NOT_APPLICABLE
    if not field.spec:
        return _plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _plain(value)
    try:
        return format(value, field.spec)
    except (ValueError, TypeError, OverflowError):  # e.g. ',' with a NaN on an old Python
        return _plain(value)


def _plain(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (int, str)):
        return str(value)
    return NOT_APPLICABLE
