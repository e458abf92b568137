"""Training logs on disk → one wide frame of runs (spec §2).

Formats: JSON Lines (one `{"step": …, key: value}` object a line, the
callback's `metrics.jsonl` included), Hugging Face `trainer_state.json` (its
`log_history`), CSV and Parquet. Each file is a run; its id is its path
relative to the audited root (a standard file name stands for its folder).
A line that cannot be read is reported with its number and skipped; the rest
is still audited.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from .frames import RUN, STEP

RUN_FILE_NAMES = ("metrics.jsonl", "trainer_state.json")  # their folder names the run
SUFFIXES = (".jsonl", ".csv", ".parquet")
NON_FINITE_STRINGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf,
                      "infinity": math.inf, "-infinity": -math.inf}


@dataclass(frozen=True)
class ReadProblem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class RunLog:
    run: str
    path: Path
    frame: pl.DataFrame  # step + one Float64 column per key


def find_run_files(root: Path) -> list[Path]:
    """The log files under `root` (or `root` itself), each once, in path order."""
    if root.is_file():
        return [root]
    files = [p for p in sorted(root.rglob("*"))
             if p.is_file() and (p.name in RUN_FILE_NAMES or p.suffix in SUFFIXES)]
    return [p for p in files if p.name != "alerts.jsonl"]


def run_id(path: Path, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    target = path.parent if path.name in RUN_FILE_NAMES else path.with_suffix("")
    relative = target.relative_to(base).as_posix() if target != base else ""
    return relative or (root.name if path.name not in RUN_FILE_NAMES else path.parent.name)


def read_run(path: Path, run: str, problems: list[ReadProblem]) -> RunLog | None:
    """One run's rows, or None (with a problem said) when nothing in it can be read."""
    if path.suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pl.read_csv(path, infer_schema_length=10000)
    else:
        records = list(_json_records(path, problems))
        frame = _records_frame(records, path, problems)
    if frame is None or STEP not in frame.columns:
        if frame is not None:
            problems.append(ReadProblem(path, None, "no 'step' in this log; skipped"))
        return None
    numeric = [c for c in frame.columns if c != STEP and c != RUN and frame.schema[c].is_numeric()]
    return RunLog(run, path, frame.select(pl.col(STEP).cast(pl.Int64),
                                          *(pl.col(c).cast(pl.Float64) for c in numeric)))


def _json_records(path: Path, problems: list[ReadProblem]) -> Iterator[dict[str, Any]]:
    if path.name == "trainer_state.json":
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(ReadProblem(path, None, f"not readable JSON: {exc}"))
            return
        yield from (entry for entry in state.get("log_history", []) if isinstance(entry, dict))
        return
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(ReadProblem(path, number, "truncated or corrupt line; skipped"))
                continue
            if isinstance(record, dict):
                yield record
            else:
                problems.append(ReadProblem(path, number, "not a JSON object; skipped"))


def _records_frame(records: list[dict[str, Any]], path: Path, problems: list[ReadProblem]) -> pl.DataFrame | None:
    rows = []
    for record in records:
        step = record.get(STEP)
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            continue  # e.g. a header line without a step: nothing to place it at
        numbers = {k: _number(v) for k, v in record.items() if k != STEP}
        rows.append({STEP: int(step), **{k: v for k, v in numbers.items() if v is not None}})
    if not rows:
        problems.append(ReadProblem(path, None, "no rows with a step"))
        return None
    keys = list(dict.fromkeys(k for row in rows for k in row))
    schema = {k: (pl.Int64 if k == STEP else pl.Float64) for k in keys}
    return pl.DataFrame(rows, schema=schema)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return NON_FINITE_STRINGS.get(value.strip().lower())
    return None


def read_runs(paths: list[Path]) -> tuple[pl.DataFrame, list[RunLog], list[ReadProblem]]:
    """All runs under `paths` as one wide frame (run, step, metrics…), the runs, and problems."""
    problems: list[ReadProblem] = []
    runs: list[RunLog] = []
    for root in paths:
        if not root.exists():
            problems.append(ReadProblem(root, None, "no such file or directory"))
            continue
        for path in find_run_files(root):
            log = read_run(path, run_id(path, root), problems)
            if log is not None:
                runs.append(log)
    frames = [r.frame.with_columns(pl.lit(r.run).alias(RUN)) for r in runs]
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
        schema={RUN: pl.String, STEP: pl.Int64})
    return frame, runs, problems
