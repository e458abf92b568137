"""Front end of the compiler: text → checked `Condition` (docs/language.md §3) or inline alert (§6).

parser.py reads, checker.py decides meaning; this module strings them together
for the two kinds of text a user writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruledsl.lang import ast, meaning
from ruledsl.lang.checker import check_condition, check_when, inline_shorthand
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span
from ruledsl.lang.parser import parse_condition_tree, parse_inline_tree
from ruledsl.lang.templates import Template, parse_template


def parse_condition(text: str) -> ast.Condition:
    """Parse and check a rule's condition, or raise RuleSyntaxError (line, column, caret)."""
    body, sustain, span = parse_condition_tree(text)
    return check_condition(body, sustain, span, text)


def parse_when(text: str) -> ast.Condition:
    """Parse and check a rule's `when` (comparisons of config.KEY with literals), or raise RuleSyntaxError."""
    body, sustain, span = parse_condition_tree(text)
    return check_when(body, sustain, span, text)


@dataclass(frozen=True)
class InlineAlert:
    trainers: tuple[str, ...]
    metric: str | None
    condition: ast.Condition
    severity: str
    message: Template


def read_inline_alert(text: str) -> InlineAlert:
    """`TRAINERS: CONDITION [for N steps] -> SEVERITY: MESSAGE`, parsed once and checked.

    Errors are placed in `text`, and so are the spans of the condition's nodes: its
    `source` is the whole alert, its `span` the condition (after the metric).
    """
    _refuse_undecodable(text)
    tree = parse_inline_tree(text)
    trainers = tuple(dict.fromkeys("all" if t in ("all", "common") else t for t in tree.trainers))
    body, span, metric = tree.condition, tree.condition_span, None
    reading = inline_shorthand(body, span, text)
    if reading is not None:
        metric_ref, body, span = reading
        metric = metric_ref.name
        problem = meaning.pattern_problem(metric)
        if problem:
            raise RuleSyntaxError(Diagnostic("E113", problem, metric_ref.span), text)
    condition = check_condition(body, tree.sustain, span, text)
    if condition.is_shorthand and metric is None:  # `dpo: < 0.5 -> …`: a rule that could never run
        raise RuleSyntaxError(Diagnostic("E108", "this shorthand has no metric to apply to", condition.span,
                                         "start the condition with the metric: 'dpo: loss < 0.5 -> …'"), text)
    message_offset = text.rstrip().rfind(tree.message) if tree.message else len(text)
    try:
        message = parse_template(tree.message)
    except RuleSyntaxError as exc:
        raise _moved(exc, text, message_offset) from None
    return InlineAlert(trainers, metric, condition, tree.severity, message)


def _moved(exc: RuleSyntaxError, text: str, offset: int) -> RuleSyntaxError:
    """The same error, positioned in the whole inline alert."""
    d, moved = exc.diagnostic, exc.span
    span = Span.at(text, offset + moved.start, moved.end - moved.start)
    return RuleSyntaxError(Diagnostic(d.code, d.message, span, d.hint), text, exc.expected)


def _refuse_undecodable(text: str) -> None:
    """A lone surrogate is a byte that was not UTF-8 (Python decodes such a command-line byte to
    one): no message or name can hold it, so it is refused where it stands."""
    for offset, character in enumerate(text):
        if "\ud800" <= character <= "\udfff":
            raise RuleSyntaxError(Diagnostic("E101", "a byte that is not UTF-8 text", Span.at(text, offset, 1),
                                             hint="write the alert in UTF-8"), text)
