"""Streaming audits a chunk of whole runs at a time: the records must not change."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cli_helpers import EXAMPLES
from log_writers import write_jsonl, write_table
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.model.loader import load_rules
from ruledsl.readers import read_archive


def example_rows(run: str):
    lines = (EXAMPLES / run / "metrics.jsonl").read_text().splitlines()
    return [(record.pop("step"), record) for record in map(json.loads, lines)]


def test_chunks_of_runs_give_the_same_records(tmp_path: Path):
    for run in ("dpo_stuck", "dpo_healthy", "sft_nan"):
        write_table(tmp_path / f"{run}.parquet", example_rows(run), run=run)
    many = pl.concat([pl.read_parquet(p) for p in sorted(tmp_path.glob("*.parquet"))], how="diagonal_relaxed")
    for p in tmp_path.glob("*.parquet"):
        p.unlink()
    many.write_parquet(tmp_path / "archive.parquet")  # three runs in one table
    write_jsonl(tmp_path / "loose" / "a.jsonl", example_rows("sft_nan"))
    write_jsonl(tmp_path / "loose" / "b.jsonl", example_rows("dpo_stuck"))
    rules = load_rules()
    whole = audit_archive(read_archive([tmp_path]), rules, streaming=False)
    chunked = audit_archive(read_archive([tmp_path]), rules, streaming=True, chunk_rows=500)
    assert chunked.streaming and not whole.streaming
    assert repr(chunked.records.to_dicts()) == repr(whole.records.to_dicts())  # NaN values compare as text
    assert {r["run"] for r in whole.records.to_dicts()} == {"archive/dpo_stuck", "archive/sft_nan", "loose/a",
                                                             "loose/b"}
    assert sorted(whole.runs) == ["archive/dpo_healthy", "archive/dpo_stuck", "archive/sft_nan", "loose/a", "loose/b"]
