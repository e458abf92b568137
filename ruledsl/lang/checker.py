"""Semantic checks: a parsed predicate becomes a `Condition`, or a precise error.

The parser accepts shorthand terms and full-expression comparisons anywhere;
this pass decides what the text means (spec §3, §6) and rejects what it
cannot mean: unknown functions, bad windows, `%` outside drop/rise, a
shorthand mixed with named metrics, and so on. Every error points at the
offending node.
"""

from __future__ import annotations

import dataclasses
import difflib
import math

from ruledsl.lang import ast, meaning
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, node_or_span: ast.Node | Span, code: str, message: str, hint: str | None = None) -> RuleSyntaxError:
        span = node_or_span if isinstance(node_or_span, Span) else node_or_span.span
        return RuleSyntaxError(Diagnostic(code, message, span, hint), self.source)

    # ------------------------------------------------------------ the whole condition

    def condition(self, body: ast.Predicate, sustain: int | None, span: Span) -> ast.Condition:
        self.predicate(body)
        terms = ast.leaves(body)
        shorthand = [t for t in terms if isinstance(t, ast.SHORTHAND_TERMS)]
        named = [t for t in terms if not isinstance(t, ast.SHORTHAND_TERMS)]
        for term in named:
            if isinstance(term, ast.AppliedShorthand):
                raise self.fail(
                    term, "E108",
                    f"a shorthand cannot follow a metric name here ('{term.metric.name} …')",
                    hint="give the metric in the rule's `metric:` field and write only the shorthand, "
                    "e.g. condition: 'drop(50%)'; inline alerts may start with the metric",
                )
        if shorthand and named:
            raise self.fail(
                shorthand[0], "E108",
                "this shorthand has no metric to apply to: the condition also names metrics",
                hint="use one style: shorthands only (with `metric:`) or comparisons that name "
                "their metrics, e.g. 'loss < 0.5 or loss > 2'",
            )
        nonfinite = [t for t in shorthand if isinstance(t, ast.NonFinite)]
        if nonfinite and not isinstance(body, ast.NonFinite):  # `not nonfinite` combines it too
            raise self.fail(nonfinite[0], "E109", "'nonfinite' cannot be combined with other terms",
                            hint="write a separate rule with condition: nonfinite")
        if sustain is not None and sustain < 1:
            raise self.fail(span, "E104", f"'for {sustain} steps' must count at least 1 step")
        kind = "shorthand" if shorthand else "expression"
        return ast.Condition(body, kind, sustain, self.source, span)

    # ------------------------------------------------------------ predicates

    def predicate(self, node: ast.Node) -> None:
        if isinstance(node, (ast.And, ast.Or)):
            for operand in node.operands:
                self.predicate(operand)
        elif isinstance(node, ast.Not):
            self.predicate(node.operand)
        elif isinstance(node, ast.Comparison):
            self.value(node.left)
            self.value(node.right)
        elif isinstance(node, ast.AppliedShorthand):
            self.shorthand(node.term)
        elif isinstance(node, ast.SHORTHAND_TERMS):
            self.shorthand(node)
        else:
            raise self.fail(node, "E103", "expected a comparison here, found a bare value",
                            hint="compare it with something, e.g. 'loss > 2'")

    # ------------------------------------------------------------ shorthand terms

    def shorthand(self, term: ast.ShorthandTerm) -> None:
        if isinstance(term, ast.ShorthandCompare):
            self.plain_number(term.threshold)
        elif isinstance(term, ast.Between):
            self.plain_number(term.low)
            self.plain_number(term.high)
            if term.low.value > term.high.value:
                name = "range" if term.inside else "outside"
                raise self.fail(term, "E105",
                                f"{name}(a, b) needs a <= b, got {term.low.value:g} > {term.high.value:g}",
                                hint=f"write {name}({term.high.value:g}, {term.low.value:g})")
        elif isinstance(term, ast.Change):
            self.number_with_unit(term.percent, "%", f"{term.direction}(P%)")
            if term.percent.value <= 0:
                raise self.fail(term.percent, "E105",
                                f"the percentage of {term.direction}() must be greater than 0")
        elif isinstance(term, ast.Spike):
            self.number_with_unit(term.factor, "x", "spike(Kx)")
            if term.factor.value <= 0:
                raise self.fail(term.factor, "E105", "the factor of spike() must be greater than 0",
                                hint="spike(3x) fires when a value is at least 3 times the previous mean")
        elif isinstance(term, ast.Flat):
            self.plain_number(term.tolerance)
            if term.tolerance.value < 0:
                raise self.fail(term.tolerance, "E105", "the tolerance of flat() cannot be negative")

    def plain_number(self, number: ast.Number) -> None:
        if number.unit == "%":
            raise self.fail(number, "E105", "a percentage is only meaningful inside drop() or rise()",
                            hint=f"write {number.value / 100:g} for a fraction")
        if number.unit == "x":
            raise self.fail(number, "E105", "a multiplier like '3x' is only meaningful inside spike()")
        if not math.isfinite(number.value):
            raise self.fail(number, "E105", "this number is too large")

    def number_with_unit(self, number: ast.Number, unit: str, where: str) -> None:
        if number.unit not in (None, unit):
            raise self.fail(number, "E105", f"'{number.unit}' does not belong in {where}",
                            hint=f"write the number with '{unit}' or with no suffix")
        if not math.isfinite(number.value):
            raise self.fail(number, "E105", "this number is too large")

    # ------------------------------------------------------------ values

    def value(self, node: ast.Node) -> None:
        if isinstance(node, ast.Number):
            self.plain_number(node)
        elif isinstance(node, ast.MetricRef):
            return
        elif isinstance(node, ast.Negative):
            self.value(node.operand)
        elif isinstance(node, ast.BinaryOp):
            self.value(node.left)
            self.value(node.right)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.SHORTHAND_TERMS):
            raise self.fail(node, "E108", "a shorthand cannot be used as a value")
        else:
            raise self.fail(node, "E103", "expected a value here, found a condition",
                            hint="comparisons cannot be compared or added; combine them with and/or")

    def call(self, call: ast.Call) -> None:
        signature = meaning.FUNCTIONS.get(call.name)
        if signature is None:
            close = difflib.get_close_matches(call.name, list(meaning.FUNCTIONS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            known = ", ".join(meaning.FUNCTIONS)
            raise self.fail(call, "E102", f"unknown function '{call.name}' (known: {known})", hint=hint)
        usage = f"{call.name}(metric, W)" if signature.over_series else f"{call.name}(expression)"
        if len(call.args) != signature.arity:
            raise self.fail(call, "E103",
                            f"{call.name}() takes {signature.arity} argument(s), got {len(call.args)}",
                            hint=f"write {usage}")
        if not signature.over_series:
            self.value(call.args[0])
            return
        metric, window = call.args
        if not isinstance(metric, ast.MetricRef):
            raise self.fail(metric, "E103", f"the first argument of {call.name}() must be a metric name",
                            hint=f"write {usage}")
        if not (isinstance(window, ast.Number) and window.unit is None
                and float(window.value).is_integer() and window.value >= 1):
            raise self.fail(window, "E104",
                            f"the window of {call.name}() must be a whole number of values, at least 1",
                            hint=f"write {usage}, e.g. {call.name}({metric.name}, 20)")


def check_condition(body: ast.Predicate, sustain: int | None, span: Span, source: str) -> ast.Condition:
    """The checked condition for a parsed predicate, or RuleSyntaxError."""
    return _Checker(source).condition(body, sustain, span)


def inline_shorthand(body: ast.Predicate, condition_span: Span, source: str
                     ) -> tuple[ast.MetricRef, ast.Predicate, Span] | None:
    """Spec §6: an inline condition that starts with a metric followed by a shorthand.

    When the text reads as `METRIC SHORTHAND …` and nothing else in it names a
    metric, the metric and the tree rewritten as a shorthand condition (its
    leading `METRIC SHORTHAND` or `METRIC < c` leaf replaced by the bare term),
    with the span of the condition after the metric; None otherwise (it is then a
    full expression). The tree is rewritten, never the text parsed again, so every
    position stays one in the inline alert.
    """
    terms = ast.leaves(body)
    first, rest = terms[0], terms[1:]
    if first.span.start != condition_span.start:
        return None  # the text starts with '(' or 'not', not with the metric
    if any(not isinstance(t, ast.SHORTHAND_TERMS) for t in rest):
        return None
    if isinstance(first, ast.AppliedShorthand):
        metric, term = first.metric, first.term
    elif (isinstance(first, ast.Comparison) and isinstance(first.left, ast.MetricRef)
          and _is_number_literal(first.right)):
        metric, term = first.left, _as_shorthand_compare(first, source)
    else:
        return None
    span = _from(term.span.start, condition_span, source)
    return metric, _with_first_leaf(body, term, source), span


def _as_shorthand_compare(comparison: ast.Comparison, source: str) -> ast.ShorthandCompare:
    """`loss < -0.5` read as the term `< -0.5` (one number, its sign folded in)."""
    right = comparison.right
    value = right.value if isinstance(right, ast.Number) else -right.operand.value  # type: ignore[union-attr]
    unit = right.unit if isinstance(right, ast.Number) else right.operand.unit  # type: ignore[union-attr]
    threshold = ast.Number(value, right.span, unit)
    op_start = source.index(comparison.op, comparison.left.span.end)
    return ast.ShorthandCompare(comparison.op, threshold, _from(op_start, comparison.span, source))


def _with_first_leaf(node: ast.Predicate, leaf: ast.Predicate, source: str) -> ast.Predicate:
    """`node` with its first leaf (reached through leading and/or operands) replaced by `leaf`."""
    if isinstance(node, (ast.And, ast.Or)):
        first = _with_first_leaf(node.operands[0], leaf, source)
        return dataclasses.replace(node, operands=(first, *node.operands[1:]),
                                   span=_from(first.span.start, node.span, source))
    return leaf


def _from(start: int, span: Span, source: str) -> Span:
    """`span` cut to begin at offset `start`."""
    return Span.at(source, start, span.end - start)


def _is_number_literal(node: ast.Value) -> bool:
    if isinstance(node, ast.Negative):
        node = node.operand
    return isinstance(node, ast.Number)
