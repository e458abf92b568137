"""JSON logs: JSON Lines (`{"step": …, key: value}` a line) and the Trainer's
`trainer_state.json` (its `log_history`)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.readers.common import ReadProblem, Source, metric_keys, number, rows_frame, run_column

BLOCK_BYTES = 32 * 2**20  # read and parsed by polars a block of whole lines at a time
SAMPLE_LINES = 1000  # lines polars infers a block's schema from, when that is provably enough
# Past this size the parsed blocks go to temporary Parquet files, scanned lazily, so that a
# log larger than memory can still be audited by a streaming query.
SPILL_BYTES = 256 * 2**20
# Python's json writes non-finite floats as bare tokens (NaN, Infinity, -Infinity), which
# polars' JSON reader refuses; quoted, they parse as strings and are cast back to floats
# (docs/language.md §2). A token inside a string breaks the JSON and sends the block to the
# line-by-line reader: never misread.


def read_jsonl(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    """A JSON Lines log; a `run` field in its lines names several runs (`<run>/<name>`)."""
    size = path.stat().st_size
    spill = _Spill() if size > SPILL_BYTES else None
    parts, named = [], False
    for offset, block in _blocks(path):  # each block parsed, then kept or spilled, before the next
        frame = _parse_block(block, offset, path, problems)
        if frame is not None:
            named = named or RUN in frame.columns
            parts.append(spill.put(frame) if spill else frame.lazy())
    if not parts:
        problems.append(ReadProblem(path, None, "no rows with a 'step'; skipped"))
        return None
    stored = (parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed"))
    columns = (pl.col(STEP), pl.exclude(STEP, RUN))
    lazy = stored.select(run_column(run, named), *columns)
    return Source(run, "jsonl", path, lazy, metric_keys(lazy), size=size, multi_run=named,
                  stored=stored if named else None, columns=columns)


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of blocks of whole lines (a partial last line is read again
    at the start of the next block rather than copied over)."""
    offset = 0
    with path.open("rb") as file:
        while chunk := file.read(BLOCK_BYTES):
            cut = chunk.rfind(b"\n") + 1
            if 0 < cut < len(chunk):
                file.seek(offset + cut)
                chunk = chunk[:cut]
            elif cut == 0 and len(chunk) == BLOCK_BYTES:  # one line longer than a block
                chunk += file.readline()
            yield offset, chunk
            offset += len(chunk)


def _line_number(path: Path, offset: int) -> int:
    """The number of the line starting at `offset` (counted only for a damaged block)."""
    count = 1
    with path.open("rb") as file:
        while offset > 0:
            chunk = file.read(min(BLOCK_BYTES, offset))
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _parse_block(block: bytes, offset: int, path: Path, problems: list[ReadProblem]) -> pl.DataFrame | None:
    """polars' reader when the block is plain JSON (the common case), else line by line."""
    quoted = block.replace(b"NaN", b'"nan"')
    if b"Infinity" in quoted:  # rare: one scan to skip two
        quoted = quoted.replace(b"-Infinity", b'"-inf"').replace(b"Infinity", b'"inf"')
    frame = _sampled_read(quoted)
    if frame is None:
        try:
            frame = pl.read_ndjson(quoted, infer_schema_length=None)
        except Exception:  # a damaged line: the careful reader finds it and says where
            lines = block.decode("utf-8", errors="replace").splitlines()
            first_line = _line_number(path, offset)
            return _records_frame(_json_lines(enumerate(lines, start=first_line), path, problems))
    return _numbers(frame)


def _sampled_read(block: bytes) -> pl.DataFrame | None:
    """The block read with its schema inferred from its first lines (4x faster than from
    all of them), or None unless that provably read every key-value pair: polars drops a
    key first seen later (an evaluation entry) without a word. In flat objects each pair
    has one `":`, so the pairs in the text must equal the cells read plus explicit nulls;
    anything else (nesting, `":` inside a string) only costs the slower read."""
    try:
        frame = pl.read_ndjson(block, infer_schema_length=SAMPLE_LINES)
    except Exception:
        return None
    pairs = block.count(b'":')
    nulls = block.count(b'": null') + block.count(b'":null') if b"null" in block else 0
    cells = sum(frame.height - frame[c].null_count() for c in frame.columns)
    return frame if pairs == cells + nulls else None


def _numbers(frame: pl.DataFrame) -> pl.DataFrame | None:
    """step, run (if named), and every column that holds numbers, as Float64."""
    schema = frame.schema
    if STEP not in schema or not schema[STEP].is_numeric():
        return None
    keys = [c for c, dtype in schema.items() if c not in (STEP, RUN)
            and (dtype.is_numeric() or dtype in (pl.Null, pl.String))]
    frame = frame.filter(pl.col(STEP).is_not_null()).select(
        pl.col(STEP).cast(pl.Int64), *([pl.col(RUN).cast(pl.String)] if RUN in schema else []),
        *(pl.col(k).cast(pl.Float64, strict=False) for k in keys))  # "nan", "inf", "-inf" → floats
    words = [k for k in keys if schema[k] == pl.String and frame[k].null_count() == frame.height]
    return frame.drop(words) if frame.height else None  # a column of words is no metric


class _Spill:
    """Parsed blocks of a large log as temporary Parquet files, removed at exit."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="ruledsl-jsonl-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.count = 0

    def put(self, frame: pl.DataFrame) -> pl.LazyFrame:
        path = self.folder / f"{self.count:06d}.parquet"
        self.count += 1
        frame.write_parquet(path, compression="lz4")  # fast: read back once, then removed
        return pl.scan_parquet(path)


def _json_lines(lines, path: Path, problems: list[ReadProblem]) -> Iterator[dict[str, Any]]:
    for number_, line in lines:
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


def _records_frame(records) -> pl.DataFrame | None:
    rows = []
    for record in records:
        step = record.get(STEP)
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            continue  # e.g. a header line without a step: nothing to place it at
        values = ((k, number(v)) for k, v in record.items() if k not in (STEP, RUN))
        row: dict[str, Any] = {STEP: int(step), **{k: v for k, v in values if v is not None}}
        if RUN in record:  # one file holding several runs, like a table with a `run` column
            row[RUN] = str(record[RUN])
        rows.append(row)
    return rows_frame(rows) if rows else None


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
    rows = _records_frame(entries)
    if rows is None:
        problems.append(ReadProblem(path, None, "no entry with a 'step' in its log_history; skipped"))
        return None
    frame = rows.select(pl.lit(run, dtype=pl.String).alias(RUN), pl.exclude(RUN))  # one run, whatever it says
    return Source(run, "trainer_state", path, frame.lazy(), metric_keys(frame), size=path.stat().st_size)
