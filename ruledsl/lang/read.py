"""Front end of the compiler: text → checked `Condition` (spec §3) or inline alert (§6).

parser.py reads, checker.py decides meaning; this module strings them together
for the two kinds of text a user writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruledsl.lang import ast
from ruledsl.lang.checker import check_condition, shorthand_reading
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span
from ruledsl.lang.parser import parse_condition_tree, parse_inline_tree
from ruledsl.lang.templates import Template, parse_template


def parse_condition(text: str) -> ast.Condition:
    """Parse and check a rule's condition, or raise RuleSyntaxError (line, column, caret)."""
    body, sustain, span = parse_condition_tree(text)
    return check_condition(body, sustain, span, text)


@dataclass(frozen=True)
class InlineAlert:
    trainers: tuple[str, ...]
    metric: str | None
    condition: ast.Condition
    severity: str
    message: Template


def read_inline_alert(text: str) -> InlineAlert:
    """`TRAINERS: CONDITION [for N steps] -> SEVERITY: MESSAGE`, checked."""
    tree = parse_inline_tree(text)
    trainers = tuple(dict.fromkeys("all" if t in ("all", "common") else t for t in tree.trainers))
    reading = shorthand_reading(tree.condition, tree.condition_span)
    start, end = tree.condition_span.start, tree.condition_span.end
    metric: str | None = None
    if reading is not None:
        metric_ref, start = reading
        metric = metric_ref.name
    condition = _condition_part(text, start, end)
    message_offset = text.rstrip().rfind(tree.message) if tree.message else len(text)
    try:
        message = parse_template(tree.message)
    except RuleSyntaxError as exc:
        raise _moved(exc, text, message_offset) from None
    return InlineAlert(trainers, metric, condition, tree.severity, message)


def _condition_part(text: str, start: int, end: int) -> ast.Condition:
    """Check text[start:end] as a condition of its own, errors placed in `text`."""
    part = text[start:end]
    leading = len(part) - len(part.lstrip())
    try:
        return parse_condition(part.strip())
    except RuleSyntaxError as exc:
        raise _moved(exc, text, start + leading) from None


def _moved(exc: RuleSyntaxError, text: str, offset: int) -> RuleSyntaxError:
    """The same error, positioned in the whole inline alert."""
    d = exc.diagnostic
    span = Span.at(text, offset + d.span.start, d.span.end - d.span.start)
    return RuleSyntaxError(Diagnostic(d.code, d.message, span, d.hint), text, exc.expected)
