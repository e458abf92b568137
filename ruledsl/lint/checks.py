"""The linter's checks of one rule file, each a small function with its code.

A check sees a rule file that loaded cleanly (its `Rule` and its YAML with
positions) and yields diagnostics placed in the file. Checks never raise for a
problem in the rule; they report it. Codes and their meaning: ruledsl/lang/codes.py.
An unknown trainer id (E020) is the loader's problem, not a check's: every path that
loads a rule file reports it (ruledsl/model/loader.py), and such a file never loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ruledsl.authoring.rule_tests import run_rule_tests
from ruledsl.lang import ast, meaning
from ruledsl.lang.errors import Diagnostic, Span
from ruledsl.lang.meaning import threshold_of
from ruledsl.model.catalog import Catalog
from ruledsl.model.loader import RuleFile
from ruledsl.model.rule import Rule
from ruledsl.model.yaml_source import YamlDocument


@dataclass(frozen=True)
class LintContext:
    catalog: Catalog
    run_tests: bool = True


@dataclass(frozen=True)
class LoadedRule:
    """A rule file that loaded cleanly: what every check reads."""

    document: YamlDocument
    rule: Rule

    @classmethod
    def of(cls, rule_file: RuleFile) -> LoadedRule | None:
        if rule_file.document is None or rule_file.rule is None:
            return None
        return cls(rule_file.document, rule_file.rule)


Check = Callable[[LoadedRule, LintContext], Iterator[Diagnostic]]
CHECKS: list[Check] = []


def check(function: Check) -> Check:
    CHECKS.append(function)
    return function


def _in_condition(rule_file: LoadedRule, span: Span) -> Span:
    return rule_file.document.span_in_string(("condition",), span)


@check
def unknown_metrics(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    rule = rule_file.rule
    trainers = [] if rule.applies_to_all else list(rule.trainers)
    for name, span in _metric_places(rule_file):
        if context.catalog.is_known(name, trainers):
            continue
        close = context.catalog.suggestions(name, trainers)
        by_whom = "any TRL trainer" if not trainers else ", ".join(trainers)
        what = "an alias with no key" if name in context.catalog.aliases else "not a key"
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            "if it is a metric of your own, ignore this; otherwise check the key in your logs"
        yield Diagnostic("W001", f"'{name}' is {what} logged by {by_whom}, according to the metric catalog",
                         span, hint=hint, severity="warning", field="metric")


def _metric_places(rule_file: LoadedRule) -> Iterator[tuple[str, Span]]:
    rule = rule_file.rule
    if rule.condition.is_shorthand:
        if rule.metric is not None:  # the rule model requires one
            yield rule.metric, rule_file.document.span_of(("metric",))
        return
    seen = set()
    for node in ast.walk(rule.condition.body):
        if isinstance(node, ast.MetricRef) and node.name not in seen:
            seen.add(node.name)
            yield node.name, _in_condition(rule_file, node.span)


@check
def exact_comparisons(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    for node in ast.walk(rule_file.rule.condition.body):
        if isinstance(node, (ast.Comparison, ast.ShorthandCompare)) and node.op in ("==", "!="):
            yield Diagnostic("W002", f"'{node.op}' compares a floating-point value exactly",
                             _in_condition(rule_file, node.span), severity="warning", field="condition",
                             hint="use range(a, b) (or outside(a, b)) with a small tolerance")


@check
def ineffective_min_steps(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    rule = rule_file.rule
    # Logged at every step from step 0, the first evaluation is at step (values needed - 1) at
    # the earliest, and `for N steps` adds N - 1 steps: no log can make the rule fire sooner.
    earliest = values_needed(rule.condition, rule.window) - 1 + rule.sustain - 1
    if 0 < rule.min_steps <= earliest:
        yield Diagnostic("W003", f"min_steps {rule.min_steps} suppresses nothing: the condition cannot fire "
                         f"before step {earliest} on any log", rule_file.document.span_of(("min_steps",)),
                         severity="warning", field="min_steps",
                         hint=f"remove it, or raise it above {earliest} to wait longer (it is a training step)")


@check
def removed_trainers_only(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    rule = rule_file.rule
    if rule.applies_to_all or not rule.trainers:
        return
    gone = {trainer: context.catalog.removed_in(trainer) for trainer in rule.trainers}
    if all(gone.values()):
        since = ", ".join(f"{trainer} (gone in TRL {release})" for trainer, release in gone.items())
        yield Diagnostic("W006", f"the rule targets only trainers TRL has removed: {since}",
                         rule_file.document.span_of(("trainers",)), severity="warning", field="trainers",
                         hint="it still audits old logs; add the trainer that replaced them if the "
                         "failure applies there too")


@check
def eval_and_training_keys(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    # Evaluation rows arrive every eval_steps, training rows every logging_steps: an expression
    # reading both is evaluated only at the steps where the two coincide (docs/language.md §3.5),
    # which may be never.
    names = [name for name, _ in _metric_places(rule_file)]
    evaluation = [name for name in names if name.startswith("eval_")]
    if rule_file.rule.condition.is_shorthand or not evaluation or len(evaluation) == len(names):
        return
    training = [name for name in names if not name.startswith("eval_")]
    yield Diagnostic("W007", f"the condition mixes evaluation keys ({', '.join(evaluation)}) with training keys "
                     f"({', '.join(training)}): it is evaluated only at steps where both are logged",
                     rule_file.document.span_of(("condition",)), severity="warning", field="condition",
                     hint="make eval_steps a multiple of logging_steps in the runs it watches, or compare the "
                     "evaluation keys with each other")


def values_needed(condition: ast.Condition, window: int) -> int:
    """How many values (evaluations, for full expressions) the first evaluation needs (docs/language.md §3)."""
    if not condition.is_shorthand:
        return 1
    return 1 + meaning.first_index(condition.body, window)


@check
def ignored_window(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    if not rule_file.rule.condition.is_shorthand and "window" in rule_file.document.data:
        yield Diagnostic("W004", "`window` is ignored: the condition is a full expression",
                         rule_file.document.span_of(("window",)), severity="warning", field="window",
                         hint="give windows to its functions, e.g. mean(loss, 20), and remove `window`")


@check
def fields_rendering_na(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    rule = rule_file.rule
    for field_ref in rule.message.parts:
        if isinstance(field_ref, str):
            continue
        reason = _why_na(field_ref.name, rule.condition)
        if reason:
            span = rule_file.document.span_in_string(("message",), field_ref.span)
            yield Diagnostic("W005", f"{{{field_ref.name}}} always renders 'n/a' here: {reason}", span,
                             severity="warning", field="message", hint="remove the field from the message")


def _why_na(name: str, condition: ast.Condition) -> str | None:
    first = ast.leaves(condition.body)[0]
    if name == "baseline" and not (isinstance(first, ast.SHORTHAND_TERMS) and meaning.term(first).baseline):
        with_baseline = ", ".join(s.name for s in meaning.TERMS.values() if s.baseline)
        return f"only {with_baseline} have a baseline"
    if name == "window" and not condition.is_shorthand:
        return "a full expression has no rule window"
    if name == "threshold" and threshold_of(condition) is None:
        return "the first comparison has no number on its right"
    return None


@check
def failing_tests(rule_file: LoadedRule, context: LintContext) -> Iterator[Diagnostic]:
    if not context.run_tests:
        return
    for result in run_rule_tests(rule_file.rule, context.catalog):
        span = rule_file.document.span_of(("tests", result.index))
        if result.error:
            yield Diagnostic("E402", f"test case '{result.name}' cannot run: {result.error}", span, field="tests")
        if result.failures:
            yield Diagnostic("E401", f"test case '{result.name}' fails: {'; '.join(result.failures)}", span,
                             field="tests", hint="run `ruledsl test` on this file for details")

