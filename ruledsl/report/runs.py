"""Every audited run as a report lists it: its trainer and how that was decided, the number of
rules that ran on it, and (for the charts) any of its logged series, read from its source.

Healthy runs are information too: a report that names only alerted runs cannot tell a run
that passed from one that was never read. This module only looks at what the audit read
(`readers.Source`): it decides the trainer the same way the audit did (`trainers.choose`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from ruledsl.compile import compile_rules
from ruledsl.engines.batch.frames import RUN, STEP, VALUE
from ruledsl.model import trainers
from ruledsl.model.rule import Rule
from ruledsl.readers.common import Source

# How a run's trainer was decided, in the words a reader needs (docs/language.md §8).
ORIGIN_WORDS = {"option": "given (--trainer)", "metadata": "run.json", "guess": "guessed from its metric keys",
                "unknown": "unknown"}


@dataclass(frozen=True)
class RunInfo:
    run: str
    trainer: str | None
    origin: str  # option, metadata, guess, unknown (trainers.TrainerChoice.origin)
    n_rules: int  # the rules that ran on it

    @property
    def how(self) -> str:
        return ORIGIN_WORDS.get(self.origin, self.origin)


def run_infos(sources: Sequence[Source], run_ids: Sequence[str], option: str | None,
              rules: Sequence[Rule], builtin: bool = True) -> list[RunInfo]:
    """One RunInfo per audited run id, in run order. A run the callback wrote gets the rules its
    run.json keeps (as the audit does, with `builtin`), the others the audit's rules."""
    counted: dict[tuple, int] = {}
    found: list[RunInfo] = []
    for run in run_ids:
        source = source_of(sources, run)
        if source is None:
            found.append(RunInfo(run, option, "option" if option else "unknown", len(rules)))
            continue
        choice = trainers.choose(option, source.metadata, source.keys, [])
        own = callback_rules_of(source) if builtin else None
        chosen = list(rules) if own is None else [*own, *(r for r in rules if r.name not in {o.name for o in own})]
        key = (choice.trainer, choice.candidates, tuple(r.name for r in chosen))
        if key not in counted:
            counted[key] = _count(chosen, choice)
        found.append(RunInfo(run, choice.trainer, choice.origin, counted[key]))
    return sorted(found, key=lambda info: str(info.run))


def with_callback_rules(rules: Sequence[Rule], sources: Sequence[Source]) -> list[Rule]:
    """`rules` and the rules callbacks kept in their runs' run.json (their custom alerts, rule
    folders) under names `rules` does not use: the audit ran those on their runs, and the report
    describes and charts their alerts."""
    found = list(rules)
    names = {r.name for r in found}
    for source in sources:
        for rule in callback_rules_of(source) or []:
            if rule.name not in names:
                names.add(rule.name)
                found.append(rule)
    return found


def _count(rules: list[Rule], choice: trainers.TrainerChoice) -> int:
    try:
        return len(compile_rules([r for r in rules if choice.selects(r)], trainer=choice.trainer))
    except ValueError:  # the audit itself would have failed on such rules: count them as given
        return len(rules)


def callback_rules_of(source: Source) -> list[Rule] | None:
    """The rules a DiagnosticsCallback ran on the run (its run.json), or None; the audit has
    already warned about a run.json that does not read back."""
    from ruledsl.integrations.diagnostics_files import callback_rules

    if source.metadata is None:
        return None
    try:
        return callback_rules(json.loads(source.metadata.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def source_of(sources: Sequence[Source], run: Any) -> Source | None:
    """The source holding run id `run`: its own run, or one of a table's (`<source>/<name>`)."""
    for source in sources:
        if source.run == run and not source.multi_run:
            return source
    for source in sources:
        if source.multi_run and isinstance(run, str) and run.startswith(source.run + "/"):
            return source
    return None


def logged_series(sources: Sequence[Source], run: Any, key: str) -> pl.DataFrame | None:
    """(step, value) of `key` in run `run`, read from its source; None when it does not log it."""
    source = source_of(sources, run)
    if source is None or key not in source.keys:
        return None
    try:
        rows = (source.frame.filter(pl.col(RUN) == run)
                .select(pl.col(STEP).cast(pl.Int64), pl.col(key).cast(pl.Float64).alias(VALUE))
                .filter(pl.col(VALUE).is_not_null()).sort(STEP).collect())
    except pl.exceptions.PolarsError:  # a damaged source: the report goes on without this series
        return None
    return rows if not rows.is_empty() else None
