"""Alerts also go to the experiment trackers the Trainer reports to.

A tracker is used when `args.report_to` names it and its integration is live:
W&B gets `wandb.alert` and run-summary entries, MLflow gets tags and an
`ruledsl/alerts.jsonl` artifact, TensorBoard gets a text entry at the step.
Each tracker imports its library only when the run reports to it, and the
callback runs each one through its fuse: a failing tracker is switched off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruledsl.alerts import json_safe

Record = Mapping[str, Any]


def _headline(record: Record) -> str:
    return f"[{str(record['severity']).upper()}] {record['rule']} at step {record['first_step']}"


class WandbTracker:
    name = "wandb"
    LEVELS = {"low": "INFO", "medium": "WARN", "high": "WARN", "critical": "ERROR"}

    def __init__(self) -> None:
        import wandb  # the integration imported it already; this is only a lookup

        self._wandb: Any = wandb  # W&B's types are not read (pyproject's mypy section)
        self._count = 0

    def _run(self):
        return self._wandb.run  # None until the integration's on_train_begin started it

    def alert(self, record: Record) -> None:
        run = self._run()
        if run is None:
            return
        level = getattr(self._wandb.AlertLevel, self.LEVELS.get(str(record["severity"]), "WARN"))
        self._wandb.alert(title=_headline(record)[:63], text=str(record["message"]), level=level)
        self._count += 1
        run.summary["ruledsl/alerts"] = self._count
        run.summary[f"ruledsl/{record['rule']}"] = {
            "severity": record["severity"], "first_step": record["first_step"], "message": record["message"]}

    def stopped(self, reason: str) -> None:
        run = self._run()
        if run is not None:
            run.summary["ruledsl/stopped"] = reason

    def finish(self, alerts_text: str) -> None:
        pass  # the summary is already up to date; the integration finishes the run


class MlflowTracker:
    name = "mlflow"

    def __init__(self) -> None:
        import mlflow

        self._mlflow = mlflow
        self._run_id: str | None = None
        self._count = 0

    def _client_and_run(self):
        if self._run_id is None:
            active = self._mlflow.active_run()  # started by the integration's on_train_begin
            if active is None:
                return None, None
            self._run_id = active.info.run_id
        # The integration may end the run in its on_train_end (before ours): address it by id.
        return self._mlflow.tracking.MlflowClient(), self._run_id

    def alert(self, record: Record) -> None:
        client, run_id = self._client_and_run()
        if client is None:
            return
        self._count += 1
        client.set_tag(run_id, f"ruledsl.alert.{record['rule']}",
                       f"{_headline(record)}: {record['message']}"[:5000])
        client.set_tag(run_id, "ruledsl.alerts", str(self._count))

    def stopped(self, reason: str) -> None:
        client, run_id = self._client_and_run()
        if client is not None:
            client.set_tag(run_id, "ruledsl.stopped", reason[:5000])

    def finish(self, alerts_text: str) -> None:
        client, run_id = self._client_and_run()
        if client is not None and alerts_text:
            client.log_text(run_id, alerts_text, "ruledsl/alerts.jsonl")


class TensorBoardTracker:
    name = "tensorboard"
    TAG = "ruledsl/alerts"

    def __init__(self, args: Any) -> None:
        self._args = args
        self._writer = None

    def _log_dir(self) -> Path:
        """The TensorBoard integration's folder: $TENSORBOARD_LOGGING_DIR, else its newest runs/ folder."""
        configured = os.getenv("TENSORBOARD_LOGGING_DIR")
        if configured:
            return Path(configured).expanduser()
        runs = Path(self._args.output_dir) / "runs"
        written = [p.parent for p in runs.glob("*/events.out.tfevents.*")] if runs.is_dir() else []
        if written:
            return max(written, key=lambda p: p.stat().st_mtime)
        return runs / "ruledsl"

    def _summary_writer(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(log_dir=str(self._log_dir()), filename_suffix=".ruledsl")
        return self._writer

    def alert(self, record: Record) -> None:
        writer = self._summary_writer()
        writer.add_text(self.TAG, f"**{_headline(record)}**  \n{record['message']}",
                        global_step=int(record["first_step"]))
        writer.flush()

    def stopped(self, reason: str) -> None:
        writer = self._summary_writer()
        writer.add_text("ruledsl/stopped", reason)
        writer.flush()

    def finish(self, alerts_text: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def wanted(args: Any) -> list[str]:
    """The trackers among `args.report_to` that ruledsl knows."""
    report_to = getattr(args, "report_to", None) or []
    if isinstance(report_to, str):
        report_to = [report_to]
    return [name for name in ("wandb", "mlflow", "tensorboard") if name in report_to or "all" in report_to]


def make_tracker(name: str, args: Any):
    if name == "wandb":
        return WandbTracker()
    if name == "mlflow":
        return MlflowTracker()
    if name == "tensorboard":
        return TensorBoardTracker(args)
    raise ValueError(f"unknown tracker {name!r}")


def alerts_jsonl(records: Sequence[Record]) -> str:
    return "".join(json.dumps(json_safe(dict(r))) + "\n" for r in records)
