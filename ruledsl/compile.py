"""Rules → a compiled rule set for one trainer: the input of both engines.

Compiling a rule here means what is the same for every engine: choosing the
rules that apply to the trainer (docs/language.md §8), resolving each metric as written to
the log keys to try, in order (aliases, docs/language.md §2), and fixing the number that
`{threshold}` reports (docs/language.md §5). How a condition is computed is each engine's
business (ruledsl.engines.batch, ruledsl.engines.live).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruledsl.lang import ast, configuration
from ruledsl.lang.configuration import NotEvaluated
from ruledsl.lang.meaning import threshold_of
from ruledsl.model.catalog import Catalog, builtin_catalog, trainer_catalog
from ruledsl.model.rule import Rule, rule_from_inline


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    candidates: Mapping[str, tuple[str, ...]]  # metric as written → log keys to try, in order
    threshold: float | None  # docs/language.md §5: the first number of the first term

    @property
    def needs_config(self) -> bool:
        """Whether it reads the run's configuration: a `when`, or `config.KEY` in its condition."""
        return _when(self.rule) is not None or bool(ast.config_keys(self.rule.condition.body))


def _when(rule: Rule) -> ast.Condition | None:
    return getattr(rule, "when", None)  # the field arrives with the rule model's `when:`


def bind(compiled: CompiledRule, config: Mapping[str, Any]) -> CompiledRule | NotEvaluated:
    """The rule as it runs on a run with this configuration (docs/language.md §2), or why it does not.

    A rule that reads no configuration is returned as it is; `{threshold}` keeps the
    number written in the rule (a `config.KEY` there is no number literal).
    """
    when = _when(compiled.rule)
    if when is not None:
        verdict = configuration.holds(when, config)
        if isinstance(verdict, NotEvaluated):
            return verdict
        if not verdict:
            return NotEvaluated(configuration.WHEN_FALSE, f"when: {when.text} is false on this run")
    condition = configuration.bind(compiled.rule.condition, config)
    if isinstance(condition, NotEvaluated):
        return condition
    if condition is compiled.rule.condition:
        return compiled
    return dataclasses.replace(compiled, rule=dataclasses.replace(compiled.rule, condition=condition))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    trainer: str | None = None

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self.rules)

    @property
    def needs_config(self) -> bool:
        """Whether some rule reads the run's configuration (`when` or `config.KEY`)."""
        return any(c.needs_config for c in self)

    def read_keys(self) -> set[str]:
        """Every log key the rules may read (each metric's candidates)."""
        return {key for compiled in self for keys in compiled.candidates.values() for key in keys}


RuleLike = Rule | Mapping[str, Any] | str


def compile_rules(rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
                  catalog: Catalog | None = None) -> RuleSet:
    """Compile rules (Rule objects, mappings or inline-alert strings) for one trainer.

    Disabled rules and rules for other trainers are left out; `trainer=None`
    (unknown) keeps every enabled rule (docs/language.md §8). Duplicate names are an error.
    Metric aliases resolve through `catalog` (default: the builtin metric catalog).

    Trainer ids are exact (docs/language.md §8): a `trainer`, or an id in a rule's `trainers`,
    that the catalog does not have is a ValueError with a did-you-mean (`"all"` is every
    trainer's rules; a catalog that lists no trainers leaves the ids to the builtin one).
    """
    if isinstance(rules, RuleSet):
        return rules
    catalog = catalog if catalog is not None else builtin_catalog()
    ids = trainer_catalog(catalog)
    if trainer is not None:
        ids.check_trainer(trainer)
    compiled: list[CompiledRule] = []
    seen: dict[str, Rule] = {}
    for item in rules:
        rule = as_rule(item, ids)
        if rule.name in seen:
            raise ValueError(f"two rules are named {rule.name!r} "
                             f"({seen[rule.name].origin or 'code'} and {rule.origin or 'code'})")
        seen[rule.name] = rule
        _check_trainers(rule, ids)
        if not rule.enabled or not rule.applies_to(trainer):
            continue
        trainers = [trainer] if trainer else list(rule.trainers)
        candidates = {name: catalog.candidates(name, trainers) for name in rule.metrics}
        compiled.append(CompiledRule(rule, candidates, threshold_of(rule.condition)))
    return RuleSet(tuple(compiled), trainer)


def _check_trainers(rule: Rule, catalog: Catalog) -> None:
    """ValueError when one of the rule's trainer ids is not one of `catalog` (a rule that would never run)."""
    for trainer in rule.trainers:
        problem = catalog.unknown_trainer(trainer)
        if problem is not None:
            raise ValueError(f"rule {rule.name!r} ({rule.origin or 'code'}): trainers: {problem.message}")


def as_rule(item: RuleLike, catalog: Catalog | None = None) -> Rule:
    """A Rule from a Rule, a rule file's mapping or an inline-alert string (its trainer ids
    checked against `catalog`, default the builtin one)."""
    if isinstance(item, Rule):
        return item
    if isinstance(item, str):
        return rule_from_inline(item, catalog)
    if isinstance(item, Mapping):
        return Rule.from_dict(item, origin="code")
    raise TypeError(f"a rule must be a Rule, a mapping or an inline-alert string, not {type(item).__name__}")


__all__ = ["CompiledRule", "RuleLike", "RuleSet", "as_rule", "compile_rules"]
