"""`audit_spark` and `ruledsl audit --engine spark` on a real local Spark session (two cores): the records
are the in-process audit's, row for row, on the real TRL captures and on examples/runs, in wide and
long form, by either strategy; per-run configuration and the coverage come back as DataFrames; the
command reads Parquet and JSON Lines itself and writes --output-dataset; a missing extra or Java is
a usage error with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from distributed_helpers import (
    EXAMPLES,
    FIRING,
    REAL_LOGS,
    ROOT,
    archive_table,
    assert_same_records,
    coverage_rows,
    in_process,
    records_frame,
    spark_session,
)
from ruledsl.distributed.partition import RECORD_SCHEMA, rule_source
from ruledsl.model.loader import load_rules


@pytest.fixture(scope="module")
def spark():
    session = spark_session()
    yield session
    session.stop()


def audited(spark, table, source, **options):
    from ruledsl.distributed import audit_spark

    result = audit_spark(spark.createDataFrame(table), source, **options)
    combined = result.combined.cache()
    try:
        return (result.records.toArrow(), result.coverage.toArrow(), result.runs.toArrow())
    finally:
        combined.unpersist()


@pytest.mark.parametrize("root, inline", [(REAL_LOGS, FIRING), (EXAMPLES, [])], ids=["real_trl", "examples"])
def test_records_and_coverage_equal_the_in_process_audit(spark, tmp_path, root, inline):
    table = archive_table(root)
    source = rule_source(builtin=True, inline=inline)
    expected, expected_coverage = in_process(table, tmp_path, load_rules() + [_inline(t) for t in inline])
    records, coverage, runs = audited(spark, table, source)
    assert records.schema == RECORD_SCHEMA
    got = records_frame(records)
    assert got.height > 0
    assert_same_records(got, expected)
    assert coverage_rows(coverage) == expected_coverage
    assert sorted(runs.column("run").to_pylist()) == sorted(set(table.column("run").to_pylist()))


def test_long_form_and_both_strategies_give_the_wide_records(spark, tmp_path):
    table = archive_table(EXAMPLES)
    source = rule_source(builtin=True)
    expected, _ = in_process(table, tmp_path, load_rules())
    long = pl.from_arrow(table).unpivot(index=["run", "step"], variable_name="key").drop_nulls("value")
    for frame, strategy in ((long.to_arrow(), "map"), (long.to_arrow(), "group"), (table, "group")):
        records, _, _ = audited(spark, frame, source, strategy=strategy)
        assert_same_records(records_frame(records), expected)


def test_per_run_configuration_and_coverage_come_back(spark):
    rule = {"name": "beta_loss", "trainers": ["all"], "metric": "loss", "condition": "> 0", "window": 1,
            "severity": "low", "message": "loss {value} in {run}", "when": "config.beta > 0.05"}
    table = pl.DataFrame({"run": ["a", "a", "b", "b", "c"], "step": [1, 2, 1, 2, 1],
                          "loss": [0.5, 0.7, 0.5, 0.6, 0.4]}).to_arrow()
    config = {"a": {"beta": 0.1}, "b": {"beta": 0.01}}  # c has none: its rule cannot be decided
    records, coverage, runs = audited(spark, table, rule_source([rule]), config=config)
    assert records_frame(records).select("run", "first_step", "last_step").rows() == [("a", 1, 2)]
    assert records.column("message").to_pylist() == ["loss 0.5 in a"]
    reasons = {(r["run"], r["reason"]) for r in coverage.to_pylist()}
    assert reasons == {("b", "when_false"), ("c", "config_unknown")}
    by_run = {r["run"]: r for r in runs.to_pylist()}
    assert json.loads(by_run["a"]["config"]) == {"beta": 0.1} and json.loads(by_run["c"]["config"]) == {}
    assert by_run["a"]["rows"] == 2 and by_run["c"]["trainer_origin"] == "unknown"


def test_the_same_step_twice_keeps_the_later_row_after_the_shuffle(spark):
    # rows of one run interleaved with another's: the later row of step 2 (loss 5.0) wins, as in process
    table = pl.DataFrame({"run": ["a", "b", "a", "b", "a"], "step": [1, 1, 2, 2, 2],
                          "loss": [0.1, 0.1, 0.2, 0.1, 5.0]}).to_arrow()
    records, _, _ = audited(spark, table, rule_source(["all: loss > 1 -> high: big"]), strategy="group")
    assert records.select(["run", "first_step", "value"]).to_pylist() == [{"run": "a", "first_step": 2,
                                                                            "value": 5.0}]


# ---------------------------------------------------------------- the command


def ruledsl(*args: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "ruledsl", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def test_cli_spark_reads_json_lines_as_polars_does(tmp_path):
    """A folder of per-run JSON Lines files: the runs are named by their files as in process, and
    the JSON report is the in-process one, byte for byte."""
    folder = tmp_path / "runs"
    in_process(archive_table(EXAMPLES), folder, load_rules())
    spark = ruledsl("audit", str(folder), "--engine", "spark", "--format", "json")
    polars = ruledsl("audit", str(folder), "--format", "json")
    assert spark.returncode == polars.returncode == 0, spark.stderr
    assert "Traceback" not in spark.stderr
    assert len(json.loads(spark.stdout)) > 0
    assert spark.stdout == polars.stdout
    assert "note: trainer dpo guessed from the metric keys of 2 run(s)" in spark.stderr


def test_cli_spark_writes_the_records_as_a_parquet_dataset(tmp_path):
    logs = tmp_path / "logs.parquet"
    table = archive_table(EXAMPLES)
    pl.from_arrow(table).write_parquet(logs)
    expected, expected_coverage = in_process(table, tmp_path / "runs", load_rules())
    dataset, coverage = tmp_path / "records", tmp_path / "coverage.json"
    result = ruledsl("audit", logs.as_uri(), "--engine", "spark", "--output-dataset", dataset.as_uri(),
                     "--coverage", str(coverage), "--fail-on", "critical")
    assert result.returncode == 1, result.stderr  # sft_nan's nonfinite loss is critical
    assert result.stdout == ""
    assert_same_records(records_frame(pl.read_parquet(dataset / "*.parquet").to_arrow()), expected)
    assert json.loads(coverage.read_text()) == expected_coverage


def test_cli_says_how_to_install_the_extra_when_pyspark_is_missing(tmp_path):
    hidden = "import sys; sys.modules['pyspark'] = None; sys.argv[0] = 'ruledsl'; from ruledsl.cli import app; app()"
    result = ruledsl("audit", str(tmp_path), "--engine", "spark", code=hidden)
    assert result.returncode == 2
    assert "pip install 'ruledsl[spark]'" in result.stderr and "Traceback" not in result.stderr


def test_cli_says_spark_needs_java(tmp_path):
    no_java = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""}
    result = ruledsl("audit", str(tmp_path), "--engine", "spark", env=no_java)
    assert result.returncode == 2
    assert "Java runtime" in result.stderr and "default-jre-headless" in result.stderr


def test_cli_refuses_what_only_the_in_process_engine_does(tmp_path):
    for args, said in ((["--engine", "spark", "--format", "html"], "--format html charts the logs"),
                       (["--engine", "flink"], "--engine takes polars, spark or ray"),
                       (["--output-dataset", str(tmp_path / "x")], "--output-dataset is for --engine spark or ray")):
        result = ruledsl("audit", str(EXAMPLES), *args)
        assert result.returncode == 2 and said in result.stderr, result.stderr


def test_importing_the_package_imports_neither_engine():
    code = ("import sys, ruledsl.distributed, ruledsl.distributed.partition, ruledsl.cli.audit; "
            "print(sorted(m for m in ('pyspark', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def _inline(text: str):
    from ruledsl.model.rule import rule_from_inline

    return rule_from_inline(text)
