"""What every reader shares: problems with a place, numbers as docs/language.md §2 reads them,
training steps, and the shape of a source (one run, or several when a table has a `run` column)."""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.model.config import RunConfig

NON_FINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
                      "infinity": math.inf, "-infinity": -math.inf}
# A step is kept as a 64-bit integer (the engine orders rows by it): a logged step outside
# [-2**63, 2**63) names no training step, and its row is skipped with a problem said.
STEP_LIMIT = 2**63
# What a problem cost: the whole file or run ("run": nothing of it is audited), some of its
# rows or records ("rows", counted in `skipped`), only (part of) the run's configuration
# ("config": every metric is audited), or nothing that was meant to be audited ("nothing":
# e.g. a deleted MLflow run).
Lost = Literal["run", "rows", "config", "nothing"]


@dataclass(frozen=True)
class ReadProblem:
    """Something in a log that could not be read: where, and what was done about it.

    `line` is the (first) line concerned, where the format has lines. `lost` says what the
    audit goes without because of it, `skipped` how many rows (lines, log_history entries,
    table rows, events, metric lines) were not read, or not read in full, where they could
    be counted (None: not counted, e.g. a file that could not be opened at all)."""

    path: Path
    line: int | None
    message: str
    skipped: int | None = None
    lost: Lost = "run"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


class Tally:
    """What could not be read in one file: one problem per reason, however many lines or
    records it struck (a damaged file is said once a reason, not once a line), each counted
    and the first few named."""

    SHOWN = 5

    def __init__(self, path: Path, unit: str = "line", plural: str | None = None):
        self.path, self.unit, self.plural = path, unit, plural or unit + "s"
        self.places: dict[str, list[int | None]] = {}  # reason → the first SHOWN places
        self.counts: dict[str, int] = {}

    def add(self, where: int | None, reason: str, count: int = 1) -> None:
        places = self.places.setdefault(reason, [])
        if len(places) < self.SHOWN:
            places.append(where)
        self.counts[reason] = self.counts.get(reason, 0) + count

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def report(self, problems: list[ReadProblem], done: str = "skipped", lost: Lost = "rows",
               single: str | None = None) -> None:
        """One problem per reason into `problems`: with lines, the first line is the problem's;
        else the places are in the message. `single`: what was done, said of one line."""
        for reason, places in self.places.items():
            count = self.counts[reason]
            known = [str(p) for p in places if p is not None] + (["…"] if count > len(places) else [])
            first = places[0] if self.unit == "line" else None
            if count == 1 and self.unit == "line":
                message = f"{reason}; {single or done}"
            elif count == 1:
                message = f"{reason}; {done} ({self.unit} {known[0]})" if known else f"{reason}; {done}"
            else:
                message = f"{reason}; {count} {self.plural} {done}" + (f" ({self.plural} {', '.join(known)})"
                                                                       if known else "")
            problems.append(ReadProblem(self.path, first, message, skipped=count, lost=lost))


class Spill:
    """Parsed parts of a large log as temporary Parquet files (scanned lazily), removed at exit."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ruledsl-read-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.count = 0

    def path(self) -> Path:
        self.count += 1
        return self.folder / f"{self.count:06d}.parquet"

    def put(self, frame: pl.DataFrame) -> pl.LazyFrame:
        path = self.path()
        frame.write_parquet(path, compression="lz4")  # fast: read back once, then removed
        return pl.scan_parquet(path)


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


def files_under(directory: Path, problems: list[ReadProblem], keep: Callable[[str], bool] = lambda name: True
                ) -> list[Path]:
    """The files below `directory` whose names `keep` accepts, in path order, without
    recursion (a tree thousands of folders deep is walked all the same) and without following
    links to folders (no loop). A folder that cannot be listed is said and left out."""
    found: list[Path] = []
    pending = [directory]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name, reverse=True)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file() and keep(entry.name):
                    found.append(Path(entry.path))
        except OSError as exc:
            problems.append(ReadProblem(folder, None, f"cannot list the folder ({os_error(exc)}); "
                                                      f"what is below it is not read"))
    return sorted(found)


def os_error(exc: OSError) -> str:
    """An OSError in a few words, without the path (the problem names it)."""
    return exc.strerror or type(exc).__name__


def number(value: Any) -> float | None:
    """A logged value as a float, or None when it is no number (docs/language.md §2's tokens and strings).
    An integer too large for a float is ±inf, as the same number written with an exponent is."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return NON_FINITE_STRINGS.get(value.strip().lower())
    return None


def training_step(value: Any) -> int | None:
    """A logged step as the integer rows are ordered by, or None when it names no training
    step: it must be a number (or a text holding one, "1010") that is finite and within
    [-2**63, 2**63); a fractional one is cut to its whole part, as polars' cast does."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:  # not an integer's digits (or more than Python converts)
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    if isinstance(value, int) and -STEP_LIMIT <= value < STEP_LIMIT:
        return value
    return None


def valid_steps(step: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """Where a step column of `dtype` holds a training step (see `training_step`); None
    when the type holds no number at all. Text is read as the number it holds."""
    if dtype in (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32):
        return step.is_not_null()
    if dtype.is_integer():  # UInt64, Int128, …: may exceed the range
        return step.is_not_null() & (step >= -STEP_LIMIT) & (step <= STEP_LIMIT - 1)
    if dtype.is_numeric() or dtype == pl.String:  # floats, decimals; text holding a number
        as_float = step.cast(pl.Float64, strict=False)
        return as_float.is_finite().fill_null(False) & (as_float >= -STEP_LIMIT) & (as_float < STEP_LIMIT)
    return None


def as_steps(step: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A step column of `dtype` as Int64, where `valid_steps` holds."""
    if dtype.is_integer():
        return step.cast(pl.Int64, strict=False)
    return step.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


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
