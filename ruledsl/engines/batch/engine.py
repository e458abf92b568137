"""The batch engine: compiled rules evaluated over a log frame, episodes reported.

All runs and all rules go through one lazy polars query (the per-rule plans
are concatenated and collected together); Python only loops over rules to
build the plan and over the final episodes to format their messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

from ruledsl.alerts import AlertRecord, CoverageRecord, episode_message
from ruledsl.compile import CompiledRule, RuleLike, RuleSet, bind, compile_rules
from ruledsl.engines.batch import polars_backend as backend
from ruledsl.engines.batch.coverage import evaluation_counts, keys_by_run, runs_of, uncovered
from ruledsl.engines.batch.frames import RUN, STEP, VALUE, LogFrame, block_starts, to_log_frame
from ruledsl.lang import meaning
from ruledsl.lang.configuration import NotEvaluated
from ruledsl.model.catalog import Catalog

Engine = Literal["in-memory", "auto", "streaming"]  # polars' collect engines this module asks for
GROUP = "__group"  # which (frame, trainer) pair an episode came from
# polars' default engine streams where it can; on these plans (window expressions
# it runs in memory, one branch per series) it uses both cores well on large logs,
# but its set-up costs dominate small ones, where asking for the in-memory engine
# measured ~1.5-2x less CPU time (crossing over near half a million rows, 20 series).
SMALL_LOG_ROWS = 400_000


# ---------------------------------------------------------------- evaluate


def evaluate(frame: Any, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
             catalog: Catalog | None = None, output: str = "polars", lazy: bool = False,
             config: ConfigArg = None) -> Any:
    """Every evaluation of every rule: run, step, rule, fired, value (`config` as for `audit`)."""
    log = to_log_frame(frame)
    rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
    plan = _plan(log, rule_set, configs_of(config))
    parts = [c.evaluations(rule_frame) for rule_frame, columns in plan.frames() for c in columns]
    query = pl.concat(parts, how="vertical") if parts else _empty_evaluations(log)
    if lazy:
        return query
    return _deliver(query.collect(engine=collect_engine([log])), output, log)


def collect_engine(logs: Sequence[LogFrame]) -> Engine:
    """polars' engine for the query over these logs: in memory when they are small (known size)."""
    rows = [log.rows for log in logs]
    small = all(r is not None for r in rows) and sum(r for r in rows if r is not None) < SMALL_LOG_ROWS
    return "in-memory" if small else "auto"


def _empty_evaluations(log: LogFrame) -> pl.LazyFrame:
    return log.lazy.select(RUN, STEP).head(0).with_columns(
        pl.lit(None, dtype=pl.String).alias("rule"), pl.lit(None, dtype=pl.Boolean).alias(backend.FIRED),
        pl.lit(None, dtype=pl.Float64).alias(VALUE))


# ---------------------------------------------------------------- configurations and patterns

ConfigArg = Mapping[str, Any] | None
ConfigOf = Callable[[Any], Mapping[str, Any]]


def configs_of(config: ConfigArg) -> ConfigOf | None:
    """`config` as a function of a run: one mapping for every run, or run id → mapping (when
    every value is a mapping), docs/language.md §2."""
    if config is None:
        return None
    if config and all(isinstance(v, Mapping) for v in config.values()):
        return lambda run: config.get(run) or {}
    return lambda run: config


@dataclass
class _Plan:
    """What one log is audited with: every rule as its frames read it, and the rules left out."""

    log: LogFrame
    inputs: list[backend.RuleInput]
    skipped: list[CoverageRecord]  # rules a run's configuration keeps from being evaluated there

    def frames(self) -> list[tuple[pl.LazyFrame, list[backend.RuleColumns]]]:
        return backend.rule_frames(self.inputs, self.log)


def _plan(log: LogFrame, rule_set: RuleSet, configs: ConfigOf | None) -> _Plan:
    plan = _Plan(log, [], [])
    bound = _bound_per_run(log, rule_set, configs, plan.skipped) if rule_set.needs_config else {}
    for compiled in rule_set:
        for variant, runs in bound.get(compiled.rule.name, [(compiled, None)]):
            for candidates in _expanded(variant, log):
                plan.inputs.append(backend.RuleInput(variant.rule, candidates, runs))
    return plan


def _bound_per_run(log: LogFrame, rule_set: RuleSet, configs: ConfigOf | None, skipped: list[CoverageRecord]
                   ) -> dict[str, list[tuple[CompiledRule, tuple[Any, ...]]]]:
    """Rules that read the configuration, bound per run: runs sharing a binding share its frames."""
    runs = log.lazy.select(pl.col(RUN).filter(block_starts())).collect()[RUN].to_list()
    found: dict[str, list[tuple[CompiledRule, tuple[Any, ...]]]] = {}
    for compiled in (c for c in rule_set if c.needs_config):
        variants: dict[int, tuple[CompiledRule, list[Any]]] = {}
        for run in runs:
            outcome = bind(compiled, configs(run) if configs else {})
            if isinstance(outcome, NotEvaluated):
                skipped.append(CoverageRecord(run, compiled.rule.name, None, outcome.reason, outcome.detail))
                continue
            key = hash(repr(outcome.rule.condition.body))
            variants.setdefault(key, (outcome, []))[1].append(run)
        found[compiled.rule.name] = [(variant, tuple(members)) for variant, members in variants.values()]
    return found


def _expanded(compiled: CompiledRule, log: LogFrame) -> list[Mapping[str, tuple[str, ...]]]:
    """A pattern rule once per key of the log it matches (aliases do not apply to patterns)."""
    metric = compiled.rule.metric
    if metric is None or not meaning.is_pattern(metric):
        return [compiled.candidates]
    matched = log.matching(meaning.pattern_regex(metric))
    # a pattern that matches nothing still goes in, reading no key: the coverage then says so
    return [{metric: (key,)} for key in matched] or [{metric: ()}]


# ---------------------------------------------------------------- audit


def audit(frame: Any, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
          catalog: Catalog | None = None, output: str = "polars", streaming: bool = False,
          config: ConfigArg = None) -> Any:
    """One record per alert episode, with exactly the fields of docs/language.md §4.

    `config` is the runs' configuration (§2): one mapping for every run, or a mapping from
    run id to each run's mapping (when every value of `config` is a mapping).
    """
    log = to_log_frame(frame)
    rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
    found = _audit_logs([_Group(log, rule_set, None, configs_of(config))], streaming, coverage=False)
    return _deliver(found.records, output, log)


@dataclass(frozen=True)
class AuditGroup:
    """Runs audited with one rule set (compiled for their trainer, which records carry)."""

    frame: Any
    rules: RuleSet
    # The id a run of `frame` goes by in records and messages, from its value in the
    # frame (None: the value itself). A reader names the runs of a table `<file>/<run>`;
    # mapping the few records is much cheaper than building that string on every row.
    run_id: Callable[[Any], Any] | None = None
    # The configuration of a run of `frame` (docs/language.md §2), from its value in the frame;
    # None: no run has one.
    config: ConfigOf | None = None


@dataclass(frozen=True)
class _Group:
    log: LogFrame
    rules: RuleSet
    run_id: Callable[[Any], Any] | None
    configs: ConfigOf | None


def audit_by_trainer(groups: Sequence[AuditGroup], *, streaming: bool = False) -> pl.DataFrame:
    """Audit frames whose runs come from different trainers, each with its own rules.

    Every group goes through one query. Records are sorted by run, first_step, rule, metric.
    """
    return _audit_logs([_Group(to_log_frame(g.frame), g.rules, g.run_id, g.config) for g in groups],
                       streaming, coverage=False).records


@dataclass(frozen=True)
class AuditResult:
    """An audit's episodes (records, docs/language.md §4) and its coverage: the rules never
    evaluated on a run, and why."""

    records: pl.DataFrame
    coverage: list[CoverageRecord]


def audit_groups(groups: Sequence[AuditGroup], *, streaming: bool = False, coverage: bool = True) -> AuditResult:
    """`audit_by_trainer`, with the coverage of every run (unless `coverage=False`)."""
    return _audit_logs([_Group(to_log_frame(g.frame), g.rules, g.run_id, g.config) for g in groups],
                       streaming, coverage)


def _audit_logs(groups: list[_Group], streaming: bool, coverage: bool) -> AuditResult:
    """The episodes of every group from one collected query; with `coverage`, the evaluation
    counts that say which rules never ran on a run, collected in the same pass."""
    plans = [_plan(group.log, group.rules, group.configs) for group in groups]
    frames = [plan.frames() for plan in plans]
    queries = []
    for number, group_frames in enumerate(frames):
        parts = [backend.episode_edges(rule_frame, columns) for rule_frame, columns in group_frames]
        if parts:
            queries.append(backend.episodes(pl.concat(parts, how="vertical"))
                           .with_columns(pl.lit(number, dtype=pl.Int64).alias(GROUP)))
    counts = [evaluation_counts(group_frames) if coverage else None for group_frames in frames]
    found, counted = _collect(queries, counts, groups, streaming)
    records = _records(found, groups, _record_schema(groups[0].log if groups else None,
                                                     renamed=any(g.run_id for g in groups)))
    covered = _coverage(groups, plans, counted) if coverage else []
    return AuditResult(records, covered)


def _collect(queries: list[pl.LazyFrame], counts: list[pl.LazyFrame | None], groups: list[_Group],
             streaming: bool) -> tuple[pl.DataFrame | None, list[pl.DataFrame | None]]:
    """The episodes query and the count queries, collected together (polars shares their frames)."""
    engine: Engine = "streaming" if streaming else collect_engine([g.log for g in groups])
    lazy = ([pl.concat(queries, how="vertical_relaxed")] if queries else []) + [c for c in counts if c is not None]
    collected = iter(pl.collect_all(lazy, engine=engine)) if lazy else iter(())
    found = next(collected) if queries else None
    return found, [next(collected) if c is not None else None for c in counts]


def _records(found: pl.DataFrame | None, groups: list[_Group], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if found is None or found.is_empty():
        return pl.DataFrame(schema=schema)
    by_name = [{c.rule.name: c for c in g.rules} for g in groups]
    records = []
    for row in found.iter_rows(named=True):
        group = groups[row[GROUP]]
        run = group.run_id(row[RUN]) if group.run_id is not None else row[RUN]
        records.append(_record(row, run, by_name[row[GROUP]][row["rule"]], group.rules.trainer))
    frame = pl.DataFrame(records, schema=schema, orient="row")
    return frame.sort(RUN, "first_step", "rule", "metric", maintain_order=True)


def _coverage(groups: list[_Group], plans: list[_Plan], counts: list[pl.DataFrame | None]) -> list[CoverageRecord]:
    """Every group's coverage records, its runs named as in records, ordered by run then rule."""
    found: list[CoverageRecord] = []
    for group, plan, counted in zip(groups, plans, counts):
        log = group.log
        records = plan.skipped + uncovered(plan.inputs, counted, runs_of(log), keys_by_run(log), log)
        found += [replace(r, run=group.run_id(r.run)) if group.run_id else r for r in records]
    return sorted(found, key=lambda r: (str(r.run), r.rule, r.metric or ""))


def _record_schema(log: LogFrame | None, renamed: bool = False) -> dict[str, pl.DataType]:
    """The polars types of the AlertRecord fields (the run's as the log has it, unless renamed)."""
    run_dtype = log.lazy.collect_schema()[RUN] if log is not None and not renamed else pl.String()
    text, count = pl.String(), pl.Int64()
    return {"run": run_dtype, "rule": text, "severity": text, "trainer": text, "metric": text,
            "first_step": count, "last_step": count, "n_evals": count, "value": pl.Float64(), "message": text}


def _record(row: dict[str, Any], run: Any, compiled: CompiledRule, trainer: str | None) -> tuple[Any, ...]:
    rule = compiled.rule
    metric = row["metric"]
    message = episode_message(compiled, trainer, run=run, metric=metric, step=row["first_step"],
                              value=row["value"], baseline=row["baseline"])
    return AlertRecord(run, rule.name, rule.severity, trainer, metric, row["first_step"], row["last_step"],
                       row["n_evals"], row["value"], message).as_row()


def _deliver(result: pl.DataFrame, output: str, log: LogFrame) -> Any:
    """The result in the kind asked for: "polars", "pandas", or "input" (as the caller's frame)."""
    if output == "input":
        output = "pandas" if log.input_kind == "pandas" else "polars"
    if output == "pandas":
        return result.to_pandas()
    if output != "polars":
        raise ValueError(f"output must be 'polars', 'pandas' or 'input', not {output!r}")
    return result
