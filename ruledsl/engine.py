"""The batch engine: compile rules, evaluate them over a log frame, report episodes.

All runs and all rules go through one lazy polars query (the per-rule plans
are concatenated and collected together); Python only loops over rules to
build the plan and over the final episodes to format their messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import polars as pl

from . import ast
from .backends import polars_backend as backend
from .catalog import Catalog, builtin_catalog
from .frames import RUN, STEP, VALUE, LogFrame, to_log_frame
from .rule import Rule, rule_from_inline

RECORD_FIELDS = ("run", "rule", "severity", "trainer", "metric", "first_step", "last_step",
                 "n_evals", "value", "message")
EVALUATION_FIELDS = ("run", "step", "rule", "fired", "value")
GROUP = "__group"  # which (frame, trainer) pair an episode came from
# polars' default engine streams where it can; on these plans (window expressions
# it runs in memory, one branch per series) it uses both cores well on large logs,
# but its set-up costs dominate small ones, where asking for the in-memory engine
# measured ~1.5-2x less CPU time (crossing over near half a million rows, 20 series).
SMALL_LOG_ROWS = 400_000


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    candidates: Mapping[str, tuple[str, ...]]  # metric as written → log keys to try, in order
    threshold: float | None  # spec §4: the first number of the first term


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    trainer: str | None = None

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)


RuleLike = Rule | Mapping[str, Any] | str


def compile_rules(rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
                  catalog: Catalog | None = None) -> RuleSet:
    """Compile rules (Rule objects, mappings or inline-alert strings) for one trainer.

    Disabled rules and rules for other trainers are left out; `trainer=None`
    (unknown) keeps every enabled rule (spec §8). Duplicate names are an error.
    Metric aliases resolve through `catalog` (default: the builtin metric catalog).
    """
    if isinstance(rules, RuleSet):
        return rules
    catalog = catalog if catalog is not None else builtin_catalog()
    compiled: list[CompiledRule] = []
    seen: dict[str, Rule] = {}
    for item in rules:
        rule = _as_rule(item)
        if rule.name in seen:
            raise ValueError(f"two rules are named {rule.name!r} "
                             f"({seen[rule.name].origin or 'code'} and {rule.origin or 'code'})")
        seen[rule.name] = rule
        if not rule.enabled or not rule.applies_to(trainer):
            continue
        trainers = [trainer] if trainer else list(rule.trainers)
        candidates = {name: catalog.candidates(name, trainers) for name in rule.metrics}
        compiled.append(CompiledRule(rule, candidates, threshold_of(rule.condition)))
    return RuleSet(tuple(compiled), trainer)


def _as_rule(item: RuleLike) -> Rule:
    if isinstance(item, Rule):
        return item
    if isinstance(item, str):
        return rule_from_inline(item)
    if isinstance(item, Mapping):
        return Rule.from_dict(item, origin="code")
    raise TypeError(f"a rule must be a Rule, a mapping or an inline-alert string, not {type(item).__name__}")


def threshold_of(condition: ast.Condition) -> float | None:
    """Spec §4: the first number of the first term (n/a for a non-numeric right operand)."""
    first = ast.leaves(condition.body)[0]
    if isinstance(first, ast.ShorthandCompare):
        return first.threshold.value
    if isinstance(first, ast.Between):
        return first.low.value
    if isinstance(first, ast.Change):
        return first.percent.value
    if isinstance(first, ast.Spike):
        return first.factor.value
    if isinstance(first, ast.Flat):
        return first.tolerance.value
    if isinstance(first, ast.Comparison):
        right = first.right
        if isinstance(right, ast.Number):
            return right.value
        if isinstance(right, ast.Negative) and isinstance(right.operand, ast.Number):
            return -right.operand.value
    return None


# ---------------------------------------------------------------- evaluate


def evaluate(frame: Any, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
             catalog: Catalog | None = None, output: str = "polars", lazy: bool = False):
    """Every evaluation of every rule: run, step, rule, fired, value."""
    log = to_log_frame(frame)
    rule_set = compile_rules(rules, trainer=trainer, catalog=catalog)
    parts = [c.evaluations(rule_frame) for rule_frame, columns in _frames(rule_set, log) for c in columns]
    query = pl.concat(parts, how="vertical") if parts else _empty_evaluations(log)
    if lazy:
        return query
    return _deliver(query.collect(engine=collect_engine([log])), output, log)


def collect_engine(logs: Sequence[LogFrame]) -> str:
    """polars' engine for the query over these logs: in memory when they are small (known size)."""
    rows = [log.rows for log in logs]
    small = all(r is not None for r in rows) and sum(r for r in rows if r is not None) < SMALL_LOG_ROWS
    return "in-memory" if small else "auto"


def _frames(rule_set: RuleSet, log: LogFrame):
    return backend.rule_frames([(c.rule, dict(c.candidates)) for c in rule_set], log)


def _empty_evaluations(log: LogFrame) -> pl.LazyFrame:
    return log.lazy.select(RUN, STEP).head(0).with_columns(
        pl.lit(None, dtype=pl.String).alias("rule"), pl.lit(None, dtype=pl.Boolean).alias(backend.FIRED),
        pl.lit(None, dtype=pl.Float64).alias(VALUE))


# ---------------------------------------------------------------- audit


def audit(frame: Any, rules: Iterable[RuleLike] | RuleSet, *, trainer: str | None = None,
          catalog: Catalog | None = None, output: str = "polars", streaming: bool = False):
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


def read_keys(rule_set: RuleSet) -> set[str]:
    """Every log key the rules may read (each metric's candidates)."""
    return {key for compiled in rule_set for keys in compiled.candidates.values() for key in keys}


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
    run_dtype = log.lazy.collect_schema()[RUN] if log is not None and not renamed else pl.String
    return {"run": run_dtype, "rule": pl.String, "severity": pl.String, "trainer": pl.String,
            "metric": pl.String, "first_step": pl.Int64, "last_step": pl.Int64, "n_evals": pl.Int64,
            "value": pl.Float64, "message": pl.String}


def _record(row: dict[str, Any], run: Any, compiled: CompiledRule, trainer: str | None) -> tuple:
    rule = compiled.rule
    metric = row["metric"]
    message = episode_message(compiled, trainer, run=run, metric=metric, step=row["first_step"],
                              value=row["value"], baseline=row["baseline"])
    return (run, rule.name, rule.severity, trainer, metric, row["first_step"], row["last_step"],
            row["n_evals"], row["value"], message)


def episode_message(compiled: CompiledRule, trainer: str | None, *, run: Any, metric: str | None,
                    step: int, value: float | None, baseline: float | None) -> str:
    """The rule's message for an episode starting at `step` (spec §4, §5); shared by both engines."""
    rule = compiled.rule
    fields = {
        "value": value, "metric": metric, "step": step, "run": str(run),
        "name": rule.name, "severity": rule.severity, "trainer": trainer,
        "window": rule.window if rule.condition.is_shorthand else None,
        "threshold": compiled.threshold, "baseline": _finite_or_none(baseline),
    }
    return rule.message.render(fields)


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _deliver(result: pl.DataFrame, output: str, log: LogFrame):
    """The result in the kind asked for: "polars", "pandas", or "input" (as the caller's frame)."""
    if output == "input":
        output = "pandas" if log.input_kind == "pandas" else "polars"
    if output == "pandas":
        return result.to_pandas()
    if output != "polars":
        raise ValueError(f"output must be 'polars', 'pandas' or 'input', not {output!r}")
    return result
