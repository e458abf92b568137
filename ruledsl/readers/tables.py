"""CSV and Parquet tables (`step`, metric columns, an optional `run` column), scanned
lazily: nothing is read here but the schema, so an archive larger than memory can go
through one streaming query."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.readers.common import ReadProblem, Source, numeric_columns, run_column

CSV_SCHEMA_ROWS = 10_000  # rows polars reads to guess CSV column types


def read_table(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    kind = "parquet" if path.suffix == ".parquet" else "csv"
    try:
        lazy = pl.scan_parquet(path) if kind == "parquet" else \
            pl.scan_csv(path, infer_schema_length=CSV_SCHEMA_ROWS)
        schema = lazy.collect_schema()
    except Exception as exc:  # polars says what is wrong with the file; keep its first line
        problems.append(ReadProblem(path, None, f"not a readable {kind} file ({_first_line(exc)}); skipped"))
        return None
    if STEP not in schema:
        problems.append(ReadProblem(path, None, f"no '{STEP}' column; skipped"))
        return None
    if not schema[STEP].is_numeric():
        problems.append(ReadProblem(path, None, f"the '{STEP}' column holds {schema[STEP]}, not numbers; skipped"))
        return None
    keys = numeric_columns(schema)
    # several runs in one table (a `run` column): each named under the file's own id
    columns = (pl.col(STEP).cast(pl.Int64), *(pl.col(k).cast(pl.Float64) for k in keys))
    return Source(run, kind, path, lazy.select(run_column(run, RUN in schema), *columns), tuple(keys),
                  size=path.stat().st_size, multi_run=RUN in schema, stored=lazy if RUN in schema else None,
                  columns=columns)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
