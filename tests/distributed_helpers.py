"""What the distributed-engine tests share: a small local Spark session, archives as one Arrow table, and
the in-process reference they are held to.

The reference is the in-process archive audit as `ruledsl audit DIR` runs it: each run written to its
own JSON Lines file (only the keys it has a value of, NaN and ±inf as JSON's bare tokens, rows in input
order), read by ruledsl's readers and audited by `audit_archive`. It shares no code with the
distributed path but the engine itself: not `partition`, not the Arrow conversions.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from ruledsl.alerts import CoverageRecord
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.readers import read_archive

ROOT = Path(__file__).resolve().parent.parent
REAL_LOGS = ROOT / "tests" / "data" / "real_trl_logs"
EXAMPLES = ROOT / "examples" / "runs"

# A local session for tests: two cores, little memory, few shuffle partitions, no UI.
SPARK_TEST_CONFIGS = {
    "spark.driver.memory": "768m",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.python.worker.reuse": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "5000",
}


def spark_session() -> Any:
    from ruledsl.distributed.spark_engine import local_session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    return local_session("local[2]", app_name="ruledsl-tests", configs=SPARK_TEST_CONFIGS)


def archive_table(root: Path) -> pa.Table:
    """Every run under `root` as read by ruledsl, in one wide table with a `run` column (its run id)."""
    archive = read_archive([root])
    frame = pl.concat([source.frame.collect() for source in archive.sources], how="diagonal_relaxed")
    return frame.to_arrow()


def in_process(table: pa.Table, folder: Path, rules: list, *, trainer: str | None = None,
               config: dict | None = None) -> tuple[pl.DataFrame, list[dict]]:
    """(records, coverage) of the in-process archive audit of the runs of a wide `table`, each
    written to `folder/<run>.jsonl` (run ids: the file names)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    keys = [c for c in frame.columns if c not in ("run", "step")]
    folder.mkdir(parents=True, exist_ok=True)
    for (run,), rows in frame.partition_by("run", as_dict=True, maintain_order=True).items():
        lines = [json.dumps({"step": row["step"], **{k: _json(row[k]) for k in keys if row[k] is not None}})
                 for row in rows.iter_rows(named=True)]
        (folder / f"{run}.jsonl").write_text("\n".join(lines) + "\n")
    archive = read_archive([folder])
    assert not archive.problems, archive.problems
    audited = audit_archive(archive, rules, trainer=trainer, streaming=False, config=config)
    return audited.records.with_columns(pl.col("run").cast(pl.String)), [r.as_dict() for r in audited.coverage]


def _json(value: float) -> Any:
    return value if math.isfinite(value) else float(value)  # json.dumps writes NaN, Infinity, -Infinity


def records_frame(table: pa.Table) -> pl.DataFrame:
    """Records in the in-process order (run, first_step, rule, metric)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("run", "first_step", "rule", "metric", maintain_order=True)


def coverage_rows(table: pa.Table) -> list[dict]:
    rows = table.to_pylist()
    return sorted(rows, key=lambda r: (r["run"], r["rule"], r["metric"] or ""))


def assert_same_records(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Row for row, every field and type (NaN equal to NaN, as the engine reports it)."""
    assert got.schema == expected.schema, (got.schema, expected.schema)
    assert got.height == expected.height, (got, expected)
    assert got.equals(expected), _first_difference(got, expected)


def _first_difference(got: pl.DataFrame, expected: pl.DataFrame) -> str:
    for a, b in zip(got.iter_rows(), expected.iter_rows()):
        if a != b and not all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                              for x, y in zip(a, b)):
            return f"got {a}\nexpected {b}"
    return "no row differs (types?)"


def coverage_dicts(records: list[CoverageRecord]) -> list[dict]:
    return [r.as_dict() for r in records]


# Alerts that fire on the real captures (whose builtin audit is clean), so that records are compared too.
FIRING = ["all: loss > 0 for 3 steps -> low: loss positive", "all: grad_norm > 1 -> medium: large gradient",
          "all: learning_rate < 1e-3 -> low: small learning rate"]
