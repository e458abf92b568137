"""Coverage (docs/language.md §4): the rules that could never fire on a run, and why.

A rule that cannot see its data is never silent. For every run and every
enabled rule for its trainer, the audit says which rules were never evaluated
there (or only at steps below `min_steps`), with the first reason that applies:
`when_false` and `config_unknown` come from binding the rule to the run's
configuration (ruledsl.lang.configuration); the others are read off the rule
frames: `no_key` (none of a metric's candidate keys appeared), `no_joint_rows`
(a full expression whose metrics never share a row), `too_short` (no
evaluation, or none at a step ≥ min_steps).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from ruledsl.alerts import CoverageRecord
from ruledsl.engines.batch import polars_backend as backend
from ruledsl.engines.batch.frames import KEY, RUN, STEP, LogFrame, block_starts


def evaluation_counts(frames: Sequence[tuple[pl.LazyFrame, list[backend.RuleColumns]]]) -> pl.LazyFrame | None:
    """rule, run, key, evaluations, eligible (at a step ≥ min_steps): one row per rule, run and key."""
    parts = [
        frame.filter(column.evaluated())
        .group_by(RUN, KEY)
        .agg(pl.len().cast(pl.Int64).alias("evaluations"),
             (pl.col(STEP) >= column.rule.min_steps).sum().cast(pl.Int64).alias("eligible"))
        .with_columns(pl.lit(column.rule.name).alias("rule"))
        .select("rule", RUN, pl.col(KEY).cast(pl.String), "evaluations", "eligible")
        for frame, columns in frames for column in columns
    ]
    return pl.concat(parts, how="vertical") if parts else None


def runs_of(log: LogFrame) -> list[Any]:
    return log.lazy.select(pl.col(RUN).filter(block_starts())).collect()[RUN].to_list()


def keys_by_run(log: LogFrame) -> dict[Any, set[str]]:
    """The metric keys each run holds a value for (null is no value)."""
    if log.form == "long":
        rows = log.lazy.filter(pl.col("value").is_not_null()).select(RUN, KEY).unique().collect()
        found: dict[Any, set[str]] = {}
        for run, key in rows.iter_rows():
            found.setdefault(run, set()).add(key)
        return found
    if not log.metric_columns:
        return {}
    present = log.lazy.group_by(RUN).agg(pl.col(c).is_not_null().any() for c in log.metric_columns).collect()
    return {row[RUN]: {c for c in log.metric_columns if row[c]} for row in present.iter_rows(named=True)}


def uncovered(inputs: Sequence[backend.RuleInput], counts: pl.DataFrame | None, runs: Iterable[Any],
              keys: Mapping[Any, set[str]], log: LogFrame) -> list[CoverageRecord]:
    """Per run, the rules of `inputs` (as the frames read them) with no eligible evaluation there."""
    seen = _covered(counts)
    joint = _JointRows(log)
    records: list[CoverageRecord] = []
    for run in runs:
        run_keys = keys.get(run, set())
        by_rule: dict[str, list[backend.RuleInput]] = {}
        for item in inputs:
            if item.runs is None or run in item.runs:
                by_rule.setdefault(item.rule.name, []).append(item)
        for name, variants in by_rule.items():
            records.extend(_rule_on_run(run, name, variants, seen, run_keys, joint))
    return records


class _JointRows:
    """The runs where a full expression's metrics share a step: asked only of expressions that
    were never evaluated on some run, once per rule (one small query each)."""

    def __init__(self, log: LogFrame):
        self.log = log
        self.found: dict[int, set[Any]] = {}

    def runs(self, item: backend.RuleInput) -> set[Any]:
        if id(item) not in self.found:
            self.found[id(item)] = self._query(item)
        return self.found[id(item)]

    def _query(self, item: backend.RuleInput) -> set[Any]:
        frames = [self.log.series(item.candidates[name]) for name in item.rule.metrics]
        if not frames or any(f is None for f in frames):
            return set()
        joined = frames[0].select(RUN, STEP)  # type: ignore[union-attr]
        for frame in frames[1:]:
            joined = joined.join(frame.select(RUN, STEP), on=[RUN, STEP], how="inner")  # type: ignore[union-attr]
        return set(joined.select(pl.col(RUN).unique()).collect()[RUN].to_list())


def _covered(counts: pl.DataFrame | None) -> dict[tuple[str, Any], dict[str | None, tuple[int, int]]]:
    """(rule, run) → key → (evaluations, eligible)."""
    found: dict[tuple[str, Any], dict[str | None, tuple[int, int]]] = {}
    if counts is None:
        return found
    for rule, run, key, evaluations, eligible in counts.iter_rows():
        found.setdefault((rule, run), {})[key] = (evaluations, eligible)
    return found


def _rule_on_run(run: Any, name: str, variants: list[backend.RuleInput],
                 seen: Mapping[tuple[str, Any], Mapping[str | None, tuple[int, int]]],
                 run_keys: set[str], joint: _JointRows) -> list[CoverageRecord]:
    rule = variants[0].rule
    counts = seen.get((name, run), {})
    pattern = rule.metric is not None and "*" in rule.metric
    if pattern:
        return _pattern_on_run(run, variants, counts, run_keys)
    if any(eligible for _, eligible in counts.values()):
        return []
    missing = [(metric, keys) for metric, keys in variants[0].candidates.items() if not set(keys) & run_keys]
    if missing:
        metric, tried = missing[0]
        return [CoverageRecord(run, name, None, "no_key", _no_key_detail(metric, tried, run_keys))]
    if not counts and len(rule.metrics) > 1 and run not in joint.runs(variants[0]):
        names = ", ".join(rule.metrics)
        return [CoverageRecord(run, name, None, "no_joint_rows", f"{names} are never logged at the same step")]
    return [CoverageRecord(run, name, None, "too_short", _too_short_detail(rule.min_steps, counts))]


def _pattern_on_run(run: Any, variants: list[backend.RuleInput],
                    counts: Mapping[str | None, tuple[int, int]], run_keys: set[str]) -> list[CoverageRecord]:
    rule = variants[0].rule
    matched = sorted({key for v in variants for keys in v.candidates.values() for key in keys} & run_keys)
    if not matched:
        return [CoverageRecord(run, rule.name, None, "no_key",
                               f"no key of the run matches {rule.metric}" + _close(str(rule.metric), run_keys))]
    return [CoverageRecord(run, rule.name, key, "too_short", _too_short_detail(rule.min_steps, {key: counts[key]}
                                                                                if key in counts else {}))
            for key in matched if not counts.get(key, (0, 0))[1]]


def _no_key_detail(metric: str, tried: tuple[str, ...], run_keys: set[str]) -> str:
    words = f"{metric} (tried {', '.join(tried)})" if tried != (metric,) else metric
    return f"no value of {words} in the run" + _close(metric, run_keys)


def _close(metric: str, run_keys: set[str]) -> str:
    close = difflib.get_close_matches(metric, sorted(run_keys), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _too_short_detail(min_steps: int, counts: Mapping[str | None, tuple[int, int]]) -> str:
    evaluations = sum(n for n, _ in counts.values())
    if not evaluations:
        return "the series never reached the values its windows need"
    return f"all {evaluations} evaluations fell below min_steps {min_steps}"
