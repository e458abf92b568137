"""CSV and Parquet tables (`step`, metric columns, an optional `run` column).

Parquet is scanned lazily: nothing is read here but the schema and the step column (a
row whose step is missing or names no training step is counted and left out), so an
archive larger than memory can go through one streaming query. A Parquet file damaged
where only decoding finds it fails when the audit reads it; `salvage_parquet` then reads
what can be decoded (`Archive.salvage`).

A CSV file is read here, once, by polars (into memory, or past SPILL_BYTES into a
temporary Parquet file scanned lazily): a text file written by hand or by a script is
damaged more often, and only reading it all says so. Where polars cannot read it all (a
value that is no number after the rows it typed its columns from, a row with more fields
than the header) or a row would be lost (a step that is missing or no training step, text
in a column of numbers), it is read again row by row with Python's csv module, which says
at which lines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.readers.common import (
    ReadProblem,
    Source,
    Spill,
    Tally,
    as_steps,
    run_column,
    training_step,
    valid_steps,
)

CSV_SCHEMA_ROWS = 10_000  # rows polars reads to guess CSV column types
SPILL_BYTES = 256 * 2**20  # a CSV file larger than this is converted to a temporary Parquet file
CAREFUL_CHUNK_ROWS = 100_000  # rows the careful CSV reader gathers before making them a frame
SALVAGE_ROWS = 65_536  # rows of a damaged Parquet file decoded at a time; a slice that fails is
SALVAGE_MIN_ROWS = 1_024  # halved down to this many rows (polars decodes only the row groups a slice needs)
SHOWN = 5
NO_STEP = "no 'step'"
BAD_STEP = "its 'step' names no training step (a whole number of at most 64 bits)"
RAGGED = "more fields than the header names"


def read_table(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    if path.suffix == ".parquet":
        return _read_parquet(path, run, problems)
    return _read_csv(path, run, problems)


# ---------------------------------------------------------------- Parquet


def _read_parquet(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    try:
        lazy = pl.scan_parquet(path)
        schema = lazy.collect_schema()
    except Exception as exc:  # polars says what is wrong with the file; keep its first line
        problems.append(ReadProblem(path, None, f"not a readable parquet file ({_first_line(exc)}); skipped"))
        return None
    table = _Table.of(path, "parquet", schema, problems)
    if table is None:
        return None
    try:
        bad = lazy.select((~table.valid).sum()).collect().item()  # the step column alone
        if bad:
            _report_rows(path, lazy, table, problems)
    except Exception:  # the step column itself cannot be decoded
        return salvage_parquet(path, run, problems)
    return table.source(run, lazy.filter(table.valid) if bad else lazy, path.stat().st_size)


def _report_rows(path: Path, lazy: pl.LazyFrame, table: _Table, problems: list[ReadProblem]) -> None:
    """The rows of a table whose step is missing or no training step, counted and the
    first few named by row number (1 = the first row); a row with no value at all is
    nothing lost and goes unsaid."""
    lost = lazy.with_row_index("_row", offset=1).filter(~table.valid)
    others = [c for c in table.schema.names() if c != STEP]
    if others:
        lost = lost.filter(pl.any_horizontal(pl.col(others).is_not_null()))
    counted = lost.select(pl.len(), pl.col("_row").head(SHOWN).implode()).collect()
    count, rows = counted.item(0, 0), counted.item(0, 1).to_list()
    if count:
        listed = ", ".join(map(str, rows)) + (", …" if count > len(rows) else "")
        problems.append(ReadProblem(path, None, f"{count} row(s) whose '{STEP}' is missing or names no training "
                                                f"step (a whole number of at most 64 bits); skipped (rows {listed})",
                                    skipped=count, lost="rows"))


def salvage_parquet(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    """A Parquet file whose data cannot all be decoded (its footer can), read SALVAGE_ROWS
    rows at a time into memory, a slice that fails halved down to SALVAGE_MIN_ROWS: the
    slices that decode are audited, the others counted (one problem naming the ranges of
    rows lost)."""
    try:
        total = pl.scan_parquet(path).select(pl.len()).collect().item()  # from the footer
    except Exception as exc:
        problems.append(ReadProblem(path, None, f"not a readable parquet file ({_first_line(exc)}); skipped"))
        return None
    parts: list[pl.DataFrame] = []
    lost: list[tuple[int, int]] = []  # (first, last) row, 1 = the first
    damage = ""
    pending = [(start, min(start + SALVAGE_ROWS, total)) for start in range(0, total, SALVAGE_ROWS)][::-1]
    while pending:
        start, stop = pending.pop()
        try:
            parts.append(pl.scan_parquet(path).slice(start, stop - start).collect())
        except Exception as exc:
            damage = damage or _first_line(exc)
            if stop - start > SALVAGE_MIN_ROWS:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]  # the first half next
            elif lost and lost[-1][1] == start:
                lost[-1] = (lost[-1][0], stop)
            else:
                lost.append((start + 1, stop))
    count = sum(last - first + 1 for first, last in lost)
    if not parts:
        problems.append(ReadProblem(path, None, f"its data cannot be decoded ({damage}); skipped", skipped=total))
        return None
    if lost:
        ranges = ", ".join(f"{a:,}–{b:,}" for a, b in lost[:SHOWN]) + (", …" if len(lost) > SHOWN else "")
        problems.append(ReadProblem(path, None, f"{count:,} of its {total:,} rows cannot be decoded ({damage}); "
                                                f"skipped (rows {ranges})", skipped=count, lost="rows"))
    frame = pl.concat(parts, how="vertical_relaxed")
    table = _Table.of(path, "parquet", frame.schema, problems)
    if table is None:
        return None
    if not frame.select(table.valid.all()).item():
        _report_rows(path, frame.lazy(), table, problems)
        frame = frame.filter(table.valid)
    return table.source(run, frame.lazy(), path.stat().st_size)


# ---------------------------------------------------------------- CSV


def _read_csv(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    size = path.stat().st_size
    try:
        schema = pl.scan_csv(path, infer_schema_length=CSV_SCHEMA_ROWS).collect_schema()
    except pl.exceptions.NoDataError:
        problems.append(ReadProblem(path, None, "not a readable csv file (empty CSV); skipped"))
        return None
    except Exception:  # rows of another shape among those it types the columns from
        return _careful_csv(path, run, problems, size)
    if STEP not in schema:
        problems.append(ReadProblem(path, None, f"no '{STEP}' column; skipped"))
        return None
    # a column typed as integers from its first rows may hold a fraction later
    overrides = {c: pl.Float64 for c, dtype in schema.items() if c not in (STEP, RUN) and dtype.is_numeric()}
    spill = Spill() if size > SPILL_BYTES else None
    try:
        if spill is None:
            data = pl.read_csv(path, infer_schema_length=CSV_SCHEMA_ROWS, schema_overrides=overrides).lazy()
        else:
            converted = spill.path()
            pl.scan_csv(path, infer_schema_length=CSV_SCHEMA_ROWS, schema_overrides=overrides).sink_parquet(converted)
            data = pl.scan_parquet(converted)
        return _clean_csv(path, run, data, problems, size)
    except Exception:  # a value that is no number, a ragged row, a row lost: polars does not say at which line
        return _careful_csv(path, run, problems, size)


class _NeedsCareful(Exception):
    """A row of the table polars read would be lost: the careful reader says which."""


def _clean_csv(path: Path, run: str, data: pl.LazyFrame, problems: list[ReadProblem], size: int) -> Source | None:
    """The table polars read; _NeedsCareful when a row of it would be lost (the careful
    reader then says which): a step that is missing or no training step in a row with values, or
    text that is no number in a column of numbers. Columns of text alone (a model's name)
    are no metrics; a text column that holds numbers ("nan", "inf") is one."""
    schema = data.collect_schema()
    table = _Table.of(path, "csv", schema, problems, text_columns=True)
    if table is None:
        return None
    texts = [c for c in table.keys if schema[c] == pl.String]
    blank = ~pl.any_horizontal(pl.exclude(STEP).is_not_null()) if len(schema) > 1 else pl.lit(True)
    checks = data.select(
        lost=(~table.valid & ~blank).sum(), unread=(~table.valid).sum(), kept=table.valid.sum(),
        **{f"n{i}": pl.col(c).cast(pl.Float64, strict=False).is_not_null().sum() for i, c in enumerate(texts)},
        **{f"w{i}": (pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64, strict=False).is_null()).sum()
           for i, c in enumerate(texts)}).collect().row(0, named=True)
    if checks["lost"] or any(checks[f"n{i}"] and checks[f"w{i}"] for i in range(len(texts))):
        raise _NeedsCareful
    if not checks["kept"]:
        problems.append(ReadProblem(path, None, f"no rows with a '{STEP}'; skipped", skipped=0))
        return None
    words = {c for i, c in enumerate(texts) if not checks[f"n{i}"]}
    table.keys = tuple(k for k in table.keys if k not in words)
    # rows with nothing at all in them (blank lines) are no loss
    return table.source(run, data.filter(table.valid) if checks["unread"] else data, size)


def _careful_csv(path: Path, run: str, problems: list[ReadProblem], size: int) -> Source | None:
    """The CSV read row by row with Python's csv module: each row that cannot be read, and
    each value in a column of numbers that is no number, is counted with its line."""
    rows = Tally(path)
    values: dict[str, Tally] = {}  # by column
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                problems.append(ReadProblem(path, None, "not a readable csv file (empty CSV); skipped"))
                return None
            names = _column_names(header)
            if STEP not in names:
                problems.append(ReadProblem(path, None, f"no '{STEP}' column; skipped"))
                return None
            columns = _CarefulColumns(names)
            line = reader.line_num + 1
            for row in reader:
                columns.add(row, line, rows, values)
                line = reader.line_num + 1
    except (csv.Error, OSError) as exc:  # a field larger than csv allows, a read error
        problems.append(ReadProblem(path, None, f"not a readable csv file ({exc}); skipped"))
        return None
    frame = columns.frame()
    rows.report(problems)
    words = columns.words()
    for column, tally in values.items():  # only the columns of numbers: the others are no metric
        if column not in words:
            tally.report(problems, done="read as missing")
    if frame.height == 0:
        problems.append(ReadProblem(path, None, f"no rows with a '{STEP}'; skipped", skipped=0))
        return None
    frame = frame.drop(words)
    table = _Table.of(path, "csv", frame.schema, problems)
    return table.source(run, frame.lazy(), size) if table is not None else None


def _column_names(header: list[str]) -> list[str]:
    """The header's names, a repeated one renamed as polars does (`loss_duplicated_0`)."""
    names: list[str] = []
    for name in header:
        count = sum(1 for n in header[:len(names)] if n == name)
        names.append(name if count == 0 else f"{name}_duplicated_{count - 1}")
    return names


class _CarefulColumns:
    """The rows read so far, column by column (a frame every CAREFUL_CHUNK_ROWS rows)."""

    def __init__(self, names: list[str]):
        self.names = names
        self.step_at = names.index(STEP)
        self.run_at = names.index(RUN) if RUN in names else None
        self.metrics = [(i, n) for i, n in enumerate(names) if n not in (STEP, RUN)]
        self.numbers = {n: 0 for _, n in self.metrics}  # how many numbers each column holds
        self.parts: list[pl.DataFrame] = []
        self._clear()

    def _clear(self) -> None:
        self.steps: list[int] = []
        self.runs: list[str | None] = []
        self.columns: dict[str, list[float | None]] = {n: [] for _, n in self.metrics}

    def add(self, row: list[str], line: int, rows: Tally, values: dict[str, Tally]) -> None:
        if not any(field.strip() for field in row):
            return  # a blank line
        if len(row) > len(self.names):
            rows.add(line, RAGGED)
            return
        row = row + [""] * (len(self.names) - len(row))  # fewer fields: the last ones missing, as polars reads
        step = training_step(row[self.step_at])
        if step is None:
            rows.add(line, NO_STEP if not row[self.step_at].strip() else BAD_STEP)
            return
        self.steps.append(step)
        if self.run_at is not None:
            self.runs.append(row[self.run_at] or None)
        for i, name in self.metrics:
            text = row[i].strip()
            value = None
            if text:
                try:
                    value = float(text)
                    self.numbers[name] += 1
                except ValueError:
                    if name not in values:
                        values[name] = Tally(rows.path)
                    values[name].add(line, f"'{name}' holds text that is no number")
            self.columns[name].append(value)
        if len(self.steps) >= CAREFUL_CHUNK_ROWS:
            self.parts.append(self._part())
            self._clear()

    def _part(self) -> pl.DataFrame:
        return pl.DataFrame({STEP: pl.Series(self.steps, dtype=pl.Int64),
                             **({RUN: pl.Series(self.runs, dtype=pl.String)} if self.run_at is not None else {}),
                             **{n: pl.Series(v, dtype=pl.Float64) for n, v in self.columns.items()}})

    def frame(self) -> pl.DataFrame:
        parts = [*self.parts, self._part()]
        return parts[0] if len(parts) == 1 else pl.concat(parts)

    def words(self) -> list[str]:
        """The columns without a single number: text (a model's name), no metric."""
        return [n for n, count in self.numbers.items() if count == 0]


# ---------------------------------------------------------------- both


@dataclass
class _Table:
    """What a table's schema says: its metric columns and which rows have a training step."""

    path: Path
    kind: str  # csv, parquet
    schema: pl.Schema
    valid: pl.Expr
    keys: tuple[str, ...]

    @staticmethod
    def of(path: Path, kind: str, schema: pl.Schema, problems: list[ReadProblem],
           text_columns: bool = False) -> _Table | None:
        if STEP not in schema:
            problems.append(ReadProblem(path, None, f"no '{STEP}' column; skipped"))
            return None
        valid = valid_steps(pl.col(STEP), schema[STEP])
        if valid is None or (kind == "parquet" and schema[STEP] == pl.String):
            problems.append(ReadProblem(path, None, f"the '{STEP}' column holds {schema[STEP]}, not numbers; "
                                                    f"skipped"))
            return None
        if RUN in schema and not (schema[RUN] in (pl.String, pl.Null, pl.Categorical) or schema[RUN].is_numeric()):
            problems.append(ReadProblem(path, None, f"the '{RUN}' column holds {schema[RUN]}, not run names; "
                                                    f"skipped"))
            return None
        keys = tuple(c for c, dtype in schema.items() if c not in (RUN, STEP)
                     and (dtype.is_numeric() or (text_columns and dtype == pl.String)))
        return _Table(path, kind, schema, valid, keys)

    def source(self, run: str, lazy: pl.LazyFrame, size: int) -> Source:
        """Several runs in one table (a `run` column): each named under the file's own id."""
        named = RUN in self.schema
        columns = (as_steps(pl.col(STEP), self.schema[STEP]).alias(STEP),
                   *(pl.col(k).cast(pl.Float64, strict=False) for k in self.keys))
        return Source(run, self.kind, self.path, lazy.select(run_column(run, named), *columns), self.keys,
                      size=size, multi_run=named, stored=lazy if named else None, columns=columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

