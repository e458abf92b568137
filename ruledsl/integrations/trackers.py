"""Alerts also go to the experiment trackers the Trainer reports to.

A tracker is used when `args.report_to` names it and its integration is live:
W&B gets `wandb.alert` and run-summary entries, MLflow gets tags and an
`ruledsl/alerts.jsonl` artifact, TensorBoard gets a text entry and a scalar
`ruledsl/alerts/<rule>` (the severity's level) at the episode's first step, and
`ruledsl/stopped` at the step a `stop_on` stopped training. At the end of training
each gets the summary (integrations/summary.py): W&B a table `ruledsl/summary` and
run-summary counts, MLflow the artifact `ruledsl/summary.md` and tags, TensorBoard
a text entry `ruledsl/summary`. Each tracker imports its library only when the run
reports to it, and the callback runs each one through its fuse: a failing tracker is
switched off.

A tracker has `alert(record)`, `stopped(reason, step)`, `summary(summary, text)` (text: the
markdown of summary.md) and `finish(alerts_text)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ruledsl.alerts import json_safe, severity_rank
from ruledsl.integrations.summary import TABLE_COLUMNS, RunSummary

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

    def stopped(self, reason: str, step: int) -> None:
        run = self._run()
        if run is not None:
            run.summary["ruledsl/stopped"] = reason
            run.summary["ruledsl/stopped_step"] = step

    def summary(self, summary: RunSummary, text: str) -> None:
        """A table `ruledsl/summary` (one row per rule that fired: it shows as a table panel) and
        the counts in the run summary (the runs table's columns)."""
        run = self._run()
        if run is None:
            return
        run.log({"ruledsl/summary": self._wandb.Table(columns=list(TABLE_COLUMNS), data=summary.table())})
        run.summary["ruledsl/episodes"] = summary.episodes
        run.summary["ruledsl/rules_fired"] = len(summary.rules)
        if summary.coverage is not None:
            run.summary["ruledsl/rules_not_evaluated"] = len({r.rule for r in summary.coverage})

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

    def stopped(self, reason: str, step: int) -> None:
        client, run_id = self._client_and_run()
        if client is not None:
            client.set_tag(run_id, "ruledsl.stopped", reason[:5000])
            client.set_tag(run_id, "ruledsl.stopped_step", str(step))

    def summary(self, summary: RunSummary, text: str) -> None:
        """The artifact `ruledsl/summary.md` (MLflow's artifact view shows it) and counts as tags."""
        client, run_id = self._client_and_run()
        if client is None:
            return
        client.log_text(run_id, text, "ruledsl/summary.md")
        client.set_tag(run_id, "ruledsl.episodes", str(summary.episodes))
        if summary.coverage is not None:
            client.set_tag(run_id, "ruledsl.rules_not_evaluated", str(len({r.rule for r in summary.coverage})))

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
        """A text entry, and a scalar per rule (the severity's level, LEVELS) that plots at the
        episode's first step beside the run's metrics."""
        writer = self._summary_writer()
        step = int(record["first_step"])
        writer.add_text(self.TAG, f"**{_headline(record)}**  \n{record['message']}", global_step=step)
        writer.add_scalar(f"{self.TAG}/{record['rule']}", level(str(record["severity"])), global_step=step)
        writer.flush()

    def stopped(self, reason: str, step: int) -> None:
        writer = self._summary_writer()
        writer.add_text("ruledsl/stopped", reason, global_step=step)
        writer.add_scalar("ruledsl/stopped", 1, global_step=step)
        writer.flush()

    def summary(self, summary: RunSummary, text: str) -> None:
        """The markdown of summary.md as a text entry (TensorBoard's text tab renders its tables)."""
        writer = self._summary_writer()
        writer.add_text("ruledsl/summary", text, global_step=summary.last_step or 0)
        writer.flush()

    def finish(self, alerts_text: str) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def level(severity: str) -> int:
    """A severity as a TensorBoard scalar: low 1, medium 2, high 3, critical 4 (1 for a name off the scale)."""
    try:
        return severity_rank(severity) + 1
    except ValueError:
        return 1


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
