"""`audit_ray`: an archive audit inside Ray Data, each run audited by the in-process engine in a Ray task.

A rule reads one run at a time, so the audit is parallel by run: the logs are shuffled by run and every
group of whole runs goes, as Arrow, to `partition.audit_partition` (polars over the Arrow buffers),
which runs the in-process archive audit on them. The rules travel as their source
(`partition.RuleSource`, a few kB) and are loaded once per Ray worker process (`partition.compiled`
caches them by digest, and Ray reuses its worker processes for tasks), so plain tasks are enough: no
actor pool, whose actors would hold a CPU each for the whole job (on a small machine they starve the
shuffle's own workers, which then never start).

Two ways to hand runs to the tasks, chosen by `strategy` (the same rows either way: `audit_partition`
audits each run alone, whatever else its table holds):
- "map" (the default): `repartition(n, keys=[run], sort=True)` (with a sort shuffle: `sort(run)`)
  then `map_batches` over each whole block, audited a chunk of whole runs at a time (CHUNK_ROWS
  rows), so the engine's fixed cost per call (planning a polars query: 20-130 ms, by the rules) is
  paid once a chunk. Measured 3-4x faster than "group" on 1M rows of 200 runs
  (benchmarks/distributed.py).
- "group": `groupby(run).map_groups(…, batch_format="pyarrow")`, one call per run: simplest, but
  that fixed cost is paid per run, and dominates archives of many short runs.

`ray_session` starts a local Ray quietly and small (or joins a cluster); `audit_ray` itself never
starts one: it runs on whatever Ray the caller initialised (Ray starts a default local one otherwise).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from ruledsl.distributed.partition import (
    COMBINED_SCHEMA,
    COVERAGE,
    COVERAGE_SCHEMA,
    KIND,
    ORDER,
    RECORD,
    RECORD_SCHEMA,
    RUN_INFO,
    RUN_SCHEMA,
    RuleSource,
    audit_partition,
    rule_source,
)
from ruledsl.engines.batch.frames import DEFAULT_RUN, KEY, RUN, STEP, VALUE
from ruledsl.model.catalog import builtin_catalog

if TYPE_CHECKING:
    from ray.data import Dataset

CHUNK_ROWS = 1_000_000  # "map": rows of whole runs audited in one call (one run may exceed it)
STRATEGIES = ("map", "group")
RAY_HINT = "pip install 'ruledsl[ray]'"
# A local session's object store: Ray's default is 30% of memory, far more than an audit moves
# (the logs once, shuffled); Ray spills to disk past it.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
# A local session's shuffle. Measured on 2 cores (benchmarks/distributed.py): Ray's default
# ("shuffle_v2") took ~10 s to audit examples/runs where "hash_shuffle" took ~2.5 s (its
# fixed cost), and both the same on 1M rows; the sort shuffle is fastest on tiny inputs and
# ~30% slower on 1M rows. A cluster joined by address keeps its own setting. On one CPU the hash
# shuffle never finishes (its aggregator actors hold a share of the CPU, its tasks need a whole
# one): the sort shuffle, tasks only, there.
LOCAL_SHUFFLE = "hash_shuffle"
ONE_CPU_SHUFFLE = "sort_shuffle_pull_based"
# Said at every start and with nothing to act on for an audit: the auth mode notice, and that
# progress bars are off (which ray_session turns off).
QUIET_LOGGERS = ("ray._private.authentication", "ray.data._internal.progress")


class RayAudit(NamedTuple):
    """The audit's Datasets. Lazy, each of the first three a filter of `combined`: call
    `materialized()` first when reading more than one of them, or the audit runs once per read."""

    records: Dataset  # docs/language.md §4 fields and types (partition.RECORD_SCHEMA)
    coverage: Dataset  # the rules never evaluated on a run, and why (partition.COVERAGE_SCHEMA)
    runs: Dataset  # each run's trainer, how it was chosen, configuration (partition.RUN_SCHEMA)
    combined: Dataset  # the three in one (partition.COMBINED_SCHEMA; `kind` says which)

    def materialized(self) -> RayAudit:
        """The same audit computed once, held in Ray's object store (records and coverage are small)."""
        return _split(self.combined.materialize())


def require_ray() -> None:
    """ImportError with the fix when ray (with Ray Data) is missing."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(f"the Ray engine needs ray with Ray Data: {RAY_HINT}") from None


def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                object_store_memory: int | None = None) -> bool:
    """Ray for an audit, quiet (no dashboard, no worker logs echoed, no progress bars): joins the
    cluster at `address` ("auto": the one this machine belongs to), else starts a local one on
    `num_cpus` cores (default: all) with a small object store. True when it started Ray here, so
    the caller knows to `ray.shutdown()`; False when Ray was already initialised in this process."""
    require_ray()
    import ray

    if ray.is_initialized():
        _quiet_data()
        return False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if address is not None:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        _quiet_data()
    else:
        cpus = num_cpus or os.cpu_count() or 1
        ray.init(num_cpus=cpus, object_store_memory=object_store_memory or LOCAL_OBJECT_STORE_BYTES,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        _quiet_data(LOCAL_SHUFFLE if cpus >= 2 else ONE_CPU_SHUFFLE)
    return True


def _quiet_data(shuffle: str | None = None) -> None:
    import ray.data
    from ray.data.context import ShuffleStrategy

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per job and shuffle
    if shuffle is not None:
        context.shuffle_strategy = ShuffleStrategy(shuffle)


def audit_ray(dataset: Dataset, rules: Any, *, trainer: str | None = None, config: Mapping[str, Any] | None = None,
              strategy: str = "map", partitions: int | None = None) -> RayAudit:
    """The in-process archive audit of the logs in `dataset` (wide: run, step, one column per key; or
    long: run, step, key, value), run by run in Ray tasks. `rules`: a RuleSource
    (`partition.rule_source`) or what it takes (rule files or folders, inline alerts, mappings, Rule
    objects). `trainer`, `config`: as `ruledsl.audit` takes them (docs/language.md §2, §8).
    `partitions`: how many groups of runs the logs are shuffled into (default: twice the cluster's
    CPUs). Lazy: nothing runs until one of the Datasets is read."""
    require_ray()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if trainer is not None:
        unknown = builtin_catalog().unknown_trainer(trainer)
        if unknown is not None:
            raise ValueError(f"trainer: {unknown.message}")
    source = rules if isinstance(rules, RuleSource) else rule_source(rules)
    logs = _prepared(dataset)
    count = partitions or _default_partitions()
    work = _AuditRuns(source, trainer, config)
    if strategy == "group":
        combined = logs.groupby(RUN, num_partitions=count).map_groups(work.one_run, batch_format="pyarrow")
    else:
        combined = _by_run(logs, count).map_batches(work.whole_block, batch_size=None, batch_format="pyarrow")
    return _split(combined)


def _by_run(logs: Dataset, count: int) -> Dataset:
    """The logs in blocks of whole runs, sorted by run: hash-partitioned by run (the hash shuffles),
    or range-partitioned by a sort (the sort shuffles, which Ray's own map_groups also relies on to
    keep a key's rows in one block)."""
    from ray.data.context import ShuffleStrategy

    if logs.context.shuffle_strategy in (ShuffleStrategy.SORT_SHUFFLE_PULL_BASED,
                                         ShuffleStrategy.SORT_SHUFFLE_PUSH_BASED):
        return logs.sort(RUN)
    return logs.repartition(count, keys=[RUN], sort=True)


def _default_partitions() -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else (os.cpu_count() or 1)
    return 2 * max(cpus, 1)


# ---------------------------------------------------------------- the logs, ready to shuffle


def _prepared(dataset: Dataset) -> Dataset:
    """The columns the audit reads (run as text, null or missing: "default"; step; numeric metric
    columns, or key and value), with each row's position in the input (ORDER: the later row of a
    step wins, and a shuffle loses the order)."""
    from ray.data.expressions import monotonically_increasing_id

    names = dataset.schema().names if dataset.schema() is not None else []
    if STEP not in names:
        raise ValueError(f"the logs have no '{STEP}' column (columns: {', '.join(names[:8])})")
    return dataset.with_column(ORDER, monotonically_increasing_id()).map_batches(
        _audited_columns, batch_format="pyarrow")


def _audited_columns(batch: pa.Table) -> pa.Table:
    """One batch of logs as `_prepared` says (a batch's own schema: files may log different keys)."""
    step = batch.column(STEP)
    if not (pa.types.is_integer(step.type) or pa.types.is_floating(step.type) or pa.types.is_null(step.type)):
        raise ValueError(f"the '{STEP}' column must hold numbers, not {step.type}")
    names = set(batch.column_names)
    long_form = {KEY, VALUE} <= names and names <= {RUN, STEP, KEY, VALUE, ORDER}
    run = (pc.fill_null(batch.column(RUN).cast(pa.string()), DEFAULT_RUN) if RUN in names
           else pa.array([DEFAULT_RUN] * batch.num_rows, pa.string()))
    columns = {RUN: run, STEP: step.cast(pa.int64())}
    if long_form:
        columns[KEY] = batch.column(KEY).cast(pa.string())
        columns[VALUE] = batch.column(VALUE).cast(pa.float64())
    else:
        columns.update((f.name, batch.column(f.name)) for f in batch.schema
                       if f.name not in (RUN, STEP, ORDER) and _numeric(f.type))
    columns[ORDER] = batch.column(ORDER)
    return pa.table(columns)


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


# ---------------------------------------------------------------- the work of a task


class _AuditRuns:
    """What a Ray task runs: the partition audit of whole runs (pickled with the task; the rules
    are loaded once per worker process by `partition.compiled`)."""

    def __init__(self, source: RuleSource, trainer: str | None, config: Mapping[str, Any] | None):
        self.source, self.trainer, self.config = source, trainer, config

    def one_run(self, table: pa.Table) -> pa.Table:
        return audit_partition(table, self.source, trainer=self.trainer, config=self.config).combined()

    def whole_block(self, block: pa.Table) -> Iterator[pa.Table]:
        for chunk in _whole_runs(block, CHUNK_ROWS):
            yield audit_partition(chunk, self.source, trainer=self.trainer, config=self.config).combined()


def _whole_runs(block: pa.Table, chunk_rows: int) -> Iterator[pa.Table]:
    """Slices of a block sorted by run, each of whole runs and about `chunk_rows` rows (a run longer
    than that alone)."""
    if block.num_rows <= chunk_rows:
        yield block
        return
    runs = block.column(RUN).combine_chunks()
    starts = [0, *(pc.indices_nonzero(pc.not_equal(runs[1:], runs[:-1])).to_numpy() + 1).tolist()]
    first = 0
    for start in starts[1:]:
        if start - first >= chunk_rows:
            yield block.slice(first, start - first)
            first = start
    yield block.slice(first)


# ---------------------------------------------------------------- the three results


def _split(combined: Dataset) -> RayAudit:
    def part(kind: str, schema: pa.Schema) -> Dataset:
        return combined.map_batches(_Kind(kind, schema), batch_format="pyarrow")

    return RayAudit(part(RECORD, RECORD_SCHEMA), part(COVERAGE, COVERAGE_SCHEMA), part(RUN_INFO, RUN_SCHEMA),
                    combined)


class _Kind:
    """The rows of `combined` of one kind, in that kind's schema."""

    def __init__(self, kind: str, schema: pa.Schema):
        self.kind, self.schema = kind, schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        if batch.num_rows == 0 or KIND not in batch.column_names:
            return self.schema.empty_table()
        rows = batch.filter(pc.equal(batch.column(KIND), self.kind))
        return rows.select(self.schema.names).cast(self.schema)


def table_of(dataset: Dataset, schema: pa.Schema) -> pa.Table:
    """A Dataset of the partition schemas as one Arrow table on the driver (empty: of `schema`)."""
    import ray

    tables = [t for t in ray.get(dataset.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else schema.empty_table()


__all__ = ["COMBINED_SCHEMA", "RayAudit", "audit_ray", "ray_session", "require_ray", "table_of"]
