"""Rules whose metric is a pattern (`rewards/*/std`, docs/language.md §2): which keys of the run they run on.

A pattern rule runs separately on every key of the run that the pattern matches
and that has a value (a number, finite or not: a null does not count); a key
appearing late starts its own series then. The monitor asks about each key of
the run once, at its first value, and starts a runner for each pattern rule it
matches; a key is matched against the patterns only then, not on every row.
"""

from __future__ import annotations

from collections.abc import Sequence

from ruledsl.compile import CompiledRule
from ruledsl.lang.meaning import is_pattern, pattern_regex


def is_pattern_rule(compiled: CompiledRule) -> bool:
    metric = compiled.rule.metric
    return compiled.rule.condition.is_shorthand and metric is not None and is_pattern(metric)


class PatternRules:
    __slots__ = ("rules", "seen")

    def __init__(self, rules: Sequence[CompiledRule]):
        self.rules = [(compiled, pattern_regex(compiled.rule.metric or "")) for compiled in rules]
        self.seen: set[str] = set()  # keys already matched (at their first value in the run)

    def first_value(self, key: str) -> list[CompiledRule]:
        """A key's first value in the run: the pattern rules that now run on it."""
        self.seen.add(key)
        return [compiled for compiled, regex in self.rules if regex.match(key)]
