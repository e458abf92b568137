"""Running a rule's `tests:` cases (docs/language.md §7) through the engines.

A case is a small log (`series`: metric key → values, one per step; `steps`
optional), optionally the run's configuration (`config`, for rules with `when` or
`config.KEY`), and the episodes the rule must report on it (`expect`: first_step,
optionally last_step, message and metric). Every case runs on each engine in
`ENGINES`; a case passes when every engine reports exactly the expected episodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from ruledsl.engines.batch.engine import audit
from ruledsl.engines.live.monitor import Monitor
from ruledsl.lang import meaning
from ruledsl.model.catalog import Catalog, builtin_catalog
from ruledsl.model.config import RunConfig, normalize
from ruledsl.model.rule import Rule

TEST_RUN = "default"  # as for any log without run ids
NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


class CaseError(ValueError):
    """A case that cannot be run as written (E402)."""


@dataclass
class CaseResult:
    rule: Rule
    index: int
    name: str
    failures: list[str] = field(default_factory=list)  # one sentence per engine that disagreed
    error: str | None = None  # set when the case could not be run

    @property
    def passed(self) -> bool:
        return not self.failures and self.error is None


def case_rows(case: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """The case's log as (step, {key: value}) rows in step order; null values are absent keys."""
    series = case.get("series") or {}
    lengths = {len(values) for values in series.values()}
    steps = case.get("steps")
    if steps is None:
        steps = list(range(max(lengths, default=0)))
    elif lengths and lengths != {len(steps)}:
        raise CaseError(f"`steps` has {len(steps)} entries but the series have {sorted(lengths)} values")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise CaseError("`steps` must be strictly increasing")
    rows: dict[int, dict[str, float]] = {step: {} for step in steps}
    for key, values in series.items():
        for step, value in zip(steps, values):
            if value is not None:
                rows[step][key] = _number(value, key)
    return list(rows.items())


def _number(value: Any, key: str) -> float:
    if isinstance(value, str):
        if value.strip().lower() not in NON_FINITE:
            raise CaseError(f"{key}: {value!r} is not a number (non-finite values are 'nan', 'inf', '-inf')")
        return NON_FINITE[value.strip().lower()]
    return float(value)


def case_config(case: Mapping[str, Any]) -> RunConfig:
    """The case's run configuration as the engines take it (docs/language.md §2): a null is a missing key."""
    return normalize(case.get("config") or {})


def batch_episodes(rule: Rule, rows: list[tuple[int, dict[str, float]]], trainer: str | None,
                   catalog: Catalog | None, config: RunConfig | None = None) -> list[dict[str, Any]]:
    """The episodes `audit` reports for the case's log."""
    long = pl.DataFrame(
        [(TEST_RUN, step, key, value) for step, metrics in rows for key, value in metrics.items()],
        schema={"run": pl.String, "step": pl.Int64, "key": pl.String, "value": pl.Float64}, orient="row")
    return audit(long, [rule], trainer=trainer, catalog=catalog, config=config or {}).to_dicts()


def incremental_episodes(rule: Rule, rows: list[tuple[int, dict[str, float]]], trainer: str | None,
                         catalog: Catalog | None, config: RunConfig | None = None) -> list[dict[str, Any]]:
    """The episodes the Monitor (the callback's engine) finds, fed one row at a time as in training."""
    monitor = Monitor([rule], trainer=trainer, catalog=catalog, run=TEST_RUN, config=config or {})
    for step, metrics in rows:
        monitor.update(step, metrics)
    monitor.finish()
    return monitor.episodes()


class Engine(Protocol):
    """An engine run on one case: its log rows, the trainer, the catalog, the run's configuration."""

    def __call__(self, rule: Rule, rows: list[tuple[int, dict[str, float]]], trainer: str | None,
                 catalog: Catalog | None, config: RunConfig | None = None) -> list[dict[str, Any]]: ...


ENGINES: dict[str, Engine] = {"batch": batch_episodes, "incremental": incremental_episodes}


def run_case(rule: Rule, index: int, catalog: Catalog | None = None) -> CaseResult:
    case = rule.tests[index]
    result = CaseResult(rule, index, str(case.get("name") or f"case {index + 1}"))
    try:
        rows = case_rows(case)
    except CaseError as exc:
        result.error = str(exc)
        return result
    catalog = catalog if catalog is not None else builtin_catalog()
    if rule.metrics and not _reads_some(rule, {key for _, metrics in rows for key in metrics}, catalog):
        result.error = f"the series name none of the metrics the rule reads ({', '.join(rule.metrics)})"
        return result
    trainer = None if rule.applies_to_all else rule.trainers[0]
    config = case_config(case)
    for engine_name, engine in ENGINES.items():
        episodes = engine(rule, rows, trainer, catalog, config)
        mismatch = compare(case.get("expect") or [], episodes)
        if mismatch:
            result.failures.append(f"{engine_name} engine: {mismatch}")
    return result


def _reads_some(rule: Rule, keys: set[str], catalog: Catalog) -> bool:
    """Whether the rule reads one of `keys`: a metric, a catalog alias of it, or a key a metric
    pattern matches (docs/language.md §2)."""
    for metric in rule.metrics:
        if meaning.is_pattern(metric):
            if any(meaning.pattern_regex(metric).match(key) for key in keys):
                return True
        elif keys & set(catalog.candidates(metric, rule.trainers)):
            return True
    return False


def compare(expected: Sequence[Mapping[str, Any]], episodes: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the episodes are the expected ones, else what differs, in words."""
    got = [e["first_step"] for e in episodes]
    want = [e["first_step"] for e in expected]
    if got != want:
        return f"expected episodes starting at steps {want}, got {got}" + _messages(episodes)
    for wanted, episode in zip(expected, episodes):
        for key in ("last_step", "message", "metric"):
            if key in wanted and wanted[key] != episode[key]:
                return (f"the episode starting at step {episode['first_step']}: expected {key} "
                        f"{wanted[key]!r}, got {episode[key]!r}")
    return None


def _messages(episodes: Sequence[Mapping[str, Any]]) -> str:
    if not episodes:
        return ""
    shown = "; ".join(f"step {e['first_step']}–{e['last_step']}: {e['message']}" for e in episodes[:3])
    return f" ({shown}{' …' if len(episodes) > 3 else ''})"


def run_rule_tests(rule: Rule, catalog: Catalog | None = None) -> list[CaseResult]:
    return [run_case(rule, i, catalog) for i in range(len(rule.tests))]
