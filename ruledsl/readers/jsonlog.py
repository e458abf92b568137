"""JSON logs: JSON Lines (`{"step": …, key: value}` a line) and the Trainer's
`trainer_state.json` (its `log_history`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from ruledsl.engines.batch.frames import RUN, STEP
from ruledsl.readers.common import (
    ReadProblem,
    Source,
    Spill,
    Tally,
    metric_keys,
    number,
    rows_frame,
    run_column,
    training_step,
    valid_steps,
)

BLOCK_BYTES = 32 * 2**20  # read and parsed by polars a block of whole lines at a time
SAMPLE_LINES = 1000  # lines polars infers a block's schema from, when that is provably enough
# Past this size the parsed blocks go to temporary Parquet files, scanned lazily, so that a
# log larger than memory can still be audited by a streaming query.
SPILL_BYTES = 256 * 2**20
# A line longer than this is no log entry (a binary file, a runaway writer): it is skipped
# and counted, never held in memory whole.
MAX_LINE_BYTES = 64 * 2**20
# Python's json writes non-finite floats as bare tokens (NaN, Infinity, -Infinity), which
# polars' JSON reader refuses; quoted, they parse as strings and are cast back to floats
# (docs/language.md §2). A token inside a string breaks the JSON and sends the block to the
# line-by-line reader: never misread.
#
# The careful (line-by-line) reader takes a block over whenever polars' reading of it is in
# doubt: a line that is not JSON, a step that is missing or names no training step (text,
# NaN, past 64 bits), a number polars refuses (400 digits, 1e400). Each line it cannot
# read is counted and named (`Tally`: one problem per reason); the other blocks keep the
# fast reader.
#
# polars' time to infer a line's types grows with the cube of its nesting (a line 400 deep:
# seconds; 900 deep: half a minute), so it infers only from shallow lines: the lines it
# takes its schema from, and every line before it infers from all of them, are checked to
# nest at most MAX_DEPTH deep (a line it only parses with a schema it has costs nothing).
MAX_DEPTH = 16
NOT_BRACKETS = bytes(range(256)).translate(None, b"{}[]\n")
CORRUPT, NOT_OBJECT, TOO_DEEP = "truncated or corrupt line", "not a JSON object", "nested too deeply to read"
NO_STEP = "no 'step'"
BAD_STEP = "its 'step' names no training step (a whole number of at most 64 bits)"


def read_jsonl(path: Path, run: str, problems: list[ReadProblem]) -> Source | None:
    """A JSON Lines log; a `run` field in its lines names several runs (`<run>/<name>`)."""
    size = path.stat().st_size
    spill = Spill() if size > SPILL_BYTES else None
    tally = Tally(path)
    parts, named = [], False
    for offset, block in _blocks(path, tally):  # each block parsed, then kept or spilled, before the next
        frame = _parse_block(block, offset, path, tally)
        if frame is not None:
            named = named or RUN in frame.columns
            parts.append(spill.put(frame) if spill else frame.lazy())
    tally.report(problems)
    if not parts:
        problems.append(ReadProblem(path, None, "no rows with a 'step'; skipped", skipped=0))
        return None
    stored = (parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed"))
    columns = (pl.col(STEP), pl.exclude(STEP, RUN))
    lazy = stored.select(run_column(run, named), *columns)
    return Source(run, "jsonl", path, lazy, metric_keys(lazy), size=size, multi_run=named,
                  stored=stored if named else None, columns=columns)


def _blocks(path: Path, tally: Tally) -> Iterator[tuple[int, bytes]]:
    """(byte offset, bytes) of blocks of whole lines (a partial last line is read again
    at the start of the next block rather than copied over). A line longer than
    MAX_LINE_BYTES is skipped and counted."""
    offset = 0
    with path.open("rb") as file:
        while chunk := file.read(BLOCK_BYTES):
            cut = chunk.rfind(b"\n") + 1
            if 0 < cut < len(chunk):
                file.seek(offset + cut)
                chunk = chunk[:cut]
            elif cut == 0 and len(chunk) == BLOCK_BYTES:  # one line longer than a block
                chunk += file.readline(max(MAX_LINE_BYTES - len(chunk), 1))
                if len(chunk) >= MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                    tally.add(_line_number(path, offset), f"a line of more than {MAX_LINE_BYTES:,} bytes")
                    offset += len(chunk) + _skip_line(file)
                    continue
            yield offset, chunk
            offset += len(chunk)


def _skip_line(file: BinaryIO) -> int:
    """Reads past the rest of a line, a block at a time; the number of bytes skipped."""
    skipped = 0
    while part := file.readline(BLOCK_BYTES):
        skipped += len(part)
        if part.endswith(b"\n"):
            break
    return skipped


def _line_number(path: Path, offset: int) -> int:
    """The number of the line starting at `offset` (counted only for a damaged block)."""
    count = 1
    with path.open("rb") as file:
        while offset > 0:
            chunk = file.read(min(BLOCK_BYTES, offset))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _parse_block(block: bytes, offset: int, path: Path, tally: Tally) -> pl.DataFrame | None:
    """polars' reader when the block is plain JSON and every line of it has a training step
    (the common case), else line by line."""
    quoted = block.replace(b"NaN", b'"nan"')
    if b"Infinity" in quoted:  # rare: one scan to skip two
        quoted = quoted.replace(b"-Infinity", b'"-inf"').replace(b"Infinity", b'"inf"')
    fast = None
    try:
        if _shallow(_head(quoted, SAMPLE_LINES)):
            frame = _sampled_read(quoted)
            if frame is None and _shallow(quoted):  # rare: a key first seen late, nesting
                frame = pl.read_ndjson(quoted, infer_schema_length=None)
            fast = _numbers(frame) if frame is not None else None
    except Exception:  # a damaged line: the careful reader finds it and says where
        fast = None
    if fast is not None:
        return fast if fast.height else None
    lines = enumerate(block.split(b"\n"), start=_line_number(path, offset))  # lines end at \n only
    return _records_frame(_json_lines(lines, tally), tally)


def _head(block: bytes, lines: int) -> bytes:
    """The block's first `lines` lines."""
    end = -1
    for _ in range(lines):
        end = block.find(b"\n", end + 1)
        if end < 0:
            return block
    return block[:end + 1]


def _shallow(block: bytes) -> bool:
    """Whether no line of the block nests deeper than about MAX_DEPTH: its brackets alone,
    innermost pairs taken out round after round, leave nothing. (Brackets inside strings,
    or a damaged line, may leave some: that block is read line by line.)"""
    brackets = block.translate(None, NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        fewer = brackets.replace(b"{}", b"").replace(b"[]", b"")
        if len(fewer) == len(brackets):
            break
        brackets = fewer
    return not brackets.translate(None, b"\n")


# A key-value pair is the key's closing quote, maybe blanks, and a colon.
PAIR, NULL_PAIR = re.compile(rb'"[ \t\r\n]*:'), re.compile(rb'"[ \t\r\n]*:[ \t\r\n]*null')


def _sampled_read(block: bytes) -> pl.DataFrame | None:
    """The block read with its schema inferred from its first lines (4x faster than from
    all of them), or None unless that provably read every key-value pair: polars drops a
    key first seen later (an evaluation entry) without a word. In flat objects the pairs in
    the text must equal the cells read plus explicit nulls. Each pair has one colon, so the
    colons (one fast count) are never fewer than the pairs: equal, nothing was dropped. A
    colon in a string ("12:30") or a blank before one (`"loss" : 1`) makes them differ;
    the pairs are then counted as quote, blanks, colon. Any count too high (nesting, a
    colon inside a string) only costs the slower read."""
    try:
        frame = pl.read_ndjson(block, infer_schema_length=SAMPLE_LINES)
    except Exception:
        return None
    cells = sum(frame.height - frame[c].null_count() for c in frame.columns)
    nulls = block.count(b'": null') + block.count(b'":null') if b"null" in block else 0
    if block.count(b":") == cells + nulls:
        return frame
    nulls = len(NULL_PAIR.findall(block)) if b"null" in block else 0
    return frame if len(PAIR.findall(block)) == cells + nulls else None


def _numbers(frame: pl.DataFrame) -> pl.DataFrame | None:
    """step, run (if named), and every column that holds numbers, as Float64. None when a
    line has no step, or one polars read as anything but a number of a training step, or a
    run that is no text or number: the block is then read line by line, which says where."""
    schema = frame.schema
    if STEP not in schema or schema[STEP] == pl.String:
        return None
    valid = valid_steps(pl.col(STEP), schema[STEP])
    if valid is None or not frame.select(valid.all()).item():
        return None
    if RUN in schema and not (schema[RUN] in (pl.String, pl.Null) or schema[RUN].is_numeric()):
        return None
    keys = [c for c, dtype in schema.items() if c not in (STEP, RUN)
            and (dtype.is_numeric() or dtype in (pl.Null, pl.String))]
    frame = frame.select(
        pl.col(STEP).cast(pl.Int64), *([pl.col(RUN).cast(pl.String)] if RUN in schema else []),
        *(pl.col(k).cast(pl.Float64, strict=False) for k in keys))  # "nan", "inf", "-inf" → floats
    words = [k for k in keys if schema[k] == pl.String and frame[k].null_count() == frame.height]
    return frame.drop(words)  # a column of words is no metric


def _json_lines(lines: Iterable[tuple[int, bytes]], tally: Tally) -> Iterator[tuple[int | None, Any]]:
    """(line number, value) of each line that is JSON; the others are counted in `tally`."""
    for number_, line in lines:
        if not line.strip():
            continue
        try:
            yield number_, json.loads(line)
        except RecursionError:
            tally.add(number_, TOO_DEEP)
        except ValueError:  # not JSON, not UTF-8, or an integer of more digits than Python reads
            tally.add(number_, CORRUPT)


def _records_frame(records: Iterable[tuple[int | None, Any]], tally: Tally) -> pl.DataFrame | None:
    """The rows of the records (JSON objects) with a training step; every other record is
    counted in `tally` at its place (a line or an entry number)."""
    rows = []
    for where, record in records:
        if not isinstance(record, dict):
            tally.add(where, NOT_OBJECT)
            continue
        step = training_step(record.get(STEP))
        if step is None:
            tally.add(where, NO_STEP if record.get(STEP) is None else BAD_STEP)
            continue
        values = ((k, number(v)) for k, v in record.items() if k not in (STEP, RUN))
        row: dict[str, Any] = {STEP: step, **{k: v for k, v in values if v is not None}}
        if record.get(RUN) is not None:  # one file holding several runs, like a table with a `run` column
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
    except ValueError as exc:  # an integer of more digits than Python reads
        problems.append(ReadProblem(path, None, f"not readable JSON ({exc}); skipped"))
        return None
    except RecursionError:
        problems.append(ReadProblem(path, None, f"{TOO_DEEP}; skipped"))
        return None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        problems.append(ReadProblem(path, None, "no 'log_history' list: not a Trainer state; skipped"))
        return None
    return state


def state_source(path: Path, state: dict[str, Any], run: str, problems: list[ReadProblem]) -> Source | None:
    """The rows of a state's log_history; an entry that is no object or has no training step
    is counted and named by its number (1 = the first entry)."""
    tally = Tally(path, "log_history entry", "log_history entries")
    rows = _records_frame(enumerate(state["log_history"], start=1), tally)
    tally.report(problems)
    if rows is None:
        problems.append(ReadProblem(path, None, "no entry with a 'step' in its log_history; skipped",
                                    skipped=0))
        return None
    frame = rows.select(pl.lit(run, dtype=pl.String).alias(RUN), pl.exclude(RUN))  # one run, whatever it says
    return Source(run, "trainer_state", path, frame.lazy(), metric_keys(frame), size=path.stat().st_size)
