"""`audit_ray` and `ruledsl audit --engine ray` on a real local Ray (two CPUs): the records are the in-process
audit's, row for row, on the real TRL captures and on examples/runs, in wide and long form, by either
strategy; per-run configuration and the coverage come back as Datasets; the command reads Parquet and JSON
Lines itself and writes --output-dataset; a missing extra is a usage error with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
)
from ruledsl.distributed.partition import COVERAGE_SCHEMA, RECORD_SCHEMA, RUN_SCHEMA, rule_source
from ruledsl.model.loader import load_rules
from ruledsl.model.rule import rule_from_inline


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module, shut down after it (no Ray process outlives the tests)."""
    import ray

    from ruledsl.distributed.ray_engine import ray_session

    started = ray_session(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


def audited(ray, table, source, **options):
    """(records, coverage, runs) as Arrow tables, from one run of the audit."""
    from ruledsl.distributed import audit_ray
    from ruledsl.distributed.ray_engine import table_of

    result = audit_ray(ray.data.from_arrow(table), source, **options).materialized()
    return (table_of(result.records, RECORD_SCHEMA), table_of(result.coverage, COVERAGE_SCHEMA),
            table_of(result.runs, RUN_SCHEMA))


@pytest.mark.parametrize("root, inline", [(REAL_LOGS, FIRING), (EXAMPLES, [])], ids=["real_trl", "examples"])
def test_records_and_coverage_equal_the_in_process_audit(ray_local, tmp_path, root, inline):
    table = archive_table(root)
    source = rule_source(builtin=True, inline=inline)
    expected, expected_coverage = in_process(table, tmp_path, load_rules() + [rule_from_inline(t) for t in inline])
    records, coverage, runs = audited(ray_local, table, source)
    assert records.schema == RECORD_SCHEMA
    got = records_frame(records)
    assert got.height > 0
    assert_same_records(got, expected)
    assert coverage_rows(coverage) == expected_coverage
    assert sorted(runs.column("run").to_pylist()) == sorted(set(table.column("run").to_pylist()))


def test_long_form_and_both_strategies_give_the_wide_records(ray_local, tmp_path):
    table = archive_table(EXAMPLES)
    source = rule_source(builtin=True)
    expected, _ = in_process(table, tmp_path, load_rules())
    long = pl.from_arrow(table).unpivot(index=["run", "step"], variable_name="key").drop_nulls("value")
    for frame, strategy in ((long.to_arrow(), "map"), (long.to_arrow(), "group")):  # wide, group: below
        records, _, _ = audited(ray_local, frame, source, strategy=strategy)
        assert_same_records(records_frame(records), expected)


def test_per_run_configuration_and_coverage_come_back(ray_local):
    rule = {"name": "beta_loss", "trainers": ["all"], "metric": "loss", "condition": "> 0", "window": 1,
            "severity": "low", "message": "loss {value} in {run}", "when": "config.beta > 0.05"}
    table = pl.DataFrame({"run": ["a", "a", "b", "b", "c"], "step": [1, 2, 1, 2, 1],
                          "loss": [0.5, 0.7, 0.5, 0.6, 0.4]}).to_arrow()
    config = {"a": {"beta": 0.1}, "b": {"beta": 0.01}}  # c has none: its rule cannot be decided
    records, coverage, runs = audited(ray_local, table, rule_source([rule]), config=config)
    assert records_frame(records).select("run", "first_step", "last_step").rows() == [("a", 1, 2)]
    assert records.column("message").to_pylist() == ["loss 0.5 in a"]
    assert coverage.schema == COVERAGE_SCHEMA
    assert {(r["run"], r["reason"]) for r in coverage.to_pylist()} == {("b", "when_false"), ("c", "config_unknown")}
    by_run = {r["run"]: r for r in runs.to_pylist()}
    assert json.loads(by_run["a"]["config"]) == {"beta": 0.1} and json.loads(by_run["c"]["config"]) == {}
    assert by_run["a"]["rows"] == 2 and by_run["c"]["trainer_origin"] == "unknown"


def test_the_same_step_twice_keeps_the_later_row_after_the_shuffle(ray_local):
    # rows of one run interleaved with another's, over several input blocks: the later row of step 2
    # (loss 5.0) wins, as in process
    table = pl.DataFrame({"run": ["a", "b", "a", "b", "a"], "step": [1, 1, 2, 2, 2],
                          "loss": [0.1, 0.1, 0.2, 0.1, 5.0]}).to_arrow()
    from ruledsl.distributed import audit_ray
    from ruledsl.distributed.ray_engine import table_of

    context = ray_local.data.DataContext.get_current()
    local_shuffle = context.shuffle_strategy
    blocks = ray_local.data.from_arrow([table.slice(0, 2), table.slice(2, 2), table.slice(4)])
    try:
        for shuffle, strategy in ((local_shuffle, "map"), (local_shuffle, "group"), ("sort_shuffle_pull_based", "map")):
            context.shuffle_strategy = shuffle  # the sort shuffle: runs kept whole by a sort, not a hash
            audit = audit_ray(blocks, rule_source(["all: loss > 1 -> high: big"]), strategy=strategy)
            records = table_of(audit.records, RECORD_SCHEMA)
            assert records.select(["run", "first_step", "value"]).to_pylist() == [
                {"run": "a", "first_step": 2, "value": 5.0}], (shuffle, strategy)
    finally:
        context.shuffle_strategy = local_shuffle


def test_whole_runs_are_cut_into_chunks_of_whole_runs():
    from ruledsl.distributed.ray_engine import _whole_runs

    table = pl.DataFrame({"run": ["a"] * 3 + ["b"] * 2 + ["c"] * 4, "step": list(range(9))}).to_arrow()
    chunks = list(_whole_runs(table, 4))
    assert [c.column("run").to_pylist() for c in chunks] == [["a"] * 3 + ["b"] * 2, ["c"] * 4]
    assert [c.num_rows for c in _whole_runs(table, 100)] == [9]


def test_bad_arguments_are_said_on_the_driver(ray_local):
    from ruledsl.distributed import audit_ray

    logs = ray_local.data.from_arrow(pl.DataFrame({"run": ["a"], "loss": [1.0]}).to_arrow())
    with pytest.raises(ValueError, match="no 'step' column"):
        audit_ray(logs, rule_source(builtin=True))
    with pytest.raises(ValueError, match="strategy must be one of map, group"):
        audit_ray(logs, rule_source(builtin=True), strategy="shuffle")
    with pytest.raises(ValueError, match="did you mean"):
        audit_ray(logs, rule_source(builtin=True), trainer="DPO")


# ---------------------------------------------------------------- the command


def ruledsl(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "ruledsl", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.mark.subprocess
def test_cli_ray_reads_json_lines_as_polars_does(tmp_path):
    """A folder of per-run JSON Lines files: the runs are named by their files as in process, and
    the JSON report is the in-process one, byte for byte."""
    folder = tmp_path / "runs"
    in_process(archive_table(EXAMPLES), folder, load_rules())
    ray = ruledsl("audit", str(folder), "--engine", "ray", "--format", "json")
    polars = ruledsl("audit", str(folder), "--format", "json")
    assert ray.returncode == polars.returncode == 0, ray.stderr
    assert "Traceback" not in ray.stderr
    assert len(json.loads(ray.stdout)) > 0
    assert ray.stdout == polars.stdout
    assert "note: trainer dpo guessed from the metric keys of 2 run(s)" in ray.stderr


@pytest.mark.subprocess
def test_cli_ray_writes_the_records_as_a_parquet_dataset(tmp_path):
    logs = tmp_path / "logs.parquet"
    table = archive_table(EXAMPLES)
    pl.from_arrow(table).write_parquet(logs)
    expected, expected_coverage = in_process(table, tmp_path / "runs", load_rules())
    dataset, coverage = tmp_path / "records", tmp_path / "coverage.json"
    result = ruledsl("audit", logs.as_uri(), "--engine", "ray", "--output-dataset", str(dataset),
                     "--coverage", str(coverage), "--fail-on", "critical")
    assert result.returncode == 1, result.stderr  # sft_nan's nonfinite loss is critical
    assert result.stdout == ""
    assert f"alert records written as Parquet to {dataset}" in result.stderr
    assert_same_records(records_frame(pl.read_parquet(dataset / "*.parquet").to_arrow()), expected)
    assert json.loads(coverage.read_text()) == expected_coverage


@pytest.mark.subprocess
def test_cli_says_how_to_install_the_extra_when_ray_is_missing(tmp_path):
    hidden = "import sys; sys.modules['ray'] = None; sys.argv[0] = 'ruledsl'; from ruledsl.cli import app; app()"
    result = ruledsl("audit", str(tmp_path), "--engine", "ray", code=hidden)
    assert result.returncode == 2
    assert "pip install 'ruledsl[ray]'" in result.stderr and "Traceback" not in result.stderr


def test_the_api_says_how_to_install_the_extra_when_ray_is_missing():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from ruledsl.distributed.ray_engine import ray_session\n"
            "try:\n    ray_session()\nexcept ImportError as exc:\n    print(exc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "the Ray engine needs ray with Ray Data: pip install 'ruledsl[ray]'" in result.stdout, result.stderr


@pytest.mark.subprocess
def test_a_one_cpu_local_session_finishes(tmp_path):
    """On one CPU Ray's hash shuffle waits forever (its actors hold part of the CPU, its tasks need a
    whole one): `ray_session` picks the sort shuffle there, and the audit finishes."""
    code = ("import ray, pyarrow as pa\n"
            "from ruledsl.distributed.ray_engine import audit_ray, ray_session, table_of\n"
            "from ruledsl.distributed.partition import RECORD_SCHEMA, rule_source\n"
            "ray_session(num_cpus=1)\n"
            "rows = {'run': ['a', 'b', 'a'], 'step': [1, 1, 2], 'loss': [2.0, 0.1, 3.0]}\n"
            "logs = ray.data.from_arrow(pa.table(rows))\n"
            "try:\n"
            "    audit = audit_ray(logs, rule_source(['all: loss > 1 -> high: big']))\n"
            "    print(table_of(audit.records, RECORD_SCHEMA).select(['run', 'first_step', 'last_step']).to_pylist())\n"
            "finally:\n"
            "    ray.shutdown()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert result.stdout.strip() == "[{'run': 'a', 'first_step': 1, 'last_step': 2}]", result.stderr[-2000:]
