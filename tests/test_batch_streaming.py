"""Streaming audits a chunk of whole runs at a time: the records and the coverage must not change."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cli_helpers import EXAMPLES
from log_writers import write_jsonl, write_table
from ruledsl.engines.batch.archive import audit_archive
from ruledsl.model.loader import load_rules
from ruledsl.model.rule import rule_from_inline
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


def test_chunks_of_runs_give_the_same_coverage_named_as_the_records(tmp_path: Path):
    """Coverage (docs/language.md §4) of a table of several runs and of loose runs, whole or in
    chunks; a no_key entry suggests a close key of the run's source, even one no rule reads."""
    write_table(tmp_path / "table.parquet", [(s, {"loss": 0.5, "rewards/margins": 0.1}) for s in range(1, 40)])
    table = pl.read_parquet(tmp_path / "table.parquet")
    pl.concat([table.with_columns(pl.lit(run).alias("run")) for run in ("r1", "r2")]).write_parquet(
        tmp_path / "table.parquet")
    write_jsonl(tmp_path / "loose" / "a.jsonl", [(s, {"loss": 0.5, "aux_loss": 1.0}) for s in range(1, 40)])
    rules = [rule_from_inline("all: rewards/margin < 0 -> high: misspelled"),
             rule_from_inline("all: aux_loss > 5 -> low: one run logs it")]
    whole = audit_archive(read_archive([tmp_path]), rules, streaming=False)
    chunked = audit_archive(read_archive([tmp_path]), rules, streaming=True, chunk_rows=40)
    assert chunked.coverage == whole.coverage
    margin, aux = rules[0].name, rules[1].name
    assert [(r.run, r.rule, r.reason, r.detail) for r in whole.coverage] == [
        ("loose/a", margin, "no_key", "no value of rewards/margin in the run"),
        ("table/r1", aux, "no_key", "no value of aux_loss in the run"),
        ("table/r1", margin, "no_key", "no value of rewards/margin in the run; did you mean rewards/margins?"),
        ("table/r2", aux, "no_key", "no value of aux_loss in the run"),
        ("table/r2", margin, "no_key", "no value of rewards/margin in the run; did you mean rewards/margins?"),
    ]
    assert {r.run for r in whole.coverage} <= set(whole.runs)


def test_pattern_rules_read_the_columns_they_match(tmp_path: Path):
    """Only the columns a rule may read are read: for a metric pattern, every key it matches."""
    write_jsonl(tmp_path / "a.jsonl", [(s, {"loss": 0.5, "rewards/chosen/std": 0.001}) for s in range(1, 6)])
    rules = [rule_from_inline("all: `rewards/*/std` < 0.01 -> medium: {metric} has no spread")]
    for streaming in (False, True):
        audited = audit_archive(read_archive([tmp_path]), rules, streaming=streaming)
        assert audited.records["metric"].to_list() == ["rewards/chosen/std"] and audited.coverage == []
