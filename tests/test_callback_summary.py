"""Alerts that stand out, and the end-of-training summary, in real SFT runs on a tiny model.

The alert blocks and the summary go to stderr (where the Trainer's warnings go), as a coloured
block on a real terminal (a pty), with icons only under NO_COLOR, and as plain text anywhere
else. The summary is printed once, written to diagnostics/summary.md, and reaches TensorBoard
(read back with tensorboard's EventAccumulator), MLflow (a file store) and W&B (an offline run).
"""

# first: it sets the offline environment, and skips this module without the TRL extra
from tiny_trl import make_trainer, tiny_model_dir

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import struct
import termios
import threading
import time
from pathlib import Path

import pytest

from ruledsl.integrations.callback import DiagnosticsCallback

pytestmark = [pytest.mark.trl, pytest.mark.slow]  # real training runs on a tiny model

# SFT, batch 2 over 8 rows: epoch = 0.25 × step, so these start at steps 1 and 3 and hold to the end
ALERTS = {"loss_positive": "sft: loss > 0 -> high: loss is {value:.3f}",
          "three_quarters": "sft: epoch >= 0.75 -> critical: three quarters in",
          "typo_loss": "sft: los > 100 -> low: never"}  # a key no trainer logs: never evaluated


def callback(**options) -> DiagnosticsCallback:
    return DiagnosticsCallback(custom_alerts=ALERTS, include_builtin=False, **options)


def train_sft(output_dir: Path, watcher: DiagnosticsCallback, stderr=None, **overrides):
    """A real SFT run; returns the trainer, its stdout and its stderr (None when `stderr` is given)."""
    out, err = io.StringIO(), stderr or io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        trainer = make_trainer("sft", tiny_model_dir(), output_dir, callbacks=[watcher],
                               **{"max_steps": 5, **overrides})
        trainer.train()
    return trainer, out.getvalue(), err.getvalue() if stderr is None else None


def episodes(diagnostics: Path) -> list[dict]:
    """The final episodes the callback wrote to alerts.jsonl: an account the summary does not read."""
    events = [json.loads(line) for line in (diagnostics / "alerts.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "episode"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary-run")
    watcher = callback()
    trainer, out, err = train_sft(root / "out", watcher)
    return trainer, watcher, out, err, root / "out" / "diagnostics"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary-stop")
    watcher = callback(stop_on="critical")
    trainer, out, err = train_sft(root / "out", watcher)
    return trainer, watcher, out, err, root / "out" / "diagnostics"


# ---------------------------------------------------------------- the summary of a real run


def test_the_summary_is_printed_once_on_stderr_when_training_ends(finished):
    trainer, watcher, out, err, diagnostics = finished
    assert trainer.state.global_step == 5
    assert err.count("ruledsl: summary of training") == 1 and "summary of training" not in out
    summary = err[err.index("ruledsl: summary of training"):].splitlines()
    assert summary[0] == "ruledsl: summary of training: 2 alert episodes from 2 rules (trainer sft, ended at step 5)"
    # one line per rule, worst first, from the episodes alerts.jsonl holds
    by_rule = {e["rule"]: e for e in episodes(diagnostics)}
    assert sorted(by_rule) == ["loss_positive", "three_quarters"]
    assert summary[1].split() == ["severity", "rule", "episodes", "steps", "evaluations", "last", "message"]
    for line, name in zip(summary[2:4], ["three_quarters", "loss_positive"]):
        e = by_rule[name]
        assert line.split(maxsplit=5) == [f"[{e['severity'].upper()}]", name, "1",
                                          f"{e['first_step']}-{e['last_step']}", str(e["n_evals"]), e["message"]]
    assert (by_rule["three_quarters"]["first_step"], by_rule["loss_positive"]["last_step"]) == (3, 5)
    # the rules never evaluated, in the summary (said once: not also on stdout)
    assert summary[4] == "ruledsl: at the end of training, 2 of 3 rules were evaluated on this run"
    assert summary[5] == "  never evaluated: typo_loss (no_key: no value of los in the run; did you mean loss?)"
    assert "at the end of training" not in out
    assert summary[6] == f"ruledsl: written to {diagnostics}: metrics.jsonl, alerts.jsonl, run.json, summary.md"
    assert len(summary) == 7
    # after the alerts it recaps, which are on stderr too, not among the Trainer's dicts on stdout
    assert err.index("[CRITICAL] three_quarters at step 3") < err.index("ruledsl: summary of training")
    assert "[HIGH]" not in out and "{'loss'" in out


def test_summary_md_holds_the_same_episodes_coverage_and_paths(finished):
    _, watcher, _, _, diagnostics = finished
    text = (diagnostics / "summary.md").read_text()
    assert text.startswith(f"# ruledsl summary: {watcher.monitor.run}\n\n"
                           "**2 alert episodes from 2 rules** (trainer sft, ended at step 5).\n")
    alerts = _table(text, "## Alerts")
    assert alerts[0] == ["rule", "severity", "episodes", "first step", "last step", "evaluations", "last message"]
    assert alerts[1:] == [[f"`{e['rule']}`", e["severity"], "1", str(e["first_step"]), str(e["last_step"]),
                           str(e["n_evals"]), e["message"]]
                          for e in sorted(episodes(diagnostics), key=lambda e: e["severity"] != "critical")]
    assert "2 of 3 rules were evaluated on this run." in text
    assert _table(text, "## Rules not evaluated")[1:] == [
        ["`typo_loss`", "", "no_key", "no value of los in the run; did you mean loss?"]]
    for name in ("metrics.jsonl", "alerts.jsonl", "run.json"):
        assert f"- {name}: `{diagnostics / name}`" in text
    assert "postmortem" not in text and "report.html" not in text  # neither was written by this run
    assert sorted(p.name for p in diagnostics.iterdir()) == [
        "alerts.jsonl", "config.json", "metrics.jsonl", "run.json", "summary.md"]  # no temporary file left
    assert watcher.run_summary is not None and watcher.run_summary.episodes == 2


def _table(markdown: str, section: str) -> list[list[str]]:
    """The first markdown table after `section`, as rows of cells (the separator row left out)."""
    lines = markdown.split(section, 1)[1].splitlines()
    rows = [line for line in lines[next(i for i, line in enumerate(lines) if line.startswith("|")):]]
    rows = rows[:next((i for i, line in enumerate(rows) if not line.startswith("|")), len(rows))]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [row for row in cells if not all(set(c) <= set("-:") for c in row)]


def test_after_a_stop_the_summary_says_so_and_points_to_the_postmortem(stopped):
    trainer, watcher, out, err, diagnostics = stopped
    assert trainer.state.global_step == 3
    summary = err[err.index("ruledsl: summary of training"):].splitlines()
    assert summary[0] == "ruledsl: summary of training: 2 alert episodes from 2 rules (trainer sft, ended at step 3)"
    assert summary[1] == "  stopped training at step 3: rule three_quarters (critical) fired and stop_on='critical'"
    assert summary[-1] == (f"ruledsl: written to {diagnostics}: metrics.jsonl, alerts.jsonl, run.json, summary.md, "
                           f"postmortem.json")
    assert err.count("ruledsl: summary of training") == 1
    # the postmortem said its own line before (not repeated in the summary: only its path)
    assert err.count("postmortem written to") == 1
    text = (diagnostics / "summary.md").read_text()
    assert "**Stopped training at step 3: rule three_quarters (critical) fired and stop_on='critical'**" in text
    assert f"- postmortem.json: `{diagnostics / 'postmortem.json'}`" in text


def test_summary_false_prints_and_writes_no_summary(tmp_path):
    _, out, err = train_sft(tmp_path / "out", callback(summary=False), max_steps=2)
    assert "summary of training" not in out + err
    assert not (tmp_path / "out" / "diagnostics" / "summary.md").exists()
    # the rules never evaluated are said as before, on stdout
    assert "ruledsl: at the end of training, 2 of 3 rules were evaluated on this run" in out
    assert "[HIGH] loss_positive at step 1\n    loss is" in err  # the alerts still on stderr


def test_the_html_report_is_named_when_it_was_written(tmp_path):
    _, _, err = train_sft(tmp_path / "out", callback(report=True), max_steps=2)
    diagnostics = tmp_path / "out" / "diagnostics"
    assert (diagnostics / "report.html").is_file()
    assert err.rstrip().endswith(f"ruledsl: written to {diagnostics}: metrics.jsonl, alerts.jsonl, run.json, "
                                 f"summary.md, report.html")
    assert f"- report.html: `{diagnostics / 'report.html'}`" in (diagnostics / "summary.md").read_text()


def test_a_summary_md_that_cannot_be_written_is_said_once_and_the_rest_goes_on(tmp_path, monkeypatch):
    import ruledsl.integrations.callback as module

    def disk_full(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(module, "write_summary", disk_full)  # the file system failing, not the summary
    trainer, _, err = train_sft(tmp_path / "out", callback(), max_steps=2)
    assert trainer.state.global_step == 2
    assert err.count("ruledsl: summary.md failed (OSError: disk full); summary.md is switched off") == 1
    assert "ruledsl: summary of training: 1 alert episode from 1 rule (trainer sft, ended at step 2)" in err
    assert not (tmp_path / "out" / "diagnostics" / "summary.md").exists()
    assert f"ruledsl: written to {tmp_path / 'out' / 'diagnostics'}: metrics.jsonl, alerts.jsonl, run.json\n" in err


# ---------------------------------------------------------------- how the alerts look where they go


def test_off_a_terminal_the_alerts_are_plain_text_that_greps(finished):
    _, _, _, err, _ = finished
    assert "[HIGH] loss_positive at step 1\n    loss is 5.937\n" in err
    assert "[CRITICAL] three_quarters at step 3\n    three quarters in\n" in err
    assert "\x1b[" not in err and "🚨" not in err and "🔥" not in err


class Terminal:
    """A real pseudo-terminal: what is written to `stream` (the slave side, a TTY) is read from
    the master side by a thread, so a long output never blocks the writer."""

    def __init__(self, columns: int = 100):
        master, slave = pty.openpty()
        # a new pty is 0 columns wide: give it a terminal's size, which tqdm reads to draw its bar
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
        self.master = master
        self.stream = open(slave, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in read()
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the slave side closed: EIO on Linux
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    def read(self) -> str:
        """Everything written, the terminal's CR-LF line ends back to LF."""
        self.stream.close()
        self.reader.join(timeout=30)
        os.close(self.master)
        return b"".join(self.chunks).decode("utf-8").replace("\r\n", "\n")


def test_on_a_terminal_an_alert_is_a_coloured_block_and_a_progress_bar_is_cleared_first(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    terminal = Terminal()
    assert terminal.stream.isatty()
    train_sft(tmp_path / "out", callback(), stderr=terminal.stream, max_steps=4, disable_tqdm=False)
    shown = terminal.read()
    high = "\x1b[1;97;41m 🚨 [HIGH] loss_positive at step 1 \x1b[0m\n\x1b[31m▌\x1b[0m   loss is 5.937\n"
    critical = "\x1b[1;97;45m 🔥 [CRITICAL] three_quarters at step 3 \x1b[0m\n\x1b[35m▌\x1b[0m   three quarters in\n"
    assert high in shown and critical in shown
    # the Trainer's progress bar (tqdm, on the same terminal) was cleared before each block: on the
    # block's line, after the last carriage return, the block begins (not the bar's text)
    for head in ("🚨 [HIGH] loss_positive", "🔥 [CRITICAL] three_quarters"):
        line = next(line for line in shown.splitlines() if head in line)
        assert "it/s" in shown and line.rsplit("\r", 1)[-1].startswith("\x1b[1;97;4")
    # the summary: its headline bold, each severity in its colour
    assert "\x1b[1mruledsl: summary of training: 2 alert episodes from 2 rules (trainer sft, ended at step 4)\x1b[0m" \
        in shown
    assert "  \x1b[1;31m[CRITICAL]\x1b[0m  three_quarters" in shown and "  \x1b[31m[HIGH]\x1b[0m      loss_positive" \
        in shown


def test_no_color_on_a_terminal_keeps_the_icons_and_drops_the_ansi_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    train_sft(tmp_path / "out", callback(), stderr=terminal.stream, max_steps=3)
    shown = terminal.read()
    assert "🚨 [HIGH] loss_positive at step 1\n    loss is 5.937\n" in shown
    assert "🔥 [CRITICAL] three_quarters at step 3\n    three quarters in\n" in shown
    assert "ruledsl: summary of training: 2 alert episodes" in shown
    assert "\x1b[" not in shown


# ---------------------------------------------------------------- TensorBoard


def test_tensorboard_plots_each_alert_at_its_step_and_the_stop_at_the_stop_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    watcher = callback(stop_on="critical")
    trainer, _, _ = train_sft(tmp_path / "out", watcher, report_to=["tensorboard"])
    assert trainer.state.global_step == 3
    [folder] = {p.parent for p in (tmp_path / "out" / "runs").rglob("events.out.tfevents.*")}  # one run
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["ruledsl/alerts/loss_positive"] == [(1, 3.0)]  # high: level 3
    assert scalars["ruledsl/alerts/three_quarters"] == [(3, 4.0)]  # critical: level 4
    assert scalars["ruledsl/stopped"] == [(3, 1.0)]
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]  # beside the integration's own scalars
    texts = {tag: [(e.step, _text(e)) for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}
    [(step, reason)] = texts["ruledsl/stopped/text_summary"]
    assert step == 3 and reason == watcher.stopped["reason"]  # at the stop step, not at step 0
    [(step, summary)] = texts["ruledsl/summary/text_summary"]
    assert step == 3 and summary == (tmp_path / "out" / "diagnostics" / "summary.md").read_text()


def _text(event) -> str:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto).item().decode()


# ---------------------------------------------------------------- MLflow and W&B


def test_mlflow_gets_the_summary_as_an_artifact_and_tags(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(store.as_uri())
    train_sft(tmp_path / "out", callback(stop_on="critical"), report_to=["mlflow"])
    client = mlflow.tracking.MlflowClient(store.as_uri())
    [experiment] = client.search_experiments()
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.tags["ruledsl.episodes"] == "2" and run.data.tags["ruledsl.rules_not_evaluated"] == "1"
    assert run.data.tags["ruledsl.stopped_step"] == "3"
    artifact = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="ruledsl/summary.md",
                                                        dst_path=str(tmp_path / "download")))
    assert artifact.read_text() == (tmp_path / "out" / "diagnostics" / "summary.md").read_text()


@pytest.mark.subprocess  # wandb starts its service process, offline too
def test_wandb_gets_the_summary_table_and_counts(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from test_callback_trackers import wandb_offline, wandb_records

    wandb_offline(monkeypatch, tmp_path)
    wandb.teardown()  # settings an earlier test of this process left would win over the WANDB_DIR above
    try:
        train_sft(tmp_path / "out", callback(stop_on="critical"), report_to=["wandb"])
        wandb.finish()
    finally:  # wandb keeps its settings (WANDB_DIR among them) for the process: a later test gets fresh ones
        wandb.teardown()
    deadline = time.monotonic() + 60  # the service may still be writing the file (test_callback_trackers)
    while True:
        [run_file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
        records = list(wandb_records(run_file))
        if any(r.HasField("summary") for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    summary = {item.key: json.loads(item.value_json)
               for r in records if r.HasField("summary") for item in r.summary.update}
    assert summary["ruledsl/episodes"] == 2 and summary["ruledsl/rules_fired"] == 2
    assert summary["ruledsl/rules_not_evaluated"] == 1 and summary["ruledsl/stopped_step"] == 3
    # the table, logged once: the history row names its file, which the offline run keeps
    logged = {item.nested_key[1]: json.loads(item.value_json) for r in records if r.HasField("history")
              for item in r.history.item if list(item.nested_key[:1]) == ["ruledsl/summary"]}
    assert logged["_type"] == "table-file" and (logged["nrows"], logged["ncols"]) == (2, 7)
    [table_file] = (tmp_path / "wandb").glob("offline-run-*/files/" + logged["path"])
    table = json.loads(table_file.read_text())
    ended = episodes(tmp_path / "out" / "diagnostics")
    assert table["columns"] == ["rule", "severity", "episodes", "first_step", "last_step", "evaluations",
                                "last_message"]
    assert table["data"] == [[e["rule"], e["severity"], 1, e["first_step"], e["last_step"], e["n_evals"],
                              e["message"]] for e in sorted(ended, key=lambda e: e["severity"] != "critical")]
