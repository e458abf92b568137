"""What every reader shares: problems with a place, numbers as docs/language.md §2 reads them,
and the shape of a source (one run, or several when a table has a `run` column)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.model.config import RunConfig

NON_FINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
                      "infinity": math.inf, "-infinity": -math.inf}


@dataclass(frozen=True)
class ReadProblem:
    """Something in a log that could not be read: where, and what was done about it."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class Source:
    """One log source and the rows it holds, lazily: run, step, one Float64 column per key.

    `run` is the run id; a table with its own `run` column holds several runs,
    named `<run>/<value>`. `metadata` is the callback's run.json for the run, if any.
    `config` is the run's configuration (docs/language.md §2), flat, from whatever keeps one
    (run.json, MLflow params, W&B's config, TensorBoard's `args`); empty when none
    does, and for a source of several runs, which share no one configuration.
    """

    run: str
    kind: str  # jsonl, trainer_state, csv, parquet, tensorboard, mlflow
    path: Path
    frame: pl.LazyFrame
    keys: tuple[str, ...]
    size: int = 0  # bytes on disk, to decide on streaming
    metadata: Path | None = None
    multi_run: bool = False  # a table with its own `run` column
    # For a multi-run source: the rows as stored (its own `run` names) and the columns
    # besides the run that make `frame` of them, so that its runs can be read under their
    # own names (some of them alone: a filter on them reaches the scan).
    stored: pl.LazyFrame | None = None
    columns: tuple[pl.Expr, ...] = ()
    config: RunConfig = field(default_factory=dict)

    def own_runs(self) -> pl.LazyFrame:
        """A multi-run source's rows under their own run names, which `run_id` turns into
        the ids of `frame` (naming the few records is cheaper than every row)."""
        assert self.stored is not None
        return self.stored.select(pl.col(RUN).cast(pl.String), *self.columns)

    def run_id(self, own_name: str | None) -> str:
        """The id in `frame` of the run named `own_name` in the source (see `run_column`)."""
        return self.run if own_name is None else f"{self.run}/{own_name}"


def number(value: Any) -> float | None:
    """A logged value as a float, or None when it is no number (docs/language.md §2's tokens and strings)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return NON_FINITE_STRINGS.get(value.strip().lower())
    return None


def rows_frame(rows: list[dict[str, Any]], run: str | None = None) -> pl.DataFrame:
    """Rows of {step, key: value} (already numbers; a `run` name where the file gives
    one) in file order → a wide frame; with `run`, its run column is set."""
    named = any(RUN in row for row in rows)
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in (STEP, RUN)))
    schema = {STEP: pl.Int64, **({RUN: pl.String} if named else {}), **{k: pl.Float64 for k in keys}}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return frame if run is None else frame.select(run_column(run, named), STEP, *keys)


def run_column(run: str, named: bool) -> pl.Expr:
    """The run id: the source's own, or `<source>/<name>` where the rows name their run."""
    if not named:
        return pl.lit(run, dtype=pl.String).alias(RUN)
    return pl.concat_str(pl.lit(run + "/"), pl.col(RUN).cast(pl.String)).fill_null(run).alias(RUN)


def numeric_columns(schema: pl.Schema) -> list[str]:
    return [c for c, dtype in schema.items() if c not in (RUN, STEP) and dtype.is_numeric()]


def metric_keys(frame: pl.DataFrame | pl.LazyFrame) -> tuple[str, ...]:
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    return tuple(c for c in schema.names() if c not in (RUN, STEP))
