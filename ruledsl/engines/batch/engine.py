"""The batch engine: compiled rules evaluated over a log frame, episodes reported.

All runs and all rules go through one lazy polars query (the per-rule plans
are concatenated and collected together); Python only loops over rules to
build the plan and over the final episodes to format their messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from ruledsl.alerts import AlertRecord, episode_message
from ruledsl.compile import CompiledRule, RuleLike, RuleSet, compile_rules
from ruledsl.engines.batch import polars_backend as backend
from ruledsl.engines.batch.frames import RUN, STEP, VALUE, LogFrame, to_log_frame
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
             catalog: Catalog | None = None, output: str = "polars", lazy: bool = False) -> Any:
    """Every evaluation of every rule: run, step, rule, fired, value."""
    log = to_log_frame(frame)
    rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
    parts = [c.evaluations(rule_frame) for rule_frame, columns in _frames(rule_set, log) for c in columns]
    query = pl.concat(parts, how="vertical") if parts else _empty_evaluations(log)
    if lazy:
        return query
    return _deliver(query.collect(engine=collect_engine([log])), output, log)


def collect_engine(logs: Sequence[LogFrame]) -> Engine:
    """polars' engine for the query over these logs: in memory when they are small (known size)."""
    rows = [log.rows for log in logs]
    small = all(r is not None for r in rows) and sum(r for r in rows if r is not None) < SMALL_LOG_ROWS
    return "in-memory" if small else "auto"


def _frames(rule_set: RuleSet, log: LogFrame) -> list[tuple[pl.LazyFrame, list[backend.RuleColumns]]]:
    return backend.rule_frames([(c.rule, c.candidates) for c in rule_set], log)


def _empty_evaluations(log: LogFrame) -> pl.LazyFrame:
    return log.lazy.select(RUN, STEP).head(0).with_columns(
        pl.lit(None, dtype=pl.String).alias("rule"), pl.lit(None, dtype=pl.Boolean).alias(backend.FIRED),
        pl.lit(None, dtype=pl.Float64).alias(VALUE))


# ---------------------------------------------------------------- audit


def audit(frame: Any, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
          catalog: Catalog | None = None, output: str = "polars", streaming: bool = False) -> Any:
    """One record per alert episode, with exactly the fields of spec §4."""
    log = to_log_frame(frame)
    rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
    return _deliver(_audit_logs([(log, rule_set, None)], streaming), output, log)


@dataclass(frozen=True)
class AuditGroup:
    """Runs audited with one rule set (compiled for their trainer, which records carry)."""

    frame: Any
    rules: RuleSet
    # The id a run of `frame` goes by in records and messages, from its value in the
    # frame (None: the value itself). A reader names the runs of a table `<file>/<run>`;
    # mapping the few records is much cheaper than building that string on every row.
    run_id: Callable[[Any], Any] | None = None


def audit_by_trainer(groups: Sequence[AuditGroup], *, streaming: bool = False) -> pl.DataFrame:
    """Audit frames whose runs come from different trainers, each with its own rules.

    Every group goes through one query. Records are sorted by run, first_step, rule.
    """
    return _audit_logs([(to_log_frame(g.frame), g.rules, g.run_id) for g in groups], streaming)


def _audit_logs(pairs: list[tuple[LogFrame, RuleSet, Callable[[Any], Any] | None]], streaming: bool
                ) -> pl.DataFrame:
    """The episodes of every (log, rule set, run ids) group, from one collected query."""
    queries = []
    for group, (log, rule_set, _) in enumerate(pairs):
        parts = [backend.episode_edges(rule_frame, columns) for rule_frame, columns in _frames(rule_set, log)]
        if parts:
            queries.append(backend.episodes(pl.concat(parts, how="vertical"))
                           .with_columns(pl.lit(group, dtype=pl.Int64).alias(GROUP)))
    schema = _record_schema(pairs[0][0] if pairs else None, renamed=any(run_id for _, _, run_id in pairs))
    if not queries:
        return pl.DataFrame(schema=schema)
    query = pl.concat(queries, how="vertical_relaxed")
    found = query.collect(engine="streaming" if streaming else collect_engine([log for log, _, _ in pairs]))
    by_name = [{c.rule.name: c for c in rule_set} for _, rule_set, _ in pairs]
    records = []
    for row in found.iter_rows(named=True):
        _, rule_set, run_id = pairs[row[GROUP]]
        run = run_id(row[RUN]) if run_id is not None else row[RUN]
        records.append(_record(row, run, by_name[row[GROUP]][row["rule"]], rule_set.trainer))
    if not records:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(records, schema=schema, orient="row").sort(RUN, "first_step", "rule", maintain_order=True)


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
