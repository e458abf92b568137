"""Alerts reach W&B (offline run files), MLflow (a local file store) and TensorBoard (event files),
and a tracker or file that fails is switched off without stopping training."""

# first: it sets the offline environment, and skips this module without the TRL extra
from tiny_trl import make_trainer, tiny_model_dir

import contextlib
import io
import json
import logging
import struct
import time
from pathlib import Path

import pytest

from ruledsl.integrations.callback import DiagnosticsCallback
from ruledsl.integrations.diagnostics_files import DiagnosticsFiles
from ruledsl.integrations.trackers import TensorBoardTracker

# Real training runs on a tiny model. Each tracker's test needs its extra (tensorboard, mlflow,
# wandb) and is skipped without it; the fault tests need none.
pytestmark = [pytest.mark.trl, pytest.mark.slow]

# SFT, batch 2 over 8 rows: epoch = 0.25 × step, so these start at steps 1 and 3
ALERTS = ["sft: loss > 0 -> high: loss is {value:.3f}", "sft: epoch >= 0.75 -> critical: three quarters in"]


def train_sft(tmp_path, report_to, callback=None, max_steps=3):
    callback = callback or DiagnosticsCallback(custom_alerts=ALERTS, include_builtin=False)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = make_trainer("sft", tiny_model_dir(), tmp_path / "out", callbacks=[callback],
                               max_steps=max_steps, report_to=report_to)
        trainer.train()
    return trainer, callback


def started(callback):
    return [(r["rule"], r["first_step"], r["severity"]) for r in callback.started]


# ---------------------------------------------------------------- W&B


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2

    data, position, pending = path.read_bytes(), 7, b""  # 7-byte file header: ":W&B", magic, version
    while position + 7 <= len(data):
        left_in_block = 32768 - position % 32768
        if left_in_block < 7:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            position += left_in_block
            continue
        payload = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def wandb_offline(monkeypatch, folder: Path) -> None:
    """W&B in offline mode, writing under `folder`, without its code, git, console and stats capture."""
    for name, value in dict(WANDB_MODE="offline", WANDB_DIR=str(folder), WANDB_SILENT="true",
                            WANDB_DISABLE_CODE="true", WANDB_DISABLE_GIT="true", WANDB_CONSOLE="off",
                            WANDB_X_DISABLE_STATS="true", WANDB_X_DISABLE_META="true",
                            WANDB_PROJECT="ruledsl-test").items():
        monkeypatch.setenv(name, value)


@pytest.mark.subprocess  # wandb starts its service process, offline too
def test_wandb_gets_alerts_and_summary(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")

    wandb_offline(monkeypatch, tmp_path)
    _, callback = train_sft(tmp_path, ["wandb"])
    wandb.finish()
    # wandb's service process writes the offline file; on a loaded machine it may still be flushing
    # when finish() returns. Read until the summary (written last) is there, for at most 60 s.
    deadline = time.monotonic() + 60
    while True:
        [run_file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
        records = list(wandb_records(run_file))
        if any(r.HasField("summary") for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    alerts = [(r.alert.title, r.alert.text, r.alert.level) for r in records if r.HasField("alert")]
    rules = [rule for rule, _, _ in started(callback)]
    assert alerts == [(f"[HIGH] {rules[0]} at step 1", "loss is 5.937", "WARN"),
                      (f"[CRITICAL] {rules[1]} at step 3", "three quarters in", "ERROR")]
    summary = {item.key: json.loads(item.value_json)
               for r in records if r.HasField("summary") for item in r.summary.update}
    assert summary["ruledsl/alerts"] == 2
    assert summary[f"ruledsl/{rules[1]}"]["first_step"] == 3


# ---------------------------------------------------------------- MLflow


def test_mlflow_gets_tags_and_an_artifact(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store in maintenance mode
    mlflow.set_tracking_uri(store.as_uri())
    _, callback = train_sft(tmp_path, ["mlflow"])
    client = mlflow.tracking.MlflowClient(store.as_uri())
    [experiment] = [e for e in client.search_experiments()]
    [run] = client.search_runs([experiment.experiment_id])
    rules = started(callback)
    assert run.data.tags["ruledsl.alerts"] == "2"
    assert run.data.tags[f"ruledsl.alert.{rules[1][0]}"] == f"[CRITICAL] {rules[1][0]} at step 3: three quarters in"
    artifact = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="ruledsl/alerts.jsonl",
                                                        dst_path=str(tmp_path / "download")))
    lines = [json.loads(line) for line in artifact.read_text().splitlines()]
    assert [(r["rule"], r["first_step"], r["severity"]) for r in lines] == rules


# ---------------------------------------------------------------- TensorBoard


def tensorboard_texts(log_root: Path) -> dict[str, list[tuple[int, str]]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    texts: dict[str, list[tuple[int, str]]] = {}
    for path in sorted(log_root.rglob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "text":
                    text = tensor_util.make_ndarray(value.tensor).item().decode()
                    texts.setdefault(value.tag, []).append((event.step, text))
    return texts


def test_tensorboard_gets_a_text_entry_in_the_integrations_folder(tmp_path):
    pytest.importorskip("tensorboard")
    _, callback = train_sft(tmp_path, ["tensorboard"])
    texts = tensorboard_texts(tmp_path / "out" / "runs")
    rules = started(callback)
    assert texts["ruledsl/alerts/text_summary"] == [
        (1, f"**[HIGH] {rules[0][0]} at step 1**  \nloss is 5.937"),
        (3, f"**[CRITICAL] {rules[1][0]} at step 3**  \nthree quarters in")]
    # written beside the integration's own scalars, so TensorBoard shows them as one run
    folders = {p.parent for p in (tmp_path / "out" / "runs").rglob("events.out.tfevents.*")}
    assert len(folders) == 1


# ---------------------------------------------------------------- faults


def test_a_broken_tracker_is_reported_once_and_training_goes_on(tmp_path, monkeypatch, caplog, capsys):
    def broken(self, record):
        raise RuntimeError("tracker exploded")

    pytest.importorskip("tensorboard")  # the tracker that breaks
    monkeypatch.setattr(TensorBoardTracker, "alert", broken)
    with caplog.at_level(logging.WARNING, logger="ruledsl"):
        trainer, callback = train_sft(tmp_path, ["tensorboard"], max_steps=4)
    assert trainer.state.global_step == 4
    faults = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(faults) == 1  # two alerts hit the broken tracker; reported once
    assert "the tensorboard tracker failed (RuntimeError: tracker exploded)" in faults[0].getMessage()
    assert "switched off" in faults[0].getMessage()
    assert "the tensorboard tracker failed" in capsys.readouterr().err
    # the rest still works: both alerts announced and written
    events = [json.loads(line) for line in (tmp_path / "out" / "diagnostics" / "alerts.jsonl").open()]
    assert [e["first_step"] for e in events if e["event"] == "started"] == [1, 3]


def test_a_broken_file_is_switched_off_and_alerts_go_on(tmp_path, monkeypatch, caplog):
    def broken(self, step, logs):
        raise OSError("disk full")

    monkeypatch.setattr(DiagnosticsFiles, "write_metrics", broken)
    with caplog.at_level(logging.WARNING, logger="ruledsl"):
        trainer, callback = train_sft(tmp_path, "none", max_steps=4)
    assert trainer.state.global_step == 4
    assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
        "ruledsl: metrics.jsonl failed (OSError: disk full); metrics.jsonl is switched off for the rest of this "
        "run, training goes on"]
    assert [step for _, step, _ in started(callback)] == [1, 3]


class ExplodingTemplate:
    """A message template that raises when an alert is formatted: a broken rule."""

    fields = ()

    def render(self, values):
        raise RuntimeError("template exploded")


def test_a_broken_rule_is_reported_once_and_the_other_rules_go_on(tmp_path, caplog):
    import dataclasses

    from ruledsl import parse_inline_alert

    good = parse_inline_alert(ALERTS[1])
    broken = dataclasses.replace(parse_inline_alert("sft: loss > 0 -> high: never shown"), name="broken_rule",
                                 message=ExplodingTemplate())
    callback = DiagnosticsCallback(rules=[broken, good], include_builtin=False)
    with caplog.at_level(logging.WARNING, logger="ruledsl"):
        trainer, _ = train_sft(tmp_path, "none", callback=callback, max_steps=4)
    assert trainer.state.global_step == 4
    faults = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert faults == ["ruledsl: the rule broken_rule failed (at step 1: RuntimeError: template exploded); "
                      "the rule broken_rule is switched off for the rest of this run, training goes on"]
    assert started(callback) == [(good.name, 3, "critical")]
    events = [json.loads(line) for line in (tmp_path / "out" / "diagnostics" / "alerts.jsonl").open()]
    assert {"event": "rule_fault", "rule": "broken_rule", "step": 1,
            "error": "RuntimeError: template exploded"} in events
