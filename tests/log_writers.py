"""Write one run's log rows in every format ruledsl reads, with the real libraries
(polars, tensorboard's event writer, mlflow's file store) and the Trainer's layout.

A log is a list of (step, {key: value}) rows in on_log order, e.g. a real TRL
capture from tests/data/real_trl_logs. A run's configuration goes where each format
keeps it: the `args` text summary of an event file, an MLflow run's params, a W&B
run's config (config.yaml in W&B's layout, or a real offline run's transaction log).

Without tensorboard, mlflow or wandb (the tracker extras), a test that writes their files is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

REAL_LOGS = Path(__file__).parent / "data" / "real_trl_logs"

Rows = list[tuple[int, dict[str, float]]]


def real_rows(name: str) -> Rows:
    """A real TRL capture (one on_log call a line) as rows."""
    rows = []
    for line in (REAL_LOGS / f"{name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        step = record.pop("step")
        rows.append((step, record))
    return rows


def write_jsonl(path: Path, rows: Rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": step, **values}) + "\n" for step, values in rows))
    return path


def trainer_state(rows: Rows, global_step: int | None = None) -> dict:
    """What transformers' TrainerState holds (the fields this reader and the Trainer care about)."""
    history = [{**values, "step": step} for step, values in rows]
    last = global_step if global_step is not None else max(step for step, _ in rows)
    return {"best_global_step": None, "best_metric": None, "best_model_checkpoint": None,
            "epoch": history[-1].get("epoch", 0.0), "eval_steps": 500, "global_step": last,
            "is_hyper_param_search": False, "is_local_process_zero": True, "is_world_process_zero": True,
            "log_history": history, "logging_steps": 1, "max_steps": last, "num_input_tokens_seen": 0,
            "num_train_epochs": 1, "save_steps": 500, "stateful_callbacks": {}, "total_flos": 0.0,
            "train_batch_size": 2, "trial_name": None, "trial_params": None}


def write_state(directory: Path, rows: Rows, global_step: int | None = None) -> Path:
    """trainer_state.json as TrainerState.save_to_json writes it (indent 2, sorted keys)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trainer_state.json"
    path.write_text(json.dumps(trainer_state(rows, global_step), indent=2, sort_keys=True) + "\n")
    return path


def write_checkpoints(output_dir: Path, rows: Rows, every: int) -> list[Path]:
    """checkpoint-N/trainer_state.json every `every` steps, each with the history so far."""
    last = max(step for step, _ in rows)
    written = []
    for n in range(every, last + 1, every):
        written.append(write_state(output_dir / f"checkpoint-{n}", [(s, v) for s, v in rows if s <= n], n))
    return written


def write_table(path: Path, rows: Rows, run: str | None = None) -> Path:
    """CSV or Parquet (by suffix) with polars: step, one column per key (null where absent)."""
    frame = pl.DataFrame([{"step": step, **values} for step, values in rows], infer_schema_length=None)
    if run is not None:
        frame = frame.with_columns(pl.lit(run).alias("run"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path) if path.suffix == ".parquet" else frame.write_csv(path)
    return path


def tensorboard_tag(key: str) -> str:
    """The tag transformers' TensorBoardCallback writes for a log key (its rewrite of the keys)."""
    for prefix, section in (("eval_", "eval/"), ("test_", "test/")):
        if key.startswith(prefix):
            return section + key[len(prefix):]
    return "train/" + key


TRAINER_ARGS = '{"output_dir": "out"}'  # the `args` text of an event file, unless a test gives its own


def write_tensorboard(logdir: Path, rows: Rows, args: str | None = TRAINER_ARGS) -> Path:
    """An event file as the Trainer's TensorBoard callback leaves it: the args as a text
    summary (`args.to_json_string()`; None: no such summary), then one scalar event per
    logged number at the global step."""
    pytest.importorskip("tensorboard", reason="writing an event file needs tensorboard: pip install tensorboard")
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    if args is not None:
        text = summary_pb2.Summary.Value(
            tag="args/text_summary",
            metadata=summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")),
            tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[args.encode()]))
        writer.add_event(event_pb2.Event(step=0, wall_time=1.0, summary=summary_pb2.Summary(value=[text])))
    for step, values in rows:
        for key, value in values.items():
            if isinstance(value, (int, float)):
                scalar = summary_pb2.Summary.Value(tag=tensorboard_tag(key), simple_value=float(value))
                writer.add_event(event_pb2.Event(step=step, wall_time=2.0 + step,
                                                 summary=summary_pb2.Summary(value=[scalar])))
    writer.close()
    (event_file,) = [p for p in logdir.iterdir() if "tfevents" in p.name]
    return event_file


def write_torch_tensorboard(logdir: Path, rows: Rows, args: str) -> Path:
    """An event file written as transformers' TensorBoardCallback writes it, with torch's
    SummaryWriter: `add_text("args", args.to_json_string())`, then `add_scalar` per value."""
    pytest.importorskip("tensorboard", reason="torch's SummaryWriter needs tensorboard")
    summary = pytest.importorskip("torch.utils.tensorboard")
    writer = summary.SummaryWriter(log_dir=str(logdir))
    writer.add_text("args", args)
    for step, values in rows:
        for key, value in values.items():
            writer.add_scalar(tensorboard_tag(key), value, step)
    writer.close()
    (event_file,) = [p for p in logdir.iterdir() if "tfevents" in p.name]
    return event_file


def write_wandb_config(run_dir: Path, config: dict) -> Path:
    """`files/config.yaml` of a W&B run in W&B's layout: every key as {value: …} (older
    versions add `desc: null`), W&B's own bookkeeping under `_wandb`."""
    path = run_dir / "files" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    layout = {"_wandb": {"value": {"cli_version": "0.31.0", "python_version": "3.11.9", "t": {"1": [1, 11, 49]}}},
              **{key: {"desc": None, "value": value} for key, value in config.items()}}
    path.write_text(yaml.safe_dump(layout, sort_keys=False))
    return path


WANDB_SCRIPT = """
import json, sys, wandb
config, update = json.loads(sys.stdin.read())
run = wandb.init(project="ruledsl-test", config=config)
run.config.update(update, allow_val_change=True)  # as the Trainer's WandbCallback adds args.to_dict()
run.finish()
print(run.dir)
"""


def write_wandb_offline(wandb_dir: Path, config: dict, update: dict) -> Path:
    """A real offline W&B run under `wandb_dir`/wandb, its config set at `wandb.init` and then
    updated; returns the run's folder. In a child process: W&B starts its own service."""
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("writing a W&B run needs wandb: pip install wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true",
           "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true", "WANDB_CONSOLE": "off",
           "WANDB_X_DISABLE_STATS": "true", "WANDB_X_DISABLE_META": "true"}
    wandb_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", WANDB_SCRIPT], input=json.dumps([config, update]), text=True,
                   capture_output=True, env=env, timeout=120, check=True, cwd=wandb_dir)
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    return run_dir


MLFLOW_SCRIPT = """
import json, sys, time, mlflow
from mlflow.entities import Metric
store, runs, params = sys.argv[1], *json.loads(sys.stdin.read())
mlflow.set_tracking_uri("file:" + store)
client = mlflow.MlflowClient()
for name, rows in runs.items():
    with mlflow.start_run(run_name=name) as run:
        if name in params:  # as the Trainer's MLflowCallback logs args.to_dict(): str() of each value
            mlflow.log_params(params[name])
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now + i, step) for i, (step, values) in enumerate(rows)
                   for k, v in values.items()]
        for start in range(0, len(metrics), 1000):  # the store takes at most 1000 a batch
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000], synchronous=True)
        print(run.info.experiment_id + "/" + run.info.run_id)
"""


def write_mlflow(store: Path, runs: dict[str, Rows], params: dict[str, dict] | None = None) -> list[str]:
    """Runs logged with the real mlflow client into a file store; their `<experiment>/<run id>`.
    `params`: run name → the params logged for it (JSON values; mlflow keeps each as its str()).

    In a child process: mlflow keeps global state, and 3.x refuses the file store
    unless MLFLOW_ALLOW_FILE_STORE is set. (So mlflow is looked up here, not imported.)
    """
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("writing an MLflow store needs mlflow: pip install mlflow")
    payload = json.dumps([{name: [[s, {k: _json_number(v) for k, v in values.items()}] for s, values in rows]
                           for name, rows in runs.items()}, params or {}])
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_TRACKING_URI": "",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "GIT_PYTHON_REFRESH": "quiet"}
    result = subprocess.run([sys.executable, "-c", MLFLOW_SCRIPT, str(store)], input=payload, text=True,
                            capture_output=True, env=env, timeout=120, check=True)
    return result.stdout.split()


def _json_number(value: float):
    return value if math.isfinite(value) else str(value)  # float("nan") reads it back
