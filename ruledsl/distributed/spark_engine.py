"""`audit_spark`: an archive audit inside Spark, each run audited by the in-process engine on an executor.

A rule reads one run at a time, so the audit is parallel by run: the logs are shuffled by run and
every group of whole runs goes, as Arrow, to `partition.audit_partition` (polars over the Arrow
buffers, no pandas in between), which runs the in-process archive audit on them. The rules travel
as their source (`partition.RuleSource`) and are loaded once per Python worker.

Two ways to hand runs to the workers, chosen by `strategy`:
- "map" (the default): `repartition(run)` then `mapInArrow`; each task audits the runs of its
  partition a chunk of whole runs at a time (CHUNK_ROWS rows, a run never cut), so the engine's
  per-call cost is paid once a chunk. Measured the faster (benchmarks/distributed.py).
- "group": `groupBy(run).applyInArrow`; one call per run, simplest, but its per-call cost (a few ms:
  planning a polars query per run) dominates archives of many short runs.
Both give the same rows: `audit_partition` audits each run alone, whatever else its table holds.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
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
    from pyspark.sql import DataFrame, SparkSession

CHUNK_ROWS = 1_000_000  # "map": rows of whole runs audited at once by a task (one run may exceed it)
STRATEGIES = ("map", "group")
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")  # fatal only: the audit says what failed
SPARK_HINT = "pip install 'ruledsl[spark]'"
JAVA_HINT = ("Spark runs on a Java runtime (17 or 21), and none was found: install one (Debian/Ubuntu: "
             "apt-get install default-jre-headless) or set JAVA_HOME")


class SparkAudit(NamedTuple):
    """The audit's DataFrames, computed by one job over `combined` (each of the others filters it:
    `combined.cache()` first when reading more than one of them)."""

    records: DataFrame  # docs/language.md §4 fields and types (partition.RECORD_SCHEMA)
    coverage: DataFrame  # the rules never evaluated on a run, and why (partition.COVERAGE_SCHEMA)
    runs: DataFrame  # each run's trainer, how it was chosen, configuration (partition.RUN_SCHEMA)
    combined: DataFrame  # the three in one (partition.COMBINED_SCHEMA; `kind` says which)


def require_spark() -> None:
    """ImportError/RuntimeError with the fix when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ImportError(f"the Spark engine needs pyspark: {SPARK_HINT}") from None
    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise RuntimeError(JAVA_HINT)


def local_session(master: str | None = None, app_name: str = "ruledsl-audit",
                  configs: Mapping[str, str] | None = None) -> SparkSession:
    """A Spark session: `master` (a cluster's URL) or local[N] on every core, sized for a small
    machine (few shuffle partitions, no UI), its Python workers on this interpreter."""
    require_spark()
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # pyspark's Arrow functions check that pandas is installed, and warn about pandas 3, which no
    # data of ours goes through
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    cores = os.cpu_count() or 1
    builder = (SparkSession.builder.master(master or f"local[{cores}]").appName(app_name)
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"))
    for key, value in (configs or {}).items():
        builder = builder.config(key, value)
    if master is None or master.startswith("local"):
        builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("FATAL")  # as LOG_CONFIG: a failed job is said in one line
    return session


def audit_spark(df: DataFrame, rules: Any, *, trainer: str | None = None, config: Mapping[str, Any] | None = None,
                strategy: str = "map", partitions: int | None = None) -> SparkAudit:
    """The in-process archive audit of the logs in `df` (wide: run, step, one column per key; or
    long: run, step, key, value), run by run on Spark's executors. `rules`: a RuleSource
    (`partition.rule_source`) or what it takes (rule files or folders, inline alerts, mappings,
    Rule objects). `trainer`, `config`: as `ruledsl.audit` takes them (docs/language.md §2, §8).
    `partitions`: how many partitions the runs are shuffled into ("map"; default: Spark's
    shuffle partitions). Lazy: nothing runs until one of the DataFrames is read."""
    require_spark()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if trainer is not None:
        unknown = builtin_catalog().unknown_trainer(trainer)
        if unknown is not None:
            raise ValueError(f"trainer: {unknown.message}")
    source = rules if isinstance(rules, RuleSource) else rule_source(rules)
    logs = _prepared(df)
    combined = (_by_group(logs, source, trainer, config) if strategy == "group"
                else _by_partition(logs, source, trainer, config, partitions))
    return _split(combined)


def spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _prepared(df: DataFrame) -> DataFrame:
    """The columns the audit reads (run as text, null or missing: "default"; step; numeric metric
    columns, or key and value), with each row's position in the input (ORDER: the later row of a
    step wins, and a shuffle loses the order)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    fields = {f.name: f.dataType for f in df.schema.fields}
    if STEP not in fields:
        raise ValueError(f"the logs have no '{STEP}' column (columns: {', '.join(list(fields)[:8])})")
    if not isinstance(fields[STEP], NumericType):
        raise ValueError(f"the '{STEP}' column must hold numbers, not {fields[STEP].simpleString()}")
    run = F.coalesce(F.col(RUN).cast("string"), F.lit(DEFAULT_RUN)) if RUN in fields else F.lit(DEFAULT_RUN)
    long_form = {KEY, VALUE} <= set(fields) and set(fields) <= {RUN, STEP, KEY, VALUE}
    metrics = [F.col(KEY).cast("string"), F.col(VALUE).cast("double")] if long_form else [
        F.col(f"`{name}`") for name, dtype in fields.items()
        if name not in (RUN, STEP, ORDER) and isinstance(dtype, NumericType)]
    return df.select(run.alias(RUN), F.col(STEP).cast("long").alias(STEP), *metrics,
                     F.monotonically_increasing_id().alias(ORDER))


def _by_group(logs: DataFrame, source: RuleSource, trainer: str | None, config: Mapping[str, Any] | None
              ) -> DataFrame:
    def audit_run(table: pa.Table) -> pa.Table:
        return audit_partition(table, source, trainer=trainer, config=config).combined()

    return logs.groupBy(RUN).applyInArrow(audit_run, schema=spark_schema(COMBINED_SCHEMA))


def _by_partition(logs: DataFrame, source: RuleSource, trainer: str | None, config: Mapping[str, Any] | None,
                  partitions: int | None) -> DataFrame:
    shuffled = logs.repartition(partitions, RUN) if partitions else logs.repartition(RUN)
    ordered = shuffled.sortWithinPartitions(RUN, ORDER)

    def audit_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for chunk in _whole_runs(batches, CHUNK_ROWS):
            yield from audit_partition(chunk, source, trainer=trainer, config=config).combined().to_batches()

    return ordered.mapInArrow(audit_batches, schema=spark_schema(COMBINED_SCHEMA))


def _whole_runs(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of whole runs, about `chunk_rows` rows each, from batches sorted by run (a run may
    span batches: what follows the last run boundary waits for the next batch)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows < chunk_rows:
            continue
        table = pa.Table.from_batches(pending)
        cut = _last_run_start(table)
        if cut > 0:
            yield table.slice(0, cut)
            rest = table.slice(cut)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _last_run_start(table: pa.Table) -> int:
    """The row where the table's last run starts (0: it holds one run)."""
    runs = table.column(RUN)
    last = runs[table.num_rows - 1]
    same = pc.equal(runs, last).to_numpy(zero_copy_only=False)
    differing = (~same).nonzero()[0]
    return int(differing[-1]) + 1 if len(differing) else 0


def _split(combined: DataFrame) -> SparkAudit:
    from pyspark.sql import functions as F

    def part(kind: str, schema: pa.Schema) -> DataFrame:
        return combined.filter(F.col(KIND) == kind).select(*schema.names)

    return SparkAudit(part(RECORD, RECORD_SCHEMA), part(COVERAGE, COVERAGE_SCHEMA), part(RUN_INFO, RUN_SCHEMA),
                      combined)
