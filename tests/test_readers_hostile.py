"""Hostile input never blinds or crashes an audit: the readers' part.

One bad run (or line, entry, row, record) costs only itself: it becomes a `ReadProblem`
naming the file, and the line where there is one, with what was lost (`lost`) and how many
rows (`skipped`); every other run is audited. Nothing is dropped without being counted.

Each case goes through the reader API (`read_archive`) and, where the whole command is
the natural place, through `ruledsl audit` in this process. A small hypothesis fuzz over
JSON Lines lines and trainer_state.json contents asserts clean outcomes only; the long
search is marked `slow`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import ANY_LOSS, ruledsl
from log_writers import write_tensorboard
from ruledsl.readers import Archive, ReadProblem, discovery, jsonlog, read_archive, tables

GOOD_ROWS = 20


def good_run(folder: Path) -> Path:
    """A run that must be audited whatever else the archive holds."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "good.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in range(1, GOOD_ROWS + 1)))
    return path


def jsonl_lines(count: int = 200) -> list[str]:
    return [json.dumps({"step": s, "loss": 0.5, "grad_norm": 1.0}) for s in range(1, count + 1)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def rows_of(archive: Archive) -> dict[str, int]:
    """run id → the rows its source holds."""
    return {s.run: s.frame.collect().height for s in archive.sources}


def problems_of(archive: Archive, path: Path) -> list[ReadProblem]:
    return [p for p in archive.problems if p.path == path]


def audited(*paths: Path) -> tuple[dict[str, int], str]:
    """`ruledsl audit` with a rule that fires at every row with a loss: run → rows audited,
    and stderr. Whatever the exit status says of skipped inputs (the CLI's to decide), it
    never crashes and always reports the runs it could read."""
    result = ruledsl("audit", *map(str, paths), "--no-builtin", "--alert", ANY_LOSS, "--format", "json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), result.stderr
    return {r["run"]: r["n_evals"] for r in json.loads(result.stdout)}, result.stderr


# ---------------------------------------------------------------- JSON Lines: steps


@pytest.mark.parametrize("step", ["99999999999999999999999", str(2**63), "1e30", "-1e30", str(-2**63 - 1)])
def test_a_step_beyond_64_bits_costs_its_line_alone(tmp_path: Path, step: str):
    good_run(tmp_path)
    lines = jsonl_lines()
    lines[100] = f'{{"step": {step}, "loss": 0.5}}'
    bad = write_lines(tmp_path / "bad.jsonl", lines)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"bad": 199, "good": GOOD_ROWS}
    (problem,) = problems_of(archive, bad)
    assert (problem.line, problem.skipped, problem.lost) == (101, 1, "rows")
    assert "names no training step" in problem.message
    runs, stderr = audited(tmp_path)
    assert runs == {"bad": 199, "good": GOOD_ROWS}
    assert f"{bad}:101: its 'step' names no training step" in stderr


def test_the_widest_steps_are_read(tmp_path: Path):
    path = write_lines(tmp_path / "wide.jsonl", [f'{{"step": {s}, "loss": 1}}' for s in (-2**63, 2**63 - 1)])
    archive = read_archive([path])
    assert archive.problems == []
    assert archive.sources[0].frame.collect()["step"].to_list() == [-2**63, 2**63 - 1]


def test_nonfinite_steps_in_a_block_the_careful_reader_reads(tmp_path: Path):
    good_run(tmp_path)
    lines = jsonl_lines()
    lines[50] = '{"step": 51, "loss": 0.'  # damaged: the whole block goes line by line
    lines[100:103] = ['{"step": NaN, "loss": 1}', '{"step": Infinity, "loss": 1}', '{"step": -Infinity, "loss": 1}']
    bad = write_lines(tmp_path / "bad.jsonl", lines)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"bad": 196, "good": GOOD_ROWS}
    found = {(p.line, p.skipped, p.lost) for p in problems_of(archive, bad)}
    assert found == {(51, 1, "rows"), (101, 3, "rows")}
    runs, stderr = audited(tmp_path)
    assert runs["good"] == GOOD_ROWS and f"{bad}:101:" in stderr and "(lines 101, 102, 103)" in stderr


def test_a_step_written_as_text_is_read_as_its_number(tmp_path: Path):
    # Today's bug: one such line made polars type the whole 32 MB block's step column as
    # text, and the block was dropped with "no rows with a 'step'".
    lines = jsonl_lines()
    lines[100] = '{"step": "1010", "loss": 0.25}'
    lines[150] = '{"step": "soon", "loss": 0.25}'
    bad = write_lines(tmp_path / "text.jsonl", lines)
    archive = read_archive([bad])
    frame = archive.sources[0].frame.collect()
    assert frame.height == 199 and frame.filter(pl.col("step") == 1010)["loss"].to_list() == [0.25]
    (problem,) = archive.problems
    assert (problem.path, problem.line, problem.skipped) == (bad, 151, 1)


def test_lines_without_a_step_are_counted(tmp_path: Path):
    lines = jsonl_lines()
    lines[10] = '{"loss": 0.5}'
    lines[20] = '{"step": null, "loss": 0.5}'
    lines[30] = "[1, 2]"
    path = write_lines(tmp_path / "m.jsonl", lines)
    archive = read_archive([path])
    assert rows_of(archive) == {"m": 197}
    assert {(p.line, p.skipped, p.message) for p in archive.problems} == {
        (11, 2, "no 'step'; 2 lines skipped (lines 11, 21)"), (31, 1, "not a JSON object; skipped")}


def test_a_damaged_file_is_said_once_a_reason_not_once_a_line(tmp_path: Path):
    path = write_lines(tmp_path / "noise.jsonl", [f"not json {i}" for i in range(5000)] + jsonl_lines(3))
    archive = read_archive([path])
    (corrupt, nothing_else) = archive.problems[0], archive.problems[1:]
    assert (corrupt.line, corrupt.skipped) == (1, 5000) and not nothing_else
    assert corrupt.message == "truncated or corrupt line; 5000 lines skipped (lines 1, 2, 3, 4, 5, …)"
    assert rows_of(archive) == {"noise": 3}


def test_a_space_before_a_colon_does_not_hide_a_key(tmp_path: Path):
    # Line 1001 is past the lines polars infers the schema from; `"loss" :` made the check
    # that the sampled schema kept every key miss one pair, which cancelled the pair the
    # sampled read had dropped (grad_norm), and grad_norm was lost without a word.
    lines = [json.dumps({"step": s, "loss": 0.69}) for s in range(1, 1201)]
    lines[1000] = '{"step":1001,"loss" : 0.69,"grad_norm": NaN}'
    path = write_lines(tmp_path / "spaced.jsonl", lines)
    archive = read_archive([path])
    (source,) = archive.sources
    assert archive.problems == [] and "grad_norm" in source.keys
    value = source.frame.filter(pl.col("step") == 1001).collect()["grad_norm"].item()
    assert math.isnan(value)


@pytest.mark.parametrize("spacing", [' : ', '\t:', ' :\t', ': '])
def test_the_pairs_are_counted_whatever_the_blanks(tmp_path: Path, spacing: str):
    lines = [json.dumps({"step": s, "loss": 0.5}) for s in range(1, 1101)]
    lines[1050] = '{"step"%s1051, "loss"%s0.5, "kl"%snull, "late"%s2}' % ((spacing,) * 4)
    archive = read_archive([write_lines(tmp_path / "s.jsonl", lines)])
    frame = archive.sources[0].frame.collect()
    assert frame.filter(pl.col("step") == 1051)["late"].to_list() == [2.0]


# ---------------------------------------------------------------- JSON Lines: values and nesting


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_of_400_digits_is_infinite(tmp_path: Path, sign: str):
    # It is read as ±inf, as the same number written with an exponent (1e400) is: a value
    # past any float, which the `nonfinite` rules see.
    lines = jsonl_lines()
    lines[100] = f'{{"step": 101, "loss": {sign}{"9" * 400}}}'
    path = write_lines(tmp_path / "big.jsonl", lines)
    archive = read_archive([path])
    assert archive.problems == []
    frame = archive.sources[0].frame.collect()
    assert frame.height == 200
    assert frame.filter(pl.col("step") == 101)["loss"].item() == float(f"{sign}inf")


def test_an_integer_past_pythons_digit_limit_costs_its_line(tmp_path: Path):
    lines = jsonl_lines()
    lines[100] = '{"step": 101, "loss": %s}' % ("9" * 5000)  # more digits than Python converts
    path = write_lines(tmp_path / "huge.jsonl", lines)
    archive = read_archive([path])
    assert rows_of(archive) == {"huge": 199}
    assert [(p.line, p.message) for p in archive.problems] == [(101, "truncated or corrupt line; skipped")]


DEEP = 100_000


@pytest.mark.parametrize("line", [
    '{"step": 101, "x": ' + "[" * DEEP + "]" * DEEP + "}",
    '{"step": 101, "x": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    "[" * DEEP + "]" * DEEP,
], ids=["list", "object", "top-level"])
def test_a_line_nested_100k_deep_costs_that_line(tmp_path: Path, line: str):
    good_run(tmp_path)
    lines = jsonl_lines()
    lines[100] = line
    bad = write_lines(tmp_path / "deep.jsonl", lines)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"deep": 199, "good": GOOD_ROWS}
    assert [(p.line, p.message) for p in problems_of(archive, bad)] == [(101, "nested too deeply to read; skipped")]
    runs, stderr = audited(tmp_path)
    assert runs == {"deep": 199, "good": GOOD_ROWS} and f"{bad}:101: nested too deeply" in stderr


def test_moderate_nesting_is_no_damage(tmp_path: Path):
    lines = jsonl_lines()
    lines[100] = '{"step": 101, "loss": 0.5, "x": ' + "[" * 500 + "]" * 500 + "}"
    archive = read_archive([write_lines(tmp_path / "n.jsonl", lines)])
    assert archive.problems == [] and rows_of(archive) == {"n": 200}


def test_a_line_longer_than_the_limit_is_skipped_without_being_kept(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(jsonlog, "BLOCK_BYTES", 256)
    monkeypatch.setattr(jsonlog, "MAX_LINE_BYTES", 1024)
    lines = jsonl_lines(20)
    lines[10] = '{"step": 11, "blob": "' + "x" * 5000 + '"}'
    archive = read_archive([write_lines(tmp_path / "long.jsonl", lines)])
    assert rows_of(archive) == {"long": 19}
    assert [(p.line, p.skipped) for p in archive.problems] == [(11, 1)]
    assert "a line of more than 1,024 bytes" in archive.problems[0].message


# ---------------------------------------------------------------- trainer_state.json


def write_state_text(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trainer_state.json"
    path.write_text(text)
    return path


def state_text(history: list, global_step=10) -> str:
    return json.dumps({"global_step": global_step, "log_history": history})  # NaN/Infinity as Python writes them


@pytest.mark.parametrize("step", [math.nan, math.inf, -math.inf, 2**70, "x"])
def test_a_state_entry_whose_step_is_no_training_step(tmp_path: Path, step):
    good_run(tmp_path)
    history = [{"step": s, "loss": 0.5} for s in range(1, 11)]
    history[4]["step"] = step
    state = write_state_text(tmp_path / "out", state_text(history, global_step=step))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS, "out": 9}
    (problem,) = problems_of(archive, state)
    assert (problem.skipped, problem.lost) == (1, "rows") and "(log_history entry 5)" in problem.message
    runs, stderr = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, "out": 9} and f"{state}: its 'step' names no training step" in stderr


def test_a_state_value_of_10_to_the_400_is_infinite(tmp_path: Path):
    history = [{"step": s, "loss": 0.5} for s in range(1, 11)]
    text = state_text(history).replace('"loss": 0.5}]', '"loss": 1' + "0" * 400 + "}]")
    state = write_state_text(tmp_path / "out", text)
    archive = read_archive([state])
    assert archive.problems == []
    assert archive.sources[0].frame.collect()["loss"].to_list()[-1] == math.inf


def test_a_state_nested_too_deeply_leaves_the_runs_other_logs(tmp_path: Path):
    good_run(tmp_path)
    deep = '{"global_step": 10, "log_history": [{"step": 1, "x": ' + "[" * DEEP + "]" * DEEP + "}]}"
    state = write_state_text(tmp_path / "out", deep)
    write_state_text(tmp_path / "out" / "checkpoint-5", state_text([{"step": s, "loss": 0.5} for s in range(1, 6)]))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS, "out": 5}
    assert [(p.message, p.lost) for p in problems_of(archive, state)] == [("nested too deeply to read; skipped", "run")]
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, "out": 5}


def test_a_state_with_more_digits_than_python_reads(tmp_path: Path):
    state = write_state_text(tmp_path / "out", '{"global_step": 1, "log_history": [{"step": %s}]}' % ("1" * 5000))
    archive = read_archive([state])
    assert archive.sources == [] and [p.path for p in archive.problems] == [state]


# ---------------------------------------------------------------- MLflow


def write_mlflow_run(store: Path, lines: list[str]) -> Path:
    """A file store's run as mlflow leaves it: meta.yaml, metrics/<key> of `<ms> <value> <step>` lines."""
    run = store / "0" / "0123abcd"
    (run / "metrics").mkdir(parents=True)
    (run / "meta.yaml").write_text("lifecycle_stage: active\nrun_id: 0123abcd\n")
    (run / "metrics" / "loss").write_text("\n".join(lines) + "\n")
    return run / "metrics" / "loss"


def test_an_mlflow_step_beyond_64_bits_costs_its_line(tmp_path: Path):
    good_run(tmp_path)
    lines = [f"1764150000000 0.5 {s}" for s in range(1, 11)]
    lines[3], lines[6] = f"1764150000000 0.5 {2**63}", f"1764150000000 0.5 {2**64 + 5}"
    metric = write_mlflow_run(tmp_path / "mlruns", lines)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS, "mlruns/0/0123abcd": 8}
    (problem,) = problems_of(archive, metric)
    assert (problem.line, problem.skipped, problem.lost) == (4, 2, "rows")
    runs, stderr = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, "mlruns/0/0123abcd": 8} and f"{metric}:4:" in stderr


# ---------------------------------------------------------------- files and folders


@pytest.fixture
def denied(monkeypatch):
    """Paths whose reading fails with PermissionError. The tests run as root, where chmod 000
    denies nothing, so the denial is simulated in this process: `Path.open` (which
    `read_text` and `read_bytes` use too) raises for a denied file, `os.scandir` for a
    denied folder, as the system would."""
    paths: set[Path] = set()
    open_, scandir = Path.open, os.scandir

    def guarded_open(self, *args, **kwargs):
        if self in paths:
            raise PermissionError(13, "Permission denied", str(self))
        return open_(self, *args, **kwargs)

    def guarded_scandir(path="."):
        if not isinstance(path, int) and Path(path) in paths:  # shutil.rmtree scans by descriptor
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(Path, "open", guarded_open)
    monkeypatch.setattr(os, "scandir", guarded_scandir)
    return paths


def test_an_unreadable_jsonl_file(tmp_path: Path, denied):
    good_run(tmp_path)
    locked = write_lines(tmp_path / "locked.jsonl", jsonl_lines())
    denied.add(locked)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}
    assert [(p.message, p.lost) for p in problems_of(archive, locked)] == [
        ("cannot read (Permission denied); skipped", "run")]
    runs, stderr = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS} and f"{locked}: cannot read (Permission denied)" in stderr


def test_an_unreadable_trainer_state(tmp_path: Path, denied):
    good_run(tmp_path)
    state = write_state_text(tmp_path / "out", state_text([{"step": 1, "loss": 0.5}]))
    denied.add(state)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}
    assert [p.lost for p in problems_of(archive, state)] == ["run"]


def test_an_unreadable_folder(tmp_path: Path, denied):
    good_run(tmp_path)
    locked = tmp_path / "locked"
    write_lines(locked / "inside.jsonl", jsonl_lines())
    denied.add(locked)
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}
    (problem,) = problems_of(archive, locked)
    assert "cannot read the folder (Permission denied)" in problem.message and problem.lost == "run"
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS}


def test_a_folder_named_like_a_log(tmp_path: Path):
    good_run(tmp_path)
    (tmp_path / "odd.jsonl").mkdir()
    write_lines(tmp_path / "odd.jsonl" / "inner.jsonl", jsonl_lines(5))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS, "odd.jsonl/inner": 5}
    assert read_archive([tmp_path / "odd.jsonl"]).sources[0].run == "inner"


def test_a_symlink_loop(tmp_path: Path):
    good_run(tmp_path)
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "up").symlink_to(tmp_path)
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")  # a loop of links: no file at all
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}  # read once
    (problem,) = problems_of(archive, tmp_path / "loop" / "up")
    assert "a loop" in problem.message and problem.lost == "nothing"
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS}


@pytest.fixture
def deep_tree(tmp_path: Path):
    """1,100 nested folders below tmp_path/out (a training output directory), with a log at
    the bottom; removed here, bottom up (shutil.rmtree, as pytest's cleanup, recurses)."""
    folders = [tmp_path / "out"]
    folders[0].mkdir()
    for _ in range(1100):
        folders.append(folders[-1] / "a")
        folders[-1].mkdir()
    yield folders
    for folder in reversed(folders):
        for entry in os.scandir(folder):
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        folder.rmdir()


def test_a_tree_1100_folders_deep(tmp_path: Path, deep_tree: list[Path]):
    good_run(tmp_path)
    write_lines(deep_tree[-1] / "bottom.jsonl", jsonl_lines(7))
    write_lines(deep_tree[-1] / "events.out.tfevents.1.host", ["not an event file"])
    archive = read_archive([tmp_path])
    bottom = "out/" + "a/" * 1100 + "bottom"
    assert rows_of(archive) == {"good": GOOD_ROWS, bottom: 7}
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, bottom: 7}


def test_a_training_dir_with_a_deep_tree(tmp_path: Path, deep_tree: list[Path]):
    write_state_text(deep_tree[0], state_text([{"step": s, "loss": 0.5} for s in range(1, 4)]))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"out": 3}


@pytest.mark.parametrize("name", ["gone.jsonl", "gone.csv", "gone.parquet", "out/trainer_state.json"])
def test_a_file_removed_between_discovery_and_reading(tmp_path: Path, monkeypatch, name: str):
    good_run(tmp_path)
    gone = tmp_path / name

    def write() -> None:
        if gone.name == "trainer_state.json":
            write_state_text(gone.parent, state_text([{"step": 1, "loss": 0.5}]))
            return
        frame = pl.DataFrame({"step": [1, 2], "loss": [0.5, 0.5]})
        frame.write_ndjson(gone) if gone.suffix == ".jsonl" else \
            frame.write_csv(gone) if gone.suffix == ".csv" else frame.write_parquet(gone)

    discover = discovery.discover

    def discover_then_remove(root, problems=None):  # deterministic: the file goes right after the walk
        specs = discover(root, problems)
        gone.unlink()
        return specs

    monkeypatch.setattr(discovery, "discover", discover_then_remove)
    write()
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}
    (problem,) = problems_of(archive, gone)
    assert problem.lost == "run" and "skipped" in problem.message
    write()
    runs, stderr = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS} and f"{gone}: " in stderr


# ---------------------------------------------------------------- Parquet


def damaged_parquet(path: Path, column: str, row_group: int) -> Path:
    """40,000 rows in 4 row groups; the bytes of `column` in `row_group` scrambled (found
    with pyarrow's reading of the footer), so that decoding that chunk fails."""
    pq = pytest.importorskip("pyarrow.parquet")
    rng = random.Random(0)
    pl.DataFrame({"step": range(1, 40_001), "loss": [rng.random() for _ in range(40_000)]}) \
        .write_parquet(path, row_group_size=10_000)
    index = pq.ParquetFile(path).schema_arrow.get_field_index(column)
    chunk = pq.ParquetFile(path).metadata.row_group(row_group).column(index)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    for i in range(start + 40, start + chunk.total_compressed_size - 10, 7):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(pl.exceptions.PolarsError):
        pl.read_parquet(path)  # the damage is real
    return path


def test_a_parquet_file_whose_steps_cannot_be_decoded(tmp_path: Path):
    good_run(tmp_path)
    broken = damaged_parquet(tmp_path / "broken.parquet", "step", row_group=1)
    archive = read_archive([tmp_path])
    (problem,) = problems_of(archive, broken)
    assert problem.lost == "rows" and 10_000 <= problem.skipped < 12_000  # row group 2, to 1,024 rows
    assert 28_000 < rows_of(archive)["broken"] <= 30_000
    runs, stderr = audited(tmp_path)
    assert runs["good"] == GOOD_ROWS and f"{broken}: " in stderr


def test_a_parquet_file_damaged_past_its_steps_is_salvaged(tmp_path: Path):
    # Only decoding finds the damage, which the audit's own reading of the file does (a
    # check up front would read every Parquet file twice): `Archive.salvage` then reads
    # what can be decoded, for the audit to be run again.
    good_run(tmp_path)
    broken = damaged_parquet(tmp_path / "broken.parquet", "loss", row_group=2)
    archive = read_archive([tmp_path])
    assert problems_of(archive, broken) == []
    with pytest.raises(pl.exceptions.PolarsError):
        pl.collect_all([s.frame for s in archive.sources])
    (problem,) = archive.salvage()
    assert problem.path == broken and problem.lost == "rows" and 10_000 <= problem.skipped < 12_000
    assert problem in archive.problems and archive.salvage() == []
    rows = rows_of(archive)
    assert rows["good"] == GOOD_ROWS and 28_000 < rows["broken"] <= 30_000


def test_a_parquet_file_damaged_past_its_steps_through_the_cli(tmp_path: Path):
    good_run(tmp_path)
    broken = damaged_parquet(tmp_path / "broken.parquet", "loss", row_group=2)
    runs, stderr = audited(tmp_path)
    assert runs["good"] == GOOD_ROWS and f"{broken}: " in stderr


def test_a_parquet_file_that_is_noise(tmp_path: Path):
    good_run(tmp_path)
    (tmp_path / "noise.parquet").write_bytes(random.Random(1).randbytes(5000))
    runs, stderr = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS} and "noise.parquet: not a readable parquet file" in stderr


@pytest.mark.parametrize("steps, read, skipped", [
    (pl.Series([1.0, 2.0, 2.7, math.nan, math.inf, 1e30, None]), [1, 2, 2], 4),
    (pl.Series([1, 2, 2**64 - 1], dtype=pl.UInt64), [1, 2], 1),
    (pl.Series([1, None, 3], dtype=pl.Int64), [1, 3], 1),
], ids=["float", "uint64", "null"])
def test_parquet_steps_of_every_type(tmp_path: Path, steps: pl.Series, read: list[int], skipped: int):
    good_run(tmp_path)
    path = tmp_path / "typed.parquet"
    pl.DataFrame({"step": steps, "loss": [0.5] * len(steps)}).write_parquet(path)
    archive = read_archive([tmp_path])
    (source,) = [s for s in archive.sources if s.run == "typed"]
    assert source.frame.collect()["step"].to_list() == read
    (problem,) = problems_of(archive, path)
    assert (problem.skipped, problem.lost) == (skipped, "rows")
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, "typed": len(set(read))}  # 2.7 is step 2: merged with it


def test_a_parquet_row_with_neither_step_nor_values_is_no_loss(tmp_path: Path):
    path = tmp_path / "blank.parquet"
    pl.DataFrame({"step": [1, None, 3], "loss": [0.5, None, 0.5]}).write_parquet(path)
    archive = read_archive([path])
    assert archive.problems == [] and rows_of(archive) == {"blank": 2}


def test_parquet_stays_lazy_and_reads_only_its_steps(tmp_path: Path):
    path = tmp_path / "lazy.parquet"
    pl.DataFrame({"step": [1, 2], "loss": [0.5, 0.5]}).write_parquet(path)
    (source,) = read_archive([path]).sources
    assert "SCAN" in source.frame.explain()


# ---------------------------------------------------------------- CSV


def csv_text(rows: int = 10_500, at: int | None = None, line: str = "") -> str:
    lines = [f"{s},{s}" for s in range(1, rows + 1)]
    if at is not None:
        lines[at - 2] = line  # `at`: the line in the file (1 = the header)
    return "step,loss\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("line, rows, message", [
    ("10201,abc", 10_500, "10202: 'loss' holds text that is no number; read as missing"),
    ("x,1", 10_499, "10202: its 'step' names no training step (a whole number of at most 64 bits); skipped"),
    (",1", 10_499, "10202: no 'step'; skipped"),
], ids=["value", "step", "no-step"])
def test_a_csv_damaged_after_the_rows_its_types_come_from(tmp_path: Path, line: str, rows: int, message: str):
    good_run(tmp_path)
    path = tmp_path / "late.csv"
    path.write_text(csv_text(at=10_202, line=line))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS, "late": rows}
    (problem,) = problems_of(archive, path)
    assert str(problem) == f"{path}:{message}" and (problem.skipped, problem.lost) == (1, "rows")
    runs, stderr = audited(tmp_path)
    assert runs["good"] == GOOD_ROWS and f"{path}:{message}" in stderr


def test_a_csv_fraction_after_integer_rows_is_read(tmp_path: Path):
    path = tmp_path / "f.csv"
    path.write_text(csv_text(at=10_202, line="10201,0.5"))
    archive = read_archive([path])
    assert archive.problems == []
    assert archive.sources[0].frame.filter(pl.col("step") == 10_201).collect()["loss"].item() == 0.5


def test_a_ragged_csv(tmp_path: Path):
    good_run(tmp_path)
    path = tmp_path / "ragged.csv"
    path.write_text("step,loss,kl\n1,0.5,0.1\n2,0.5,0.1,9\n3,0.5\n4,0.5,0.1,9,9\n5,0.5,0.1\n")
    archive = read_archive([tmp_path])
    frame = next(s for s in archive.sources if s.run == "ragged").frame.collect()
    assert frame["step"].to_list() == [1, 3, 5] and frame["kl"].to_list() == [0.1, None, 0.1]
    (problem,) = problems_of(archive, path)
    assert (problem.line, problem.skipped) == (3, 2) and "more fields than the header names" in problem.message
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS, "ragged": 3}


def test_a_csv_blank_line_and_a_column_of_nonfinite_words(tmp_path: Path):
    # A blank line made a row without a step (which the engine refuses: the whole audit
    # failed); a column of only "nan"/"inf" was typed as text and dropped without a word.
    path = tmp_path / "t.csv"
    path.write_text("step,loss,model,grad_norm\n1,0.5,tiny,nan\n\n2,0.5,tiny,inf\n")
    archive = read_archive([path])
    (source,) = archive.sources
    assert archive.problems == [] and source.keys == ("loss", "grad_norm")
    assert source.frame.collect()["grad_norm"].to_list() == [pytest.approx(math.nan, nan_ok=True), math.inf]
    runs, _ = audited(path)
    assert runs == {"t": 2}


def test_a_csv_that_is_binary_noise(tmp_path: Path):
    good_run(tmp_path)
    (tmp_path / "noise.csv").write_bytes(random.Random(2).randbytes(3000))
    runs, _ = audited(tmp_path)
    assert runs == {"good": GOOD_ROWS}


def test_a_large_csv_goes_through_a_temporary_parquet_file(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(tables, "SPILL_BYTES", 0)
    path = tmp_path / "big.csv"
    path.write_text(csv_text(rows=300))
    (source,) = read_archive([path]).sources
    assert "SCAN" in source.frame.explain() and source.frame.collect().height == 300
    path.write_text(csv_text(rows=300, at=100, line="99,abc"))
    archive = read_archive([path])
    assert rows_of(archive) == {"big": 300} and [p.line for p in archive.problems] == [100]


# ---------------------------------------------------------------- TensorBoard


def test_an_event_file_with_flipped_bytes_says_how_many_records_it_lost(tmp_path: Path):
    # tensorboard's own loader stopped at the first damaged record without a word: 3 of 200
    # steps and "No alerts". Each damaged record is now skipped and counted, and the rest read.
    good_run(tmp_path)
    rows = [(s, {"loss": 0.5, "grad_norm": 1.0}) for s in range(1, 201)]
    events = write_tensorboard(tmp_path / "tb", rows)
    data = bytearray(events.read_bytes())
    for i in random.Random(3).sample(range(len(data)), 50):
        data[i] ^= 0xFF
    events.write_bytes(bytes(data))
    archive = read_archive([tmp_path])
    (problem,) = problems_of(archive, events)
    assert problem.lost == "rows" and 1 <= problem.skipped <= 50
    assert f"{problem.skipped} records skipped, of " in problem.message
    assert rows_of(archive)["tb"] >= 150
    runs, stderr = audited(tmp_path)
    assert runs["good"] == GOOD_ROWS and runs["tb"] >= 140 and f"{events}: a damaged record" in stderr


def test_an_event_file_that_is_noise(tmp_path: Path):
    pytest.importorskip("tensorboard")
    good_run(tmp_path)
    (tmp_path / "tb").mkdir()
    noise = tmp_path / "tb" / "events.out.tfevents.1764150000.host.1.0"
    noise.write_bytes(random.Random(4).randbytes(20_000))
    archive = read_archive([tmp_path])
    assert rows_of(archive) == {"good": GOOD_ROWS}
    assert {p.lost for p in problems_of(archive, noise)} <= {"rows", "run"} and problems_of(archive, noise)


# ---------------------------------------------------------------- what the CLI is given


def test_every_problem_says_what_it_cost(tmp_path: Path):
    good_run(tmp_path)
    write_lines(tmp_path / "bad.jsonl", jsonl_lines()[:5] + ['{"step": 1e30}'])
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "up").symlink_to(tmp_path)
    archive = read_archive([tmp_path])
    assert {(p.path.name, p.lost, p.skipped) for p in archive.problems} == {("bad.jsonl", "rows", 1),
                                                                             ("up", "nothing", None)}
    assert [p.path.name for p in archive.incomplete] == ["bad.jsonl"]


# ---------------------------------------------------------------- fuzz

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "1010", " 7 ", "1e30", "NaN"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
RECORDS = st.dictionaries(st.sampled_from(["step", "loss", "run", "grad_norm", "x", ""]), JSON_VALUES, max_size=5)


@st.composite
def jsonl_line(draw) -> bytes:
    """A line as a log may hold it: a record as Python's json writes it (NaN tokens too),
    maybe cut, spliced with noise, nested deep, or bytes that are no text."""
    record = draw(RECORDS)
    if draw(st.booleans()):
        record["step"] = draw(st.integers(min_value=0, max_value=1000))
    text = json.dumps(record).encode()
    kind = draw(st.sampled_from(["plain"] * 4 + ["cut", "noise", "deep", "bytes", "spaced"]))
    if kind == "cut":
        text = text[:draw(st.integers(min_value=0, max_value=len(text)))]
    elif kind == "noise":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.binary(max_size=6)).replace(b"\n", b"") + text[at:]
    elif kind == "deep":
        depth = draw(st.sampled_from([10, 900, 5000, 20_000]))
        text = b'{"step": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "bytes":
        text = draw(st.binary(max_size=20)).replace(b"\n", b"")
    elif kind == "spaced":
        text = text.replace(b'":', b'" :')
    return text


def check_jsonl(lines: list[bytes], block: int, folder: Path) -> None:
    path = folder / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    saved = jsonlog.BLOCK_BYTES
    jsonlog.BLOCK_BYTES = block
    try:
        started = time.monotonic()
        archive = read_archive([path])
        rows = sum(s.frame.collect().height for s in archive.sources)
    finally:
        jsonlog.BLOCK_BYTES = saved
    assert time.monotonic() - started < 20
    assert all(isinstance(p, ReadProblem) and p.path == path for p in archive.problems)
    for source in archive.sources:
        schema = source.frame.collect_schema()
        assert schema["step"] == pl.Int64 and all(schema[k] == pl.Float64 for k in source.keys)
    # nothing lost without being counted: each line with content is a row or a skipped one
    content = sum(1 for line in lines for part in line.split(b"\n") if part.strip())
    assert rows + sum(p.skipped or 0 for p in archive.problems) == content


def check_state(text: bytes, folder: Path) -> None:
    path = folder / "trainer_state.json"
    path.write_bytes(text)
    started = time.monotonic()
    archive = read_archive([path])
    for source in archive.sources:
        source.frame.collect()
    assert time.monotonic() - started < 20
    assert archive.sources or archive.problems
    assert all(isinstance(p, ReadProblem) for p in archive.problems)


@st.composite
def state_texts(draw) -> bytes:
    history = draw(st.lists(st.one_of(RECORDS, JSON_VALUES), max_size=6))
    state = {"global_step": draw(JSON_SCALARS), "log_history": history}
    if draw(st.booleans()):
        state = draw(st.one_of(JSON_VALUES, st.just(state)))
    text = json.dumps(state).encode()
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.binary(max_size=5)) + text[at:]
    return text


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
LONG_FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                              HealthCheck.function_scoped_fixture])
LINES = st.lists(jsonl_line(), min_size=1, max_size=12)
BLOCKS = st.sampled_from([48, 200, 32 * 2**20])


@FUZZ
@given(lines=LINES, block=BLOCKS)
def test_fuzz_jsonl_lines(tmp_path: Path, lines: list[bytes], block: int):
    check_jsonl(lines, block, tmp_path)


@FUZZ
@given(text=state_texts())
def test_fuzz_trainer_state(tmp_path: Path, text: bytes):
    check_state(text, tmp_path)


@pytest.mark.slow
@LONG_FUZZ
@given(lines=LINES, block=BLOCKS)
def test_fuzz_jsonl_lines_long(tmp_path: Path, lines: list[bytes], block: int):
    check_jsonl(lines, block, tmp_path)


@pytest.mark.slow
@LONG_FUZZ
@given(text=state_texts())
def test_fuzz_trainer_state_long(tmp_path: Path, text: bytes):
    check_state(text, tmp_path)
