"""Log frames: what the engines read, normalized once (docs/language.md §2).

A frame comes as a polars DataFrame or LazyFrame or a pandas DataFrame, in
wide form (`run` optional, `step`, one column per metric key, null = key
absent) or long form (`run`, `step`, `key`, `value`). `LogFrame` turns any of
these into one lazy, merged table sorted by (run, step), and hands out the raw
series of one metric key per run, and the series the engine reads (with each
row's index in its run).

Most wide logs hold every metric at every row, all finite: such a column's
series is the log itself, so for a log in memory its index is computed once,
on the log, instead of once per series (with a filter that keeps every row).
The same holds for `nonfinite`, which sees every value: a column with a value
at every row, finite or not, is its own series there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from ruledsl.lang.errors import FrameError

RUN, STEP, KEY, VALUE = "run", "step", "key", "value"
INDEX = "__i"  # position in the series of the run (docs/language.md §2's i)
DEFAULT_RUN = "default"  # the run id of a frame without a `run` column


def block_starts() -> pl.Expr:
    """True at the first row of each block of rows with the same run id (row 0 always,
    even when its run id is null)."""
    return pl.col(RUN).ne_missing(pl.col(RUN).shift(1)) | (pl.int_range(pl.len()) == 0)


def index_in_run() -> pl.Expr:
    """0, 1, 2, … restarting at every run, for a frame sorted by run (no group-by)."""
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    return row - pl.when(block_starts()).then(row).forward_fill()


@dataclass(frozen=True)
class LogFrame:
    lazy: pl.LazyFrame  # merged: one row per (run, step) [wide] or (run, step, key) [long]
    form: str  # "wide" or "long"
    metric_columns: tuple[str, ...]  # wide form: the numeric metric columns
    input_kind: str  # "polars", "lazy" or "pandas": what the caller gave
    complete: frozenset[str] = frozenset()  # wide metric columns with a value at every row; `lazy` then holds INDEX
    finite: frozenset[str] = frozenset()  # those of `complete` whose values are all finite
    rows: int | None = None  # rows of the input (wide form), a size for choosing how to run queries

    def present(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `keys` that can appear in this frame."""
        if self.form == "long":
            return keys
        return tuple(k for k in keys if k in self.metric_columns)

    def raw_series(self, candidates: tuple[str, ...]) -> pl.LazyFrame | None:
        """run, step, value, key: the rows holding the metric, sorted by (run, step).

        Of several candidate keys, each run uses the one that appears first in it
        (lowest step; a tie goes to the earlier candidate), docs/language.md §2. None when
        no candidate can appear in the frame. Non-finite values are kept.
        """
        keys = self.present(candidates)
        if not keys:
            return None
        if self.form == "long":
            return self._long_series(keys)
        if len(keys) == 1:
            return (self.lazy.select(RUN, STEP, pl.col(keys[0]).cast(pl.Float64).alias(VALUE))
                    .filter(pl.col(VALUE).is_not_null())
                    .with_columns(pl.lit(keys[0]).alias(KEY)))
        return self._wide_series_choosing(keys)

    def series(self, candidates: tuple[str, ...], keep_nonfinite: bool = False) -> pl.LazyFrame | None:
        """`raw_series` without its non-finite values (docs/language.md §2: only `nonfinite` sees
        them) unless kept, with each row's index in its run (INDEX)."""
        keys = self.present(candidates)
        whole = self.complete if keep_nonfinite else self.finite  # columns that keep every row
        if len(keys) == 1 and keys[0] in whole:  # the log's rows, its index already computed
            return self.lazy.select(RUN, STEP, pl.col(keys[0]).cast(pl.Float64).alias(VALUE),
                                    pl.lit(keys[0]).alias(KEY), INDEX)
        rows = self.raw_series(candidates)
        if rows is None:
            return None
        if not keep_nonfinite:
            rows = rows.filter(pl.col(VALUE).is_finite())
        return rows.with_columns(index_in_run().alias(INDEX))

    def gap_series(self, candidates: tuple[str, ...]) -> pl.LazyFrame | None:
        """The series `absent(N)` reads (docs/language.md §3): at every logged step of a run after
        the metric's first appearance, VALUE = s − L, L the last step ≤ s at which it was present
        (a value, finite or not); with INDEX and the key the run uses."""
        present = self.raw_series(candidates)
        if present is None:
            return None
        firsts = present.group_by(RUN).agg(pl.col(STEP).min().alias("__first"), pl.col(KEY).first())
        steps = self.lazy.select(RUN, STEP) if self.form == "wide" else \
            self.lazy.select(RUN, STEP).unique(maintain_order=True)
        marked = present.select(RUN, STEP, pl.lit(True).alias("__present"))
        # rows are in (run, step) order: a run's last presence carries forward from its first on,
        # and rows before that are left out (a value carried from the run before never survives)
        return (steps.join(marked, on=[RUN, STEP], how="left", maintain_order="left")
                .join(firsts, on=RUN, how="inner", maintain_order="left")
                .with_columns(pl.when(pl.col("__present")).then(pl.col(STEP)).forward_fill().alias("__last"))
                .filter(pl.col(STEP) > pl.col("__first"))
                .select(RUN, STEP, (pl.col(STEP) - pl.col("__last")).cast(pl.Float64).alias(VALUE), KEY)
                .with_columns(index_in_run().alias(INDEX)))

    def matching(self, pattern: re.Pattern[str]) -> tuple[str, ...]:
        """The keys of this log a metric pattern matches (a long log is read for its keys once)."""
        if self.form == "wide":
            keys: tuple[str, ...] = self.metric_columns
        else:
            keys = self._long_keys()
        return tuple(k for k in keys if pattern.match(k))

    def _long_keys(self) -> tuple[str, ...]:
        found = self.lazy.select(pl.col(KEY).unique(maintain_order=True)).collect()[KEY].to_list()
        return tuple(k for k in found if k is not None)

    def _wide_series_choosing(self, keys: tuple[str, ...]) -> pl.LazyFrame:
        choice = _first_appearing(
            self.lazy.group_by(RUN).agg(
                pl.col(STEP).filter(pl.col(k).is_not_null()).min().alias(f"__first{j}")
                for j, k in enumerate(keys)),
            len(keys))
        value = pl.coalesce(pl.when(pl.col("__choice") == j).then(pl.col(k).cast(pl.Float64))
                            for j, k in enumerate(keys))
        key = pl.coalesce(pl.when(pl.col("__choice") == j).then(pl.lit(k)) for j, k in enumerate(keys))
        return (self.lazy.join(choice, on=RUN, how="left", maintain_order="left")
                .select(RUN, STEP, value.alias(VALUE), key.alias(KEY))
                .filter(pl.col(VALUE).is_not_null()))

    def _long_series(self, keys: tuple[str, ...]) -> pl.LazyFrame:
        rows = self.lazy.filter(pl.col(KEY).is_in(list(keys)) & pl.col(VALUE).is_not_null())
        if len(keys) > 1:
            firsts = rows.group_by(RUN).agg(
                pl.col(STEP).filter(pl.col(KEY) == k).min().alias(f"__first{j}") for j, k in enumerate(keys))
            chosen = _first_appearing(firsts, len(keys)).select(
                RUN, pl.col("__choice").replace_strict(dict(enumerate(keys)), return_dtype=pl.String).alias(KEY))
            rows = rows.join(chosen, on=[RUN, KEY], how="semi", maintain_order="left")
        return rows.select(RUN, STEP, pl.col(VALUE).cast(pl.Float64), KEY)


def _first_appearing(firsts: pl.LazyFrame, count: int) -> pl.LazyFrame:
    """Per run, the index of the candidate whose first step is lowest (ties: lowest index).

    Folded candidate by candidate, a missing first step (the key never appears) losing to any
    step: no sentinel step, which a log's own steps (any 64-bit whole number) could reach.
    """
    choice, best = pl.lit(None, dtype=pl.Int64), pl.lit(None, dtype=pl.Int64)
    for j in range(count):
        first = pl.col(f"__first{j}")
        better = first.is_not_null() & (best.is_null() | (first < best))
        choice = pl.when(better).then(pl.lit(j, dtype=pl.Int64)).otherwise(choice)
        best = pl.when(better).then(first).otherwise(best)
    return firsts.select(RUN, choice.alias("__choice"))


def to_log_frame(frame: Any) -> LogFrame:
    """Normalize any accepted frame; raise FrameError with a hint when it cannot be read."""
    lazy, kind = _as_lazy(frame)
    schema = lazy.collect_schema()
    columns = schema.names()
    if STEP not in columns:
        raise FrameError(f"the frame has no '{STEP}' column (columns: {_listed(columns)})")
    if RUN not in columns:
        lazy = lazy.with_columns(pl.lit(DEFAULT_RUN).alias(RUN))
    lazy = lazy.with_columns(_step_expr(schema))
    if {KEY, VALUE} <= set(columns) and set(columns) <= {RUN, STEP, KEY, VALUE}:
        return LogFrame(_merge_long(lazy), "long", (), kind)
    metric_columns = tuple(c for c in columns if c not in (RUN, STEP) and schema[c].is_numeric())
    # Only a frame in memory is checked for complete columns: a lazy one would be read once more.
    merged, complete, finite, rows = _merge_wide(lazy, metric_columns,
                                                 in_memory=kind != "lazy" and INDEX not in columns)
    return LogFrame(merged, "wide", metric_columns, kind, complete, finite, rows)


def _as_lazy(frame: Any) -> tuple[pl.LazyFrame, str]:
    if isinstance(frame, pl.LazyFrame):
        return frame, "lazy"
    if isinstance(frame, pl.DataFrame):
        return frame.lazy(), "polars"
    if type(frame).__module__.startswith("pandas"):
        try:
            return pl.from_pandas(frame).lazy(), "pandas"
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise FrameError(f"reading a pandas frame needs pyarrow: {exc}") from None
    raise FrameError(f"expected a polars DataFrame/LazyFrame or a pandas DataFrame, got {type(frame).__name__}")


def _step_expr(schema: pl.Schema) -> pl.Expr:
    dtype = schema[STEP]
    if not (dtype.is_integer() or dtype.is_float()):
        raise FrameError(f"the '{STEP}' column must hold numbers, not {dtype}")
    return pl.col(STEP).cast(pl.Int64, strict=True)


def _merge_wide(lazy: pl.LazyFrame, metric_columns: tuple[str, ...], in_memory: bool
                ) -> tuple[pl.LazyFrame, frozenset[str], frozenset[str], int]:
    """Rows with the same (run, step) merge key by key, the later row winning (docs/language.md §2).

    Logs are nearly always sorted with unique steps already; one cheap pass
    checks that, and only otherwise do we pay for grouping and sorting. For a
    log in memory, each row's index in its run comes first (the checks read it
    rather than compare run ids again; a sorted log keeps it), and the same pass
    finds the complete columns (a value at every row) and which of them are all finite.
    """
    if in_memory:
        lazy = lazy.with_columns(index_in_run().alias(INDEX)).collect().lazy()
        new_block = pl.col(INDEX) == 0
    else:
        new_block = block_starts()
    # A sum is NaN or infinite when a value is (or, rarely, when finite values overflow:
    # then the column is merely not treated as finite), and one pass is cheaper than is_finite.
    column_checks = [check for j, c in enumerate(metric_columns)
                     for check in ((pl.col(c).null_count() == 0).alias(f"__complete{j}"),
                                   pl.col(c).sum().cast(pl.Float64).is_finite().alias(f"__finite{j}"))
                     ] if in_memory else []
    stats = lazy.select(
        (~new_block & (pl.col(STEP) <= pl.col(STEP).shift(1))).any().alias("out_of_order"),
        new_block.sum().alias("run_blocks"),
        # Every run id appears first where a block starts: hash only those rows.
        pl.col(RUN).filter(new_block).n_unique().alias("runs"),
        pl.col(STEP).null_count().alias("missing_steps"),
        pl.len().alias("rows"),
        *column_checks,
    ).collect()
    row = stats.row(0, named=True)
    if row["missing_steps"]:
        raise FrameError(f"{row['missing_steps']} row(s) have no '{STEP}'")
    if not row["out_of_order"] and row["run_blocks"] == row["runs"]:
        complete = frozenset(c for j, c in enumerate(metric_columns) if row.get(f"__complete{j}"))
        finite = frozenset(c for j, c in enumerate(metric_columns) if c in complete and row.get(f"__finite{j}"))
        kept = [RUN, STEP, *metric_columns, *([INDEX] if in_memory else [])]
        return lazy.select(kept), complete, finite, row["rows"]
    return (lazy.group_by(RUN, STEP)
            .agg(pl.col(c).drop_nulls().last() for c in metric_columns)
            .sort(RUN, STEP)), frozenset(), frozenset(), row["rows"]


def _merge_long(lazy: pl.LazyFrame) -> pl.LazyFrame:
    """A null is a value for merging (docs/language.md §2): a later null at a step overrides an
    earlier value (the key is then absent there), and a step holding only nulls is a logged step
    (`absent` evaluates at it). Series read the non-null values only."""
    return (lazy.select(RUN, STEP, pl.col(KEY).cast(pl.String), pl.col(VALUE).cast(pl.Float64))
            .unique(subset=[RUN, STEP, KEY], keep="last", maintain_order=True)
            .sort(RUN, STEP, maintain_order=True))


def _listed(columns: list[str]) -> str:
    shown = ", ".join(columns[:8])
    return shown + (", …" if len(columns) > 8 else "")
