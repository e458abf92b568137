"""One partition of runs → alert records, for any distributed engine: the in-process audit, unchanged.

A rule only ever reads one run, so a distributed audit hands whole runs to workers, each of which runs
exactly the in-process archive audit (`engines.batch.archive.audit_archive`) on the runs it holds. This
module is that worker step, engine-neutral: it imports pyarrow, polars and ruledsl only, and the Spark
and Ray engines wrap it.

The interface (what an engine uses):

- `rule_source(rules, builtin=False, inline=(), trainer=None) -> RuleSource`, on the driver: the rules
  as their source (rule files' texts with their names, inline alerts, rule mappings), picklable and
  small; building it loads the rules once, so a bad rule fails on the driver with its file's name.
- `compiled(source) -> list[Rule]`, on a worker: the rules loaded from that source, once per process
  (cached by `source.digest`).
- `audit_partition(table, source, trainer=None, config=None) -> PartitionAudit`: a pyarrow Table of
  whole runs (wide: `run, step, <key>…`, or long: `run, step, key, value`; an optional ORDER column
  gives the rows' input order, which decides between rows of one step) → three Arrow tables of fixed
  schemas, whatever the runs: `records` (RECORD_SCHEMA, docs/language.md §4), `coverage`
  (COVERAGE_SCHEMA) and `runs` (RUN_SCHEMA: each run's trainer, how it was chosen, its configuration).
- `PartitionAudit.combined()` / `split(table)`: the three as one table of COMBINED_SCHEMA (a KIND
  column says which), for an engine whose per-group function returns one table.
- `sorted_records(table)`: records in the in-process order (run, first_step, rule, metric), to put
  together what the partitions returned.

What "the same as in process" means here: every run is audited as the in-process archive audit
audits a log file holding that one run. Its id is its `run` value as text (null: "default"); its keys
are the metric columns where it has a value at least once (long form: the keys with a value); its
trainer is `trainer` if given, else guessed from its keys (docs/language.md §8); its configuration
(§2) is its own entry of a per-run `config` ({run: {key: value}}), or the one `config` mapping every
run shares (`--config`, a null removing a key). Rows with no step are left out and counted (`runs`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ruledsl.alerts import COVERAGE_FIELDS, RECORD_FIELDS, json_safe
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.engines.batch.frames import DEFAULT_RUN, KEY, RUN, STEP, VALUE
from ruledsl.lang.errors import FrameError
from ruledsl.model import trainers
from ruledsl.model.config import merge, normalize
from ruledsl.model.loader import discover, load_rules
from ruledsl.model.rule import Rule, rule_from_inline
from ruledsl.readers import Archive, Source

ORDER = "__row"  # optional: the rows' order in the input (an engine's shuffle loses it; the later row of a step wins)
KIND = "kind"  # COMBINED_SCHEMA: which table a row belongs to
RECORD, COVERAGE, RUN_INFO = "record", "coverage", "run"

_text, _count = pa.string(), pa.int64()
RECORD_SCHEMA = pa.schema([
    ("run", _text), ("rule", _text), ("severity", _text), ("trainer", _text), ("metric", _text),
    ("first_step", _count), ("last_step", _count), ("n_evals", _count), ("value", pa.float64()),
    ("message", _text)])
COVERAGE_SCHEMA = pa.schema([("run", _text), ("rule", _text), ("metric", _text), ("reason", _text),
                             ("detail", _text)])
RUN_SCHEMA = pa.schema([
    ("run", _text), ("trainer", _text),
    ("trainer_origin", _text),  # option, guess, unknown (docs/language.md §8)
    ("trainer_detail", _text),  # how it was guessed, or why it stayed unknown
    ("trainer_candidates", pa.list_(_text)),  # unknown: the trainers whose rules ran (empty: every rule)
    ("config", _text),  # the run's configuration (§2) as a JSON object
    ("rows", _count),  # rows audited
    ("rows_without_step", _count)])  # rows left out: no step
assert tuple(RECORD_SCHEMA.names) == RECORD_FIELDS and tuple(COVERAGE_SCHEMA.names) == COVERAGE_FIELDS


def _combined_schema() -> pa.Schema:
    fields: dict[str, pa.Field] = {KIND: pa.field(KIND, _text)}
    for schema in (RECORD_SCHEMA, COVERAGE_SCHEMA, RUN_SCHEMA):
        for schema_field in schema:
            assert fields.setdefault(schema_field.name, schema_field).type == schema_field.type
    return pa.schema(list(fields.values()))


COMBINED_SCHEMA = _combined_schema()
_SCHEMAS = {RECORD: RECORD_SCHEMA, COVERAGE: COVERAGE_SCHEMA, RUN_INFO: RUN_SCHEMA}


# ---------------------------------------------------------------- rules as their source


@dataclass(frozen=True)
class RuleSource:
    """The rules as text, to ship to workers: `files` are (name, text) of rule files in load order,
    `inline` (name or None, text) of inline alerts, `mappings` rule mappings as JSON; `trainer` keeps
    only that trainer's rules (as `load_rules` does for `--trainer`)."""

    builtin: bool = False
    files: tuple[tuple[str, str], ...] = ()
    inline: tuple[tuple[str | None, str], ...] = ()
    mappings: tuple[str, ...] = ()
    trainer: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode("utf-8", "surrogatepass")).hexdigest()


RuleItem = Any  # a path (str or Path) of a rule file or folder, an inline alert, a mapping, a Rule


def rule_source(rules: Iterable[RuleItem] = (), *, builtin: bool = False,
                inline: Iterable[str | tuple[str | None, str]] = (), trainer: str | None = None) -> RuleSource:
    """The source of `rules` (paths of rule files or folders, inline-alert strings, mappings, Rule
    objects, or a RuleSource), the builtin library if `builtin`, and the `inline` alerts (a text,
    or (name, text) to name its records). Loaded once here, so that a bad rule is said on the
    driver (RuleLoadError, RuleSyntaxError, ValueError), never on a worker."""
    if isinstance(rules, (str, Path, Mapping, Rule)):  # one rule, file or folder: not its characters or keys
        rules = [rules]
    files: list[tuple[str, str]] = []
    texts: list[tuple[str | None, str]] = [(None, item) if isinstance(item, str) else item for item in inline]
    mappings: list[str] = []
    for item in ([] if isinstance(rules, RuleSource) else rules):
        if isinstance(item, Rule):
            mappings.append(json.dumps(item.to_dict(), sort_keys=True))
        elif isinstance(item, Mapping):
            mappings.append(json.dumps(dict(item), sort_keys=True, default=str))
        elif isinstance(item, Path) or (isinstance(item, str) and Path(item).exists()):
            files += [(str(path), path.read_text(encoding="utf-8")) for path in discover([item])]
        elif isinstance(item, str) and "->" in item:
            texts.append((None, item))
        else:
            raise ValueError(f"{item!r} is no rule file or folder (none exists there), nor an inline alert "
                             "(TRAINERS: CONDITION -> SEVERITY: MESSAGE), nor a rule mapping")
    source = rules if isinstance(rules, RuleSource) else RuleSource(
        builtin, tuple(files), tuple(texts), tuple(mappings), trainer)
    compiled(source)
    return source


_compiled: dict[str, list[Rule]] = {}
_compiling = threading.Lock()  # a worker may run several tasks in threads


def compiled(source: RuleSource) -> list[Rule]:
    """The rules of `source`, loaded once per process."""
    with _compiling:
        found = _compiled.get(source.digest)
        if found is None:
            found = _compiled[source.digest] = _load(source)
        return found


def _load(source: RuleSource) -> list[Rule]:
    """The rule files are written to a folder of their own (each in a numbered sub-folder under its
    own name, so that messages name it) and loaded as `ruledsl audit --rules` loads them."""
    folder = Path(tempfile.mkdtemp(prefix="ruledsl-rules-"))
    try:
        paths = []
        for number, (name, text) in enumerate(source.files):
            path = folder / f"{number:05d}" / Path(name).name
            path.parent.mkdir()
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        loaded = load_rules(paths, trainer=source.trainer, include_builtin=source.builtin) if (
            paths or source.builtin) else []
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    loaded += [Rule.from_dict(json.loads(text), origin="code") for text in source.mappings]
    for alert_name, alert in source.inline:
        rule = rule_from_inline(alert)
        loaded.append(rule if alert_name is None else replace(rule, name=alert_name))
    seen: set[str] = set()
    for rule in loaded:  # the audit would refuse them on a worker: said here, on the driver
        if rule.name in seen:
            raise ValueError(f"two rules are named {rule.name!r}; give each rule a name of its own")
        seen.add(rule.name)
    return loaded


# ---------------------------------------------------------------- a partition of runs


@dataclass(frozen=True)
class PartitionAudit:
    records: pa.Table  # RECORD_SCHEMA, in the in-process order
    coverage: pa.Table  # COVERAGE_SCHEMA, ordered by run, rule, metric
    runs: pa.Table  # RUN_SCHEMA, one row per run

    def combined(self) -> pa.Table:
        """The three tables as one of COMBINED_SCHEMA (KIND says which each row is)."""
        parts = [_widened(table, kind) for kind, table in
                 ((RECORD, self.records), (COVERAGE, self.coverage), (RUN_INFO, self.runs))]
        return pa.concat_tables(parts)


def _widened(table: pa.Table, kind: str) -> pa.Table:
    columns = [pa.array([kind] * table.num_rows, _text) if f.name == KIND else
               table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in COMBINED_SCHEMA]
    return pa.Table.from_arrays(columns, schema=COMBINED_SCHEMA)


def split(table: pa.Table) -> PartitionAudit:
    """The tables `PartitionAudit.combined` put together (from any number of partitions)."""
    kinds = table.column(KIND)
    return PartitionAudit(*(table.filter(pa.compute.equal(kinds, kind)).select(_SCHEMAS[kind].names)
                            .cast(_SCHEMAS[kind]) for kind in (RECORD, COVERAGE, RUN_INFO)))


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


ConfigArg = Mapping[str, Any] | None


def audit_partition(table: pa.Table, source: RuleSource, *, trainer: str | None = None,
                    config: ConfigArg = None) -> PartitionAudit:
    """The in-process archive audit of the whole runs `table` holds (see the module docstring)."""
    frame = pl.from_arrow(table) if isinstance(table, pa.Table) else table
    assert isinstance(frame, pl.DataFrame)
    frame, without_step = _prepared(frame)
    per_run, overrides = _configs(config)
    sources = _sources(frame, per_run)
    if not sources:
        return PartitionAudit(empty(RECORD_SCHEMA), empty(COVERAGE_SCHEMA), _runs([], {}, trainer, overrides))
    audited = audit_archive(Archive(sources=sources), compiled(source), trainer=trainer, streaming=False,
                            config=overrides)
    records = audited.records.with_columns(pl.col(RUN).cast(pl.String)).to_arrow().cast(RECORD_SCHEMA)
    coverage = pa.Table.from_pylist([{**r.as_dict(), RUN: str(r.run)} for r in audited.coverage],
                                    schema=COVERAGE_SCHEMA)
    return PartitionAudit(records, coverage, _runs(sources, without_step, trainer, overrides))


def _configs(config: ConfigArg) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(per-run configurations, overrides for every run): `config` is one or the other, as
    `ruledsl.audit` reads it (every value a mapping: per run)."""
    if not config:
        return {}, {}
    if all(isinstance(v, Mapping) for v in config.values()):
        return {str(run): normalize(values) for run, values in config.items()}, {}
    return {}, dict(config)


def _prepared(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """The rows in input order, run ids as text, rows without a step left out (counted by run),
    long form turned wide (one row per run and step, as the engine merges long rows)."""
    if ORDER in frame.columns:
        frame = frame.sort(ORDER, maintain_order=True).drop(ORDER)
    run = pl.col(RUN).cast(pl.String).fill_null(DEFAULT_RUN) if RUN in frame.columns else pl.lit(DEFAULT_RUN)
    frame = frame.with_columns(run.alias(RUN))
    if STEP not in frame.columns:
        raise FrameError(f"the logs have no '{STEP}' column (columns: {', '.join(frame.columns[:8])})")
    missing = frame.filter(pl.col(STEP).is_null()).group_by(RUN).len()
    without_step = dict(zip(missing[RUN].to_list(), missing["len"].to_list()))
    frame = frame.filter(pl.col(STEP).is_not_null()).with_columns(pl.col(STEP).cast(pl.Int64))
    if {KEY, VALUE} <= set(frame.columns) and set(frame.columns) <= {RUN, STEP, KEY, VALUE}:
        frame = _widened_long(frame)
    return frame, without_step


NO_KEY = "\x00no key"  # a long row without a key: its step is logged, with no value


def _widened_long(frame: pl.DataFrame) -> pl.DataFrame:
    """Long rows merged as the engine merges them (the later row of a run, step and key wins, a null
    included), one column per key: a null is the key's absence, and a step of nulls stays a row."""
    merged = (frame.select(RUN, STEP, pl.col(KEY).cast(pl.String).fill_null(NO_KEY), pl.col(VALUE).cast(pl.Float64))
              .unique(subset=[RUN, STEP, KEY], keep="last", maintain_order=True))
    if merged.is_empty():
        return merged.select(RUN, STEP)
    wide = merged.pivot(on=KEY, index=[RUN, STEP], values=VALUE)
    return wide.drop(NO_KEY, strict=False).sort(RUN, STEP, maintain_order=True)


def _sources(frame: pl.DataFrame, per_run: Mapping[str, Mapping[str, Any]]) -> list[Source]:
    """One source per run, as a log file holding that run alone: its keys are the metric columns where
    it has a value (a number of any kind, NaN included)."""
    metrics = [c for c, dtype in frame.schema.items() if c not in (RUN, STEP) and dtype.is_numeric()]
    frame = frame.select(RUN, STEP, *(pl.col(c).cast(pl.Float64) for c in metrics))
    present = frame.group_by(RUN, maintain_order=True).agg(pl.col(metrics).is_not_null().any()) if metrics else \
        frame.select(RUN).unique(maintain_order=True)
    parts = frame.partition_by(RUN, as_dict=True, maintain_order=True)
    sources = []
    for row in present.iter_rows(named=True):
        run = row[RUN]
        keys = tuple(c for c in metrics if row[c])
        rows = parts[(run,)].select(RUN, STEP, *keys)
        sources.append(Source(run, "arrow", Path(DEFAULT_RUN), rows.lazy(), keys, size=int(rows.estimated_size()),
                              config=dict(per_run.get(run, {}))))
    return sources


def _runs(sources: Sequence[Source], without_step: Mapping[str, int], trainer: str | None,
          overrides: Mapping[str, Any]) -> pa.Table:
    """Each run's trainer (chosen as the archive audit chooses it) and configuration."""
    rows = []
    for source in sources:
        choice = trainers.choose(trainer, None, source.keys, [])
        rows.append({RUN: source.run, "trainer": choice.trainer, "trainer_origin": choice.origin,
                     "trainer_detail": choice.detail or None, "trainer_candidates": list(choice.candidates),
                     "config": json.dumps(json_safe(merge(source.config, overrides)), sort_keys=True),
                     "rows": source.frame.select(pl.len()).collect().item(),
                     "rows_without_step": without_step.get(source.run, 0)})
    known = {s.run for s in sources}
    rows += [{RUN: run, "trainer_candidates": [], "config": "{}", "rows": 0, "rows_without_step": count}
             for run, count in without_step.items() if run not in known]
    return pa.Table.from_pylist(rows, schema=RUN_SCHEMA)


def sorted_records(records: pa.Table) -> pa.Table:
    """Records in the in-process order: run, first_step, rule, metric (nulls first), as the engine sorts."""
    frame = pl.from_arrow(records)
    assert isinstance(frame, pl.DataFrame)
    return frame.sort(RUN, "first_step", "rule", "metric", maintain_order=True).to_arrow().cast(RECORD_SCHEMA)


def sorted_coverage(coverage: pa.Table) -> pa.Table:
    frame = pl.from_arrow(coverage)
    assert isinstance(frame, pl.DataFrame)
    return frame.sort(RUN, "rule", pl.col("metric").fill_null(""), maintain_order=True).to_arrow() \
        .cast(COVERAGE_SCHEMA)
