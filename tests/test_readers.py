"""Every log format through `ruledsl audit` (in-process), on files written by the real libraries.

The TensorBoard files need tensorboard, the MLflow stores mlflow (written in a child process):
without them those tests are skipped; the MLflow ones are marked `subprocess`."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import ANY_LOSS, EXAMPLES, audit_json, episodes, ruledsl
from log_writers import (
    Rows,
    real_rows,
    write_checkpoints,
    write_jsonl,
    write_mlflow,
    write_state,
    write_table,
    write_tensorboard,
)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """One file store written by the real mlflow client (slow: once per module), copied per test."""
    store = tmp_path_factory.mktemp("store") / "mlruns"
    runs = {"sft": example_rows("sft_nan"), "gone": example_rows("sft_nan"), "dpo": real_rows("dpo")}
    return store, dict(zip(runs, write_mlflow(store, runs)))


def copy_store(mlflow_store, target: Path, keep: set[str]) -> dict[str, str]:
    """The store's runs named in `keep` under target/mlruns; their `<experiment>/<run id>`."""
    store, paths = mlflow_store
    shutil.copytree(store, target / "mlruns")
    for name, path in paths.items():
        if name not in keep:
            shutil.rmtree(target / "mlruns" / path)
    return {name: paths[name] for name in keep}


def example_rows(run: str) -> Rows:
    lines = (EXAMPLES / run / "metrics.jsonl").read_text().splitlines()
    return [(record.pop("step"), record) for record in map(json.loads, lines)]


# examples/README.md: what the builtin rules find in sft_nan with the trainer given. Checked against the
# log: grad_norm 14.8, 63, 412 at steps 490-510 (each over 10x the mean and 3x the largest of the 20 logs
# before); at 510 the mean of the last two losses, (2.91 + 7.38) / 2 = 5.14, is over twice the ~1.3 of the
# 20 logs before; loss and grad_norm are NaN from 520 to the last step, 800.
SFT_NAN_EPISODES = {("grad_norm_spike", 490, 510), ("loss_spike", 510, 510), ("grad_norm_nonfinite", 520, 800),
                    ("loss_nonfinite", 520, 800)}


@functools.cache
def reference_episodes(run: str, trainer: str) -> frozenset[tuple]:
    """(rule, first_step, last_step) of what the builtin rules find in the example run as it is stored in
    examples/runs: what every reader must find in the same rows written in another format. Computed, so
    that a change of the rule library does not break the reader tests (test_sft_nan_example_episodes pins
    the library's answer); never empty, so that they cannot pass by finding nothing."""
    records, _ = audit_json(str(EXAMPLES / run), "--trainer", trainer)
    found = frozenset((r["rule"], r["first_step"], r["last_step"]) for r in records)
    assert found, f"the builtin rules find nothing in {run}: the reader tests on it would prove nothing"
    return found


def sft_nan_episodes() -> frozenset[tuple]:
    found = reference_episodes("sft_nan", "sft")
    # both sides of the damage: an episode before the first NaN (finite values read as such) and one
    # that runs to the last row (NaN read as NaN, not dropped)
    assert any(first < 520 for _, first, _ in found) and any(last == 800 for *_, last in found), found
    return found


def test_sft_nan_example_episodes():
    assert reference_episodes("sft_nan", "sft") == SFT_NAN_EPISODES


def write_sft_nan(fmt: str, root: Path, store) -> Path:
    rows = example_rows("sft_nan")
    if fmt == "jsonl":
        return write_jsonl(root / "run.jsonl", rows)
    if fmt == "trainer_state":
        return write_state(root / "out", rows).parent
    if fmt in ("csv", "parquet"):
        return write_table(root / f"run.{fmt}", rows)
    if fmt == "tensorboard":
        return write_tensorboard(root / "tb", rows).parent
    copy_store(store, root, {"sft"})
    return root / "mlruns"


@pytest.mark.parametrize("fmt", ["jsonl", "trainer_state", "csv", "parquet", "tensorboard",
                                 pytest.param("mlflow", marks=pytest.mark.subprocess)])
def test_every_format_finds_the_same_episodes(tmp_path: Path, fmt: str, request):
    store = request.getfixturevalue("mlflow_store") if fmt == "mlflow" else None  # written only when needed
    path = write_sft_nan(fmt, tmp_path, store)
    records, stderr = audit_json(str(path), "--trainer", "sft")
    assert {(r["rule"], r["first_step"], r["last_step"]) for r in records} == sft_nan_episodes()
    assert len({r["run"] for r in records}) == 1 and all(r["trainer"] == "sft" for r in records)
    assert "warning" not in stderr


def test_tensorboard_tags_map_back_to_the_trainer_keys(tmp_path: Path):
    rows = real_rows("dpo")
    write_tensorboard(tmp_path / "runs" / "Nov26_host", rows)
    records, _ = audit_json(str(tmp_path), "--no-builtin",
                            "--alert", "all: eval_rewards/margins > -1e30 -> low: eval {value}",
                            "--alert", "all: rewards/margins > -1e30 -> low: train {value}")
    by_metric = {r["metric"]: r for r in records}
    assert set(by_metric) == {"eval_rewards/margins", "rewards/margins"}  # eval/… → eval_…, train/… → …
    assert by_metric["rewards/margins"]["n_evals"] == 5 and by_metric["eval_rewards/margins"]["n_evals"] == 1
    assert {r["run"] for r in records} == {"runs/Nov26_host"}


@pytest.mark.subprocess  # the MLflow store
def test_mlflow_keys_with_slashes_and_the_run_id(tmp_path: Path, mlflow_store):
    experiment_run = copy_store(mlflow_store, tmp_path, {"dpo"})["dpo"]
    metric_file = tmp_path / "mlruns" / experiment_run / "metrics" / "rewards" / "margins"
    assert metric_file.is_file()  # mlflow keeps `/` in keys: a subdirectory
    records, _ = audit_json(str(tmp_path), "--no-builtin", "--alert", "all: rewards/margins > -1e30 -> low: m")
    assert [(r["run"], r["metric"], r["n_evals"]) for r in records] == \
        [(f"mlruns/{experiment_run}", "rewards/margins", 5)]


# ---------------------------------------------------------------- trainer_state.json and checkpoints


def test_newest_checkpoint_wins_and_is_one_run(tmp_path: Path):
    rows = real_rows("sft")  # steps 1..5, then the evaluation and the summary at step 5
    write_checkpoints(tmp_path / "out", rows[:4], every=2)  # checkpoint-2, checkpoint-4
    records, _ = audit_json(str(tmp_path), "--no-builtin", "--alert", ANY_LOSS)
    assert episodes(records) == {("out", records[0]["rule"], 1, 4, 4)}  # checkpoint-4: steps 1-4, once


def test_output_dir_state_wins_when_it_reaches_as_far(tmp_path: Path):
    rows = real_rows("sft")
    out = tmp_path / "out"
    write_checkpoints(out, rows[:5], every=5)  # checkpoint-5: training rows only
    write_state(out, rows)  # save_state() at the end: also the evaluation and the summary
    records, _ = audit_json(str(tmp_path), "--no-builtin", "--alert", "all: train_loss > -1e30 -> low: summary")
    assert [(r["run"], r["first_step"]) for r in records] == [("out", 5)]


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path):
    rows = real_rows("sft")
    newest = write_checkpoints(tmp_path / "out", rows[:4], every=2)[-1]
    newest.write_text(newest.read_text()[:200])  # cut while being written
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--alert", ANY_LOSS)
    assert "checkpoint-4/trainer_state.json" in stderr and "not valid JSON" in stderr
    assert [(r["run"], r["last_step"], r["n_evals"]) for r in records] == [("out", 2, 2)]


def test_several_logs_of_one_output_dir_are_audited_once(tmp_path: Path):
    rows = real_rows("dpo")
    out = tmp_path / "out"
    write_checkpoints(out, rows[:3], every=3)  # stops at step 3
    write_tensorboard(out / "runs" / "Nov26_host", rows[:2])  # stops at step 2
    write_jsonl(out / "diagnostics" / "metrics.jsonl", rows)  # the callback: to the end
    records, stderr = audit_json(str(tmp_path), "--no-builtin", "--alert", ANY_LOSS)
    assert episodes(records) == {("out", records[0]["rule"], 1, 5, 5)}
    assert "note: out: audited diagnostics/metrics.jsonl (to step 5)" in stderr
    assert "checkpoint-3/trainer_state.json (to step 3)" in stderr


# ---------------------------------------------------------------- JSON Lines and the callback's files


def test_callback_diagnostics_folder(tmp_path: Path):
    diagnostics = tmp_path / "out" / "diagnostics"
    write_jsonl(diagnostics / "metrics.jsonl", example_rows("dpo_stuck"))
    (diagnostics / "run.json").write_text(json.dumps({"trainer": "DPOConfig", "ruledsl": "0.1.0"}))
    (diagnostics / "alerts.jsonl").write_text('{"rule": "dpo_loss_stuck_ln2", "first_step": 540}\n')
    records, stderr = audit_json(str(tmp_path))
    assert {r["run"] for r in records} == {"out"} and {r["trainer"] for r in records} == {"dpo"}
    # the same as with --trainer dpo (not what every rule finds with the trainer unknown)
    assert {(r["rule"], r["first_step"], r["last_step"]) for r in records} == reference_episodes("dpo_stuck", "dpo")
    assert "alerts.jsonl" not in stderr and "guessed" not in stderr  # not a log; trainer from run.json


def test_truncated_jsonl_line_in_a_tree(tmp_path: Path):
    lines = (EXAMPLES / "dpo_stuck" / "metrics.jsonl").read_text().splitlines()
    lines[9] = lines[9][:40]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    write_jsonl(tmp_path / "b.jsonl", example_rows("sft_nan"))
    records, stderr = audit_json(str(tmp_path))
    assert f"{tmp_path / 'a' / 'metrics.jsonl'}:10: truncated or corrupt line; skipped" in stderr
    assert {r["run"] for r in records} == {"a", "b"}


# ---------------------------------------------------------------- CSV and Parquet


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_with_a_run_column_holds_several_runs(tmp_path: Path, suffix: str):
    import polars as pl

    stuck = write_table(tmp_path / f"s.{suffix}", example_rows("dpo_stuck"), run="stuck")
    healthy = write_table(tmp_path / f"h.{suffix}", example_rows("dpo_healthy"), run="healthy")
    reader = pl.read_parquet if suffix == "parquet" else pl.read_csv
    both = pl.concat([reader(stuck), reader(healthy)], how="diagonal_relaxed")
    stuck.unlink(), healthy.unlink()
    archive = tmp_path / f"archive.{suffix}"
    both.write_parquet(archive) if suffix == "parquet" else both.write_csv(archive)
    records, stderr = audit_json(str(archive), "--trainer", "dpo")
    assert {r["run"] for r in records} == {"archive/stuck"}
    assert {(r["rule"], r["first_step"], r["last_step"]) for r in records} == reference_episodes("dpo_stuck", "dpo")


def test_tables_name_their_runs_in_messages_and_keep_them_apart(tmp_path: Path):
    # Two tables hold runs of the same names; the records (and {run} in messages) carry
    # `<table>/<run>`, and a column no rule reads changes nothing.
    import polars as pl

    rows = {"step": list(range(1, 7)) * 2, "run": ["a"] * 6 + ["b"] * 6, "loss": [0.5] * 6 + [2.0] * 6}
    pl.DataFrame(rows).write_parquet(tmp_path / "one.parquet")
    pl.DataFrame({**rows, "unread": [1e300] * 12}).write_parquet(tmp_path / "two.parquet")
    records, _ = audit_json(str(tmp_path), "--no-builtin", "--alert", "all: loss > 1 -> high: {run} at {step}")
    assert [(r["run"], r["message"]) for r in records] == [("one/b", "one/b at 1"), ("two/b", "two/b at 1")]
    assert [r["n_evals"] for r in records] == [6, 6]


def test_table_rows_without_a_run_name_are_the_tables_own_run(tmp_path: Path):
    import polars as pl

    pl.DataFrame({"run": [None, None, "a", "a"], "step": [1, 2, 1, 2], "loss": [5.0] * 4}) \
        .write_parquet(tmp_path / "t.parquet")
    for streaming in ("--no-streaming", "--streaming"):
        records, _ = audit_json(str(tmp_path), "--no-builtin", streaming, "--alert", "all: loss > 1 -> high: {run}")
        assert [(r["run"], r["message"], r["n_evals"]) for r in records] == [("t", "t", 2), ("t/a", "t/a", 2)]


def test_tables_are_scanned_lazily(tmp_path: Path):
    import polars as pl

    from ruledsl.readers import read_archive

    path = write_table(tmp_path / "run.parquet", example_rows("sft_nan"))
    (source,) = read_archive([path]).sources
    assert isinstance(source.frame, pl.LazyFrame)
    assert "Parquet SCAN" in source.frame.explain() or "SCAN" in source.frame.explain()


def test_broken_parquet_is_reported_and_the_rest_audited(tmp_path: Path):
    broken = write_table(tmp_path / "broken.parquet", example_rows("sft_nan"))
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    write_jsonl(tmp_path / "ok.jsonl", example_rows("sft_nan"))
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert f"warning: {broken}: not a readable parquet file" in stderr
    assert {r["run"] for r in records} == {"ok"}


# ---------------------------------------------------------------- TensorBoard and MLflow damage


def test_empty_event_file_is_reported(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    empty = tmp_path / "empty" / "events.out.tfevents.1764150000.host.1.0"
    empty.write_bytes(b"")
    write_tensorboard(tmp_path / "good", example_rows("sft_nan"))
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert f"warning: {empty}: no events (empty or not an event file); skipped" in stderr
    assert {r["run"] for r in records} == {"good"}


def test_truncated_event_file_keeps_the_events_before_the_damage(tmp_path: Path):
    event_file = write_tensorboard(tmp_path / "tb", example_rows("sft_nan"))
    data = event_file.read_bytes()
    event_file.write_bytes(data[: len(data) - 7])  # the last record is cut
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert {(r["rule"], r["first_step"]) for r in records} == {(rule, first) for rule, first, _ in sft_nan_episodes()}
    assert "Traceback" not in stderr


@pytest.mark.subprocess  # the MLflow store
def test_mlflow_metric_file_with_a_bad_line(tmp_path: Path, mlflow_store):
    run_path = copy_store(mlflow_store, tmp_path, {"sft"})["sft"]
    loss = tmp_path / "mlruns" / run_path / "metrics" / "loss"
    lines = loss.read_text().splitlines()
    lines.insert(3, "1764150000000 not-a-number 35")
    loss.write_text("\n".join(lines) + "\n")
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert f"{loss}:4: not '<timestamp> <value> <step>' (metric 'loss'); line skipped" in stderr
    assert {(r["rule"], r["first_step"], r["last_step"]) for r in records} == sft_nan_episodes()


@pytest.mark.subprocess  # the MLflow store
def test_deleted_mlflow_run_is_left_out(tmp_path: Path, mlflow_store):
    paths = copy_store(mlflow_store, tmp_path, {"sft", "gone"})
    kept, deleted = paths["sft"], paths["gone"]
    meta = tmp_path / "mlruns" / deleted / "meta.yaml"
    meta.write_text(meta.read_text().replace("lifecycle_stage: active", "lifecycle_stage: deleted"))
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert {r["run"] for r in records} == {f"mlruns/{kept}"} and "deleted MLflow run" in stderr


# ---------------------------------------------------------------- a tree of everything


@pytest.mark.subprocess  # the MLflow store
def test_mixed_tree_each_run_once(tmp_path: Path, mlflow_store):
    rows = example_rows("sft_nan")
    out = tmp_path / "exp" / "sft_out"
    write_checkpoints(out, rows, every=400)
    write_tensorboard(out / "runs" / "Nov26_host", rows)
    write_jsonl(tmp_path / "exp" / "loose.jsonl", rows)
    write_table(tmp_path / "tables" / "t.csv", rows)
    write_table(tmp_path / "tables" / "many.parquet", rows, run="r1")
    write_tensorboard(tmp_path / "tb_only" / "version_0", rows)
    mlflow_run = copy_store(mlflow_store, tmp_path, {"sft"})["sft"]
    records, _ = audit_json(str(tmp_path), "--trainer", "sft")
    expected_runs = {"exp/sft_out", "exp/loose", "tables/t", "tables/many/r1", "tb_only/version_0",
                     f"mlruns/{mlflow_run}"}
    assert {r["run"] for r in records} == expected_runs
    for run in expected_runs:  # each once: the same three episodes, not six
        assert {(r["rule"], r["first_step"], r["last_step"]) for r in records if r["run"] == run} == sft_nan_episodes()
    assert records == sorted(records, key=lambda r: (r["run"], r["first_step"], r["rule"]))


def test_table_output_counts_runs_inside_tables(tmp_path: Path):
    rows = example_rows("sft_nan")
    write_table(tmp_path / "many.parquet", rows, run="r1")
    write_jsonl(tmp_path / "one.jsonl", rows)
    result = ruledsl("audit", str(tmp_path), "--trainer", "sft")
    assert result.returncode == 0 and "Audited 2 run(s)" in result.stdout


def test_other_logs_inside_an_output_dir_are_not_dropped(tmp_path: Path):
    rows = example_rows("sft_nan")
    out = tmp_path / "out"
    write_checkpoints(out, rows, every=800)
    write_jsonl(out / "metrics.jsonl", rows)  # a log beside the state: the same run, audited once
    write_table(out / "exports" / "eval.csv", rows)  # something else kept there: a run of its own
    records, stderr = audit_json(str(tmp_path), "--trainer", "sft")
    assert {r["run"] for r in records} == {"out", "out/exports/eval"}
    assert "note: out: audited metrics.jsonl (to step 800)" in stderr
    assert len([r for r in records if r["run"] == "out"]) == len(sft_nan_episodes())
