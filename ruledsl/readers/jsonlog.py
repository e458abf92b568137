"""JSON logs: JSON Lines (`{"step": …, key: value}` a line) and the Trainer's
`trainer_state.json` (its `log_history`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from ..frames import RUN, STEP
from .common import ReadProblem, Source, metric_keys, number, rows_frame

# Past this size a JSON Lines file is scanned lazily by polars without a first pass in
# Python: line-exact problem reports cost a Python parse of every line, too slow for
# archives of millions of rows. A corrupt line in such a file fails the whole query.
LAZY_JSONL_BYTES = 256 * 2**20


def read_jsonl(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    size = path.stat().st_size
    if size > LAZY_JSONL_BYTES:
        lazy = _scan_ndjson(path, run)
        if lazy is not None:
            return Source(run, "jsonl", path, lazy, metric_keys(lazy), size=size)
    frame = _fast_read(path, run)
    if frame is None:  # something polars will not take as it is: read line by line, saying where
        frame = _careful_read(path, run, problems)
    if frame is None:
        return None
    return Source(run, "jsonl", path, frame.lazy(), metric_keys(frame), size=size)


def _fast_read(path: Path, run: str) -> pl.DataFrame | None:
    """polars' own reader, when the file is plain numbers throughout (the common case)."""
    try:
        frame = pl.read_ndjson(path, infer_schema_length=None)
    except Exception:  # any parse problem: the careful reader finds and reports the line
        return None
    return _numeric_only(frame, run)


def _scan_ndjson(path: Path, run: str) -> pl.LazyFrame | None:
    try:
        lazy = pl.scan_ndjson(path, infer_schema_length=10_000)
        schema = lazy.collect_schema()
    except Exception:
        return None
    if STEP not in schema or any(dtype == pl.String for dtype in schema.dtypes()):
        return None
    keys = [c for c, dtype in schema.items() if c != STEP and dtype.is_numeric()]
    return lazy.filter(pl.col(STEP).is_not_null()).select(
        pl.lit(run, dtype=pl.String).alias(RUN), pl.col(STEP).cast(pl.Int64),
        *(pl.col(k).cast(pl.Float64) for k in keys))


def _numeric_only(frame: pl.DataFrame, run: str) -> pl.DataFrame | None:
    """The frame with its numbers, or None when a column holds strings (maybe "nan"):
    those need spec §2's reading, value by value."""
    if STEP not in frame.columns or any(dtype == pl.String for dtype in frame.dtypes):
        return None
    if not frame.schema[STEP].is_numeric():
        return None
    keys = [c for c, dtype in frame.schema.items() if c != STEP and (dtype.is_numeric() or dtype == pl.Null)]
    frame = frame.filter(pl.col(STEP).is_not_null())
    if frame.is_empty():
        return None
    return frame.select(pl.lit(run, dtype=pl.String).alias(RUN), pl.col(STEP).cast(pl.Int64),
                        *(pl.col(k).cast(pl.Float64) for k in keys))


def _careful_read(path: Path, run: str, problems: list[ReadProblem]) -> pl.DataFrame | None:
    return _records_frame(_json_lines(path, problems), path, run, problems)


def _json_lines(path: Path, problems: list[ReadProblem]) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number_, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(ReadProblem(path, number_, "truncated or corrupt line; skipped"))
                continue
            if isinstance(record, dict):
                yield record
            else:
                problems.append(ReadProblem(path, number_, "not a JSON object; skipped"))


def _records_frame(records, path: Path, run: str, problems: list[ReadProblem]) -> pl.DataFrame | None:
    rows = []
    for record in records:
        step = record.get(STEP)
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            continue  # e.g. a header line without a step: nothing to place it at
        values = ((k, number(v)) for k, v in record.items() if k != STEP)
        rows.append({STEP: int(step), **{k: v for k, v in values if v is not None}})
    if not rows:
        problems.append(ReadProblem(path, None, "no rows with a 'step'; skipped"))
        return None
    return rows_frame(rows, run)


# ---------------------------------------------------------------- trainer_state.json


def read_state(path: Path, problems: list[ReadProblem]) -> dict[str, Any] | None:
    """A trainer_state.json as a mapping, or None (with the problem said)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ReadProblem(path, None, f"cannot read the file: {exc}; skipped"))
        return None
    except json.JSONDecodeError as exc:
        problems.append(ReadProblem(path, exc.lineno, f"not valid JSON (column {exc.colno}: {exc.msg}); skipped"))
        return None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        problems.append(ReadProblem(path, None, "no 'log_history' list: not a Trainer state; skipped"))
        return None
    return state


def state_source(path: Path, state: dict[str, Any], run: str, problems: list[ReadProblem]) -> Source | None:
    entries = (entry for entry in state["log_history"] if isinstance(entry, dict))
    frame = _records_frame(entries, path, run, problems)
    if frame is None:
        return None
    return Source(run, "trainer_state", path, frame.lazy(), metric_keys(frame), size=path.stat().st_size)
