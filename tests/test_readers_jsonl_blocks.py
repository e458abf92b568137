"""The JSON Lines reader parses blocks of lines with polars: block edges, damaged lines,
non-finite tokens and spilling must not change what is read (compared with Python's json)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import polars as pl
import pytest

from ruledsl.readers import jsonlog


def python_reading(lines: list[str]) -> dict[int, dict[str, float]]:
    """step → {key: value} as Python's json reads the good lines (docs/language.md §2 strings included)."""
    rows: dict[int, dict[str, float]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        values = {k: (float(v) if not isinstance(v, str) else {"nan": math.nan, "inf": math.inf,
                                                                  "-inf": -math.inf}[v])
                  for k, v in record.items() if k != "step"}
        rows[record["step"]] = values
    return rows


def read_back(path: Path) -> tuple[dict[int, dict[str, float]], list]:
    problems: list = []
    source = jsonlog.read_jsonl(path, "r", problems)
    frame = source.frame.collect()
    assert frame["run"].unique().to_list() == ["r"]
    rows = {row["step"]: {k: v for k, v in row.items() if k not in ("run", "step") and v is not None}
            for row in frame.iter_rows(named=True)}
    return rows, problems


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all((math.isnan(a[s][k]) and math.isnan(b[s][k])) or a[s][k] == b[s][k]
                                           for k in a[s]) for s in a)


@pytest.mark.parametrize("spill", [False, True])
def test_blocks_tokens_and_damage(tmp_path: Path, monkeypatch, spill: bool):
    monkeypatch.setattr(jsonlog, "BLOCK_BYTES", 300)  # a block edge every few lines
    if spill:
        monkeypatch.setattr(jsonlog, "SPILL_BYTES", 0)
    rng = random.Random(7)
    lines = []
    for step in range(200):
        value = rng.choice([rng.uniform(-5, 5) * 10 ** rng.randint(-300, 300), math.nan, math.inf, -math.inf])
        record = {"step": step, "loss": value, "kl": rng.random()}
        if step % 9 == 0:
            record["eval_loss"] = "nan"  # the strings docs/language.md §2 accepts
        lines.append(json.dumps(record))  # Python writes NaN, Infinity, -Infinity tokens
    lines[57] = lines[57][:20]  # a truncated line, in some block
    lines[120] = "[1, 2]"  # valid JSON, not an object
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows, problems = read_back(path)
    assert same(rows, python_reading(lines))
    assert [(p.line, p.message) for p in problems] == [
        (58, "truncated or corrupt line; skipped"), (121, "not a JSON object; skipped")]


@pytest.mark.parametrize("block", [64, 16])  # 16: every line is longer than a block
def test_a_file_without_a_final_newline_and_a_word_column(tmp_path: Path, monkeypatch, block: int):
    monkeypatch.setattr(jsonlog, "BLOCK_BYTES", block)
    lines = [json.dumps({"step": s, "loss": s / 10, "model": "tiny"}) for s in range(30)]
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines))
    source = jsonlog.read_jsonl(path, "a", [])
    frame = source.frame.collect()
    assert frame["step"].to_list() == list(range(30)) and "model" not in frame.columns
    assert frame.schema["loss"] == pl.Float64
