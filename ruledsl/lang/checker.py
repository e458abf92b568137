"""Semantic checks: a parsed predicate becomes a `Condition`, or a precise error.

The parser accepts shorthand terms and full-expression comparisons anywhere;
this pass decides what the text means (docs/language.md §3, §6) and rejects what it
cannot mean: unknown functions, bad windows, `%` outside drop/rise, a
shorthand mixed with named metrics, and so on. Every error points at the
offending node.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import cast

from ruledsl.lang import ast, meaning
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span


class _Checker:
    def __init__(self, source: str, mode: str = "condition"):
        self.source = source
        self.mode = mode  # "condition", or "when": a predicate over the run's configuration alone

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
                metric = term.metric
                if not isinstance(metric, ast.MetricRef):  # `1 spike(3)`, `a*b drop(50%)`
                    raise self.fail(term, "E108", "a shorthand can only follow a metric name",
                                    hint="write the metric alone before it (loss spike(3x)), or a comparison")
                raise self._shorthand_after_metric(term, metric.name)
            if isinstance(term, ast.Call) and self._is_applied_shorthand(term):
                raise self._shorthand_after_metric(term, term.name)
        if self.mode == "when":
            self._configuration_only(body, shorthand, sustain, span)
        if shorthand and named:
            raise self.fail(
                shorthand[0], "E108",
                "this shorthand has no metric to apply to: the condition also names metrics",
                hint="use one style: shorthands only (with `metric:`) or comparisons that name "
                "their metrics, e.g. 'loss < 0.5 or loss > 2'",
            )
        alone = [t for t in shorthand if isinstance(t, ast.ALONE_TERMS)]
        if alone and alone[0] is not body:  # `not nonfinite` combines it too
            name = meaning.term(alone[0]).name
            raise self.fail(alone[0], "E109", f"'{name}' cannot be combined with other terms",
                            hint=f"write a separate rule with condition: {name}"
                            + ("" if name == "nonfinite" else "(N)"))
        if sustain is not None and not 1 <= sustain <= meaning.MAX_STEPS:
            raise self.fail(span, "E104", f"'for {sustain} steps' must count from 1 to {meaning.MAX_STEPS:,} steps")
        patterns = [n for n in ast.walk(body) if isinstance(n, ast.MetricRef) and "*" in n.name]
        if patterns:  # a pattern reaches here only inside a full expression (a shorthand's is `metric`)
            raise self.fail(patterns[0], "E113", "a metric pattern cannot be used in a full expression",
                            hint="give the pattern as the rule's metric with a shorthand condition, "
                            "e.g. metric: rewards/*/std, condition: '< 0.01'")
        if not shorthand and self.mode == "condition" and not ast.metric_names(body):
            raise self.fail(body, "E110", "the condition names no metric: it would never be evaluated",
                            hint="compare a metric, e.g. 'loss > 0.68 and step >= 200'")
        kind = "shorthand" if shorthand else ("when" if self.mode == "when" else "expression")
        return ast.Condition(body, kind, sustain, self.source, span)

    def _shorthand_after_metric(self, node: ast.Node, metric: str) -> RuleSyntaxError:
        return self.fail(
            node, "E108", f"a shorthand cannot follow a metric name here ('{metric} …')",
            hint="give the metric in the rule's `metric:` field and write only the shorthand, "
            "e.g. condition: 'drop(50%)'; inline alerts may start with the metric",
        )

    def _configuration_only(self, body: ast.Predicate, shorthand: list[ast.ShorthandTerm], sustain: int | None,
                            span: Span) -> None:
        """`when` reads the run's configuration: no metric, `step`, function, shorthand or `for`."""
        hint = "`when` compares config.KEY with literals, e.g. \"config.use_vllm == true\"; put the rest in `condition`"
        reading = [n for n in ast.walk(body) if isinstance(n, (ast.MetricRef, ast.StepRef, ast.Call))]
        if shorthand or reading:
            node = (shorthand or reading)[0]
            what = {ast.MetricRef: "a metric", ast.StepRef: "`step`", ast.Call: "a function"}.get(
                type(node), "a shorthand")
            raise self.fail(node, "E112", f"`when` cannot read the log: {what} here", hint=hint)
        if sustain is not None:
            raise self.fail(span, "E112", "`when` holds for the whole run: 'for N steps' has no meaning here",
                            hint=hint)

    # ------------------------------------------------------------ predicates

    def predicate(self, node: ast.Node) -> None:
        if isinstance(node, (ast.And, ast.Or)):
            for operand in node.operands:
                self.predicate(operand)
        elif isinstance(node, ast.Not):
            self.predicate(node.operand)
        elif isinstance(node, ast.Comparison):
            self.comparison(node)
        elif isinstance(node, ast.AppliedShorthand):
            self.predicate(node.term)
        elif isinstance(node, ast.SHORTHAND_TERMS):
            self.shorthand(node)
        elif isinstance(node, ast.Call) and self._is_applied_shorthand(node):
            return  # `loss (< 0.5)`: an inline alert's reading, or an error of the whole condition
        else:
            raise self.fail(node, "E103", "expected a comparison here, found a bare value",
                            hint="compare it with something, e.g. 'loss > 2'")

    def comparison(self, node: ast.Comparison) -> None:
        """Literals (`true`, `'sigmoid'`) are compared with == and != only (docs/language.md §3)."""
        for side in (node.left, node.right):
            if isinstance(side, ast.Literal):
                if node.op not in ("==", "!="):
                    raise self.fail(side, "E111", f"{_kind(side)} can only be compared with == or !=",
                                    hint="compare numbers with <, <=, >, >=")
            else:
                self.value(side)

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
        elif isinstance(term, ast.Absent):
            self.count(term.steps, "the steps of absent(N)", 1, meaning.MAX_STEPS, "absent(100)")

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

    def count(self, node: ast.Node, what: str, low: int, high: int, example: str) -> None:
        """A whole number from `low` to `high` (windows, lags, steps), or E104."""
        if not (isinstance(node, ast.Number) and node.unit is None and math.isfinite(node.value)
                and float(node.value).is_integer() and low <= node.value <= high):
            raise self.fail(node, "E104", f"{what} must be a whole number from {low} to {high:,}",
                            hint=f"write e.g. {example}")

    # ------------------------------------------------------------ values

    def value(self, node: ast.Node) -> None:
        if isinstance(node, ast.Number):
            self.plain_number(node)
        elif isinstance(node, (ast.MetricRef, ast.StepRef)):
            return
        elif isinstance(node, ast.ConfigRef):
            if not node.key:
                raise self.fail(node, "E103", "'config.' needs a key of the run's configuration",
                                hint="write e.g. config.beta")
        elif isinstance(node, ast.Literal):
            raise self.fail(node, "E111", f"{_kind(node)} cannot be used in arithmetic or as a function's argument",
                            hint="compare it with == or != (config.loss_type == 'sigmoid')")
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

    def _is_applied_shorthand(self, call: ast.Call) -> bool:
        """`loss (< 0.5)`: a name that is no function, applied to a shorthand in parentheses."""
        if call.name in meaning.FUNCTIONS or len(call.args) != 1:
            return False
        argument = call.args[0]
        return all(isinstance(leaf, ast.SHORTHAND_TERMS) for leaf in ast.leaves(argument))  # type: ignore[arg-type]

    def call(self, call: ast.Call) -> None:
        signature = meaning.FUNCTIONS.get(call.name)
        if signature is None:
            if self._is_applied_shorthand(call):
                raise self._shorthand_after_metric(call, call.name)
            close = difflib.get_close_matches(call.name, list(meaning.FUNCTIONS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            known = ", ".join(meaning.FUNCTIONS)
            raise self.fail(call, "E102", f"unknown function '{call.name}' (known: {known})", hint=hint)
        usage = f"{call.name}(metric, W)" if signature.over_series else f"{call.name}(expression)"
        if signature.lagged:
            usage += f" or {call.name}(metric, W, L)"
        if len(call.args) not in signature.arities:
            takes = " or ".join(str(n) for n in signature.arities)
            raise self.fail(call, "E103", f"{call.name}() takes {takes} arguments, got {len(call.args)}",
                            hint=f"write {usage}")
        if not signature.over_series:
            self.value(call.args[0])
            return
        metric, window, *lag = call.args
        if not isinstance(metric, ast.MetricRef):
            raise self.fail(metric, "E103", f"the first argument of {call.name}() must be a metric name",
                            hint=f"write {usage}")
        name = metric.name
        self.count(window, f"the window of {call.name}()", 1, meaning.MAX_WINDOW, f"{call.name}({name}, 20)")
        if lag:
            self.count(lag[0], f"the lag of {call.name}()", 0, meaning.MAX_WINDOW, f"{call.name}({name}, 20, 1)")


def _kind(literal: ast.Literal) -> str:
    return "a boolean" if isinstance(literal.value, bool) else "a text"


def check_when(body: ast.Predicate, sustain: int | None, span: Span, source: str) -> ast.Condition:
    """A rule's `when`: a predicate over `config.KEY` and literals only (docs/language.md §1, §3),
    or RuleSyntaxError."""
    return _Checker(source, mode="when").condition(body, sustain, span)


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
    start: int | None = None  # where the condition after the metric begins, when not at the term
    if isinstance(first, ast.AppliedShorthand) and isinstance(first.metric, ast.MetricRef):
        metric, term = first.metric, first.term
    elif (isinstance(first, ast.Comparison) and isinstance(first.left, ast.MetricRef)
          and _is_number_literal(first.right)):
        metric, term = first.left, _as_shorthand_compare(first, source)
    elif isinstance(first, ast.Call) and _Checker(source)._is_applied_shorthand(first):
        # `loss (< 0.5 or > 2)`: read as a call of `loss`, a name that is no function
        metric = ast.MetricRef(first.name, Span.at(source, first.span.start, len(first.name)))
        term, start = first.args[0], source.index("(", metric.span.end)  # type: ignore[assignment]
    else:
        return None
    span = _from(term.span.start if start is None else start, condition_span, source)
    return metric, _with_first_leaf(body, term, source), span


def _as_shorthand_compare(comparison: ast.Comparison, source: str) -> ast.ShorthandCompare:
    """`loss < -0.5` read as the term `< -0.5` (one number, its sign folded in)."""
    right = comparison.right
    number = right if isinstance(right, ast.Number) else cast(ast.Negative, right).operand
    assert isinstance(number, ast.Number)  # _is_number_literal chose this comparison
    value = number.value if number is right else -number.value
    unit = number.unit
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
