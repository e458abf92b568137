"""A run resumed from a checkpoint: its alerts go on where they were, and a changed configuration is an alert.

The real mechanism end to end: a tiny SFT run in a subprocess saves a checkpoint at step 4 and is
killed with SIGKILL at step 5 (no cleanup of any kind runs), then a second process resumes it with
`trainer.train(resume_from_checkpoint=True)` in the same output_dir. An uninterrupted run of the same
script is the reference: the resumed run must report the episodes it reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ruledsl.integrations import resume
from ruledsl.integrations.diagnostics_files import DiagnosticsFiles

ROOT = Path(__file__).resolve().parent.parent

# `open_from_start` fires at step 1 and stays open: announced once, before the kill, never again.
# `streak` needs six steps in a row: it fires at step 6, after the resume at step 4, only if the
# resumed rules remember steps 1-4 (afresh, it could fire at step 9 at the earliest).
ALERTS = {"open_from_start": "sft: loss > 0 -> high: loss is positive ({value})",
          "streak": "sft: loss > 0 for 6 steps -> medium: loss positive for six steps"}

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import tiny_trl
    from transformers import TrainerCallback
    from ruledsl import DiagnosticsCallback

    output_dir, kill_at, resume_from, lr, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume", \\
        float(sys.argv[4]), sys.argv[5]
    # one model folder for every session: its path is part of the configuration a resume compares
    model_dir = Path(sys.argv[6])
    if not (model_dir / "config.json").exists():
        tiny_trl._build_model(model_dir)

    class KillAt(TrainerCallback):
        # after the diagnostics callback has written the step's row: SIGKILL, as an OOM killer or a lost node
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    watch = DiagnosticsCallback(custom_alerts={alerts!r}, include_builtin=False, resume_policy=policy)
    trainer = tiny_trl.make_trainer("sft", model_dir, output_dir, callbacks=[watch, KillAt()],
                                    max_steps=9, save_strategy="steps", save_steps=4, learning_rate=lr)
    trainer.train(resume_from_checkpoint=True if resume_from else None)
    print("TRAINING DONE", flush=True)
""")


def _run(tmp_path: Path, output_dir: Path, *, kill_at: int = 0, resume_from: bool = False, lr: float = 5e-5,
         policy: str = "warn") -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests"), alerts=ALERTS), encoding="utf-8")
    return subprocess.run([sys.executable, str(script), str(output_dir), str(kill_at),
                           "resume" if resume_from else "fresh", repr(lr), policy, str(tmp_path.parent / "model")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _episodes(output_dir: Path) -> list[tuple[str, int]]:
    """(rule, first_step) of the final episodes the callback wrote at the end of training."""
    lines = (output_dir / "diagnostics" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted((e["rule"], e["first_step"]) for e in map(json.loads, lines) if e["event"] == "episode")


def _audit(output_dir: Path) -> list[tuple[str, int]]:
    """(rule, first_step) of `ruledsl audit` of the run's diagnostics folder (the rules run.json names)."""
    done = subprocess.run([sys.executable, "-m", "ruledsl", "audit", str(output_dir / "diagnostics"),
                           "--format", "json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return sorted((r["rule"], r["first_step"]) for r in json.loads(done.stdout))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple[str, int]]:
    """The episodes of the same run, never interrupted."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    done = _run(tmp, tmp / "out")
    assert done.returncode == 0, done.stderr
    return _episodes(tmp / "out")


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A run killed with SIGKILL at step 5, its last checkpoint at step 4: a template each test copies."""
    tmp = tmp_path_factory.mktemp("killed")
    done = _run(tmp, tmp / "out", kill_at=5)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (tmp / "out" / "checkpoint-4").is_dir()
    assert "[HIGH] open_from_start at step 1" in done.stderr  # alerts go to stderr, plain off a terminal
    return tmp / "out"


def _copy_of(run: Path, tmp_path: Path) -> Path:
    import shutil
    target = tmp_path / "out"
    shutil.copytree(run, target)
    return target


def test_resume_continues_the_alerts_where_they_were(killed, reference, tmp_path):
    out = _copy_of(killed, tmp_path)
    done = _run(tmp_path, out, resume_from=True)
    assert done.returncode == 0, done.stderr
    assert "TRAINING DONE" in done.stdout
    # the episode opened at step 1 was announced by the killed session: not again
    assert "open_from_start at step 1" not in done.stderr
    assert "episodes still open, not announced again: open_from_start (high, since step 1)" in done.stdout
    assert "rebuilt from 4 rows" in done.stdout and "1 later rows of the earlier session not replayed" in done.stdout
    # the streak counted steps 1-4 of the killed session: it fires at step 6, as without the kill
    assert "streak at step 6" in done.stderr
    assert _episodes(out) == reference == [("open_from_start", 1), ("streak", 6)]
    assert _audit(out) == reference  # the file the two sessions wrote reads as one run
    assert "config_drift" not in done.stderr  # nothing changed
    run_json = json.loads((out / "diagnostics" / "run.json").read_text(encoding="utf-8"))
    assert run_json["resumed"] == [{"step": 4, "replayed_rows": 4, "changes": [],
                                    "replayed_from": str(out / "diagnostics" / "metrics.jsonl")}]


def test_a_changed_learning_rate_is_a_high_alert(killed, tmp_path):
    out = _copy_of(killed, tmp_path)
    done = _run(tmp_path, out, resume_from=True, lr=1e-4)
    assert done.returncode == 0, done.stderr
    assert "[HIGH] config_drift at step 4" in done.stderr
    assert "learning_rate: 5e-05 → 0.0001 (high)" in done.stderr
    events = [json.loads(line) for line in (out / "diagnostics" / "alerts.jsonl").read_text().splitlines()]
    drift = [e for e in events if e["rule"] == "config_drift"] if events else []
    assert drift and drift[0]["changes"] == [{"key": "learning_rate", "from": 5e-05, "to": 0.0001,
                                              "severity": "high"}]


def test_resume_policy_error_stops_before_the_first_step(killed, tmp_path):
    out = _copy_of(killed, tmp_path)
    rows_before = (out / "diagnostics" / "metrics.jsonl").read_text().count("\n")
    done = _run(tmp_path, out, resume_from=True, lr=1e-4, policy="error")
    assert done.returncode != 0 and "TRAINING DONE" not in done.stdout
    assert "ResumeConfigError" in done.stderr
    assert "resume_policy='error'" in done.stderr and "learning_rate: 5e-05 → 0.0001 (high)" in done.stderr
    assert (out / "diagnostics" / "metrics.jsonl").read_text().count("\n") == rows_before  # no step was taken


def test_resume_policy_ignore_says_nothing_of_the_change(killed, tmp_path):
    out = _copy_of(killed, tmp_path)
    done = _run(tmp_path, out, resume_from=True, lr=1e-4, policy="ignore")
    assert done.returncode == 0, done.stderr
    assert "config_drift" not in done.stdout + done.stderr
    assert json.loads((out / "diagnostics" / "run.json").read_text())["resumed"][0]["changes"][0]["key"] \
        == "learning_rate"  # still kept in run.json


# ---------------------------------------------------------------- the parts, one by one


def test_drift_ranks_changes_by_what_they_change():
    before = {"learning_rate": 1e-5, "logging_steps": 10, "seed": 42, "model": "a", "versions.torch": "2.13.0",
              "resume_from_checkpoint": "x", "max_steps": 100}
    after = {"learning_rate": 2e-5, "logging_steps": 5, "seed": 42, "model": "b", "versions.torch": "2.14.0",
             "resume_from_checkpoint": "y", "max_steps": 200, "beta": 0.1}
    assert [(c.key, c.severity) for c in resume.drift(before, after)] == [
        ("beta", "high"), ("learning_rate", "high"), ("model", "high"),
        ("logging_steps", "low"), ("max_steps", "low"), ("versions.torch", "low")]
    assert resume.drift(before, dict(before)) == []
    assert resume.drift({"warmup_steps": 2}, {"warmup_steps": 2.0}) == []  # a JSON round trip is no change
    assert [c.key for c in resume.stopping(resume.drift(before, after))] == ["beta", "learning_rate", "model"]


def test_snapshot_round_trips_through_config_json(tmp_path):
    saved = resume.snapshot({"learning_rate": 1e-5, "report_to.0": "none", "local_rank": 3}, world_size=2,
                            model="tiny", dataset="abc123", versions={"torch": "2.13.0", "ruledsl": "9"})
    assert saved == {"learning_rate": 1e-5, "report_to.0": "none", "world_size": 2, "model": "tiny",
                     "dataset": "abc123", "versions.torch": "2.13.0"}
    resume.save_snapshot(tmp_path, saved, 0)
    assert resume.load_snapshot(tmp_path) == saved
    assert not (tmp_path / "config.json.partial").exists()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json cannot be read"):
        resume.load_snapshot(tmp_path)


def test_replay_rows_keeps_file_order_and_counts_what_it_leaves(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 1.0}\n{"step": 3, "loss": 3.0}\n{"step": 2, "loss": 2.0}\n'
                       'not json\n{"step": 9, "loss": 9.0}\n{"loss": 1.0}\n', encoding="utf-8")
    found = resume.replay_rows(metrics, 3)
    assert found is not None
    assert found.rows == [(1, {"loss": 1.0}), (3, {"loss": 3.0}), (2, {"loss": 2.0})]
    assert (found.later, found.unreadable) == (1, 2)
    assert [step for step, _ in resume.in_step_order(found.rows)] == [1, 2, 3]
    assert resume.replay_rows(tmp_path / "absent.jsonl", 3) is None
    history = resume.log_history_rows([{"loss": 1.0, "step": 1}, {"loss": 2.0, "step": 5}], 3)
    assert history is not None and history.rows == [(1, {"loss": 1.0})] and history.later == 1


def test_a_line_cut_by_a_kill_is_removed_before_appending(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    (tmp_path / "alerts.jsonl").write_bytes(b'{"event": "started"}\n')
    files = DiagnosticsFiles(tmp_path)
    files.write_metrics(2, {"loss": 2.0})
    files.close()
    assert files.cut == {"metrics.jsonl": len(b'{"step": 2, "lo')}
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == ['{"step": 1, "loss": 1.0}',
                                                                      '{"step": 2, "loss": 2.0}']
    (tmp_path / "metrics.jsonl").write_bytes(b'no break at all')
    assert DiagnosticsFiles(tmp_path).cut == {"metrics.jsonl": 15}
    assert (tmp_path / "metrics.jsonl").read_bytes() == b""


def test_resume_check_false_saves_nothing_and_replays_nothing(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from ruledsl import DiagnosticsCallback

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    diagnostics = tmp_path / "diagnostics"
    for check in (True, False):
        (diagnostics / "config.json").unlink(missing_ok=True)
        watch = DiagnosticsCallback(include_builtin=False, custom_alerts=["all: loss > 0 -> high: up"],
                                    resume_check=check, console=False, postmortem=False)
        watch.on_train_begin(args, TrainerState(), TrainerControl())
        watch.on_log(args, TrainerState(global_step=1), TrainerControl(), logs={"loss": 1.0})
        watch.on_train_end(args, TrainerState(global_step=1), TrainerControl())
        assert (diagnostics / "config.json").exists() is check
    # a resume at step 1 with the check off: the row of step 1 is not replayed, so the open episode is new again
    watch = DiagnosticsCallback(include_builtin=False, custom_alerts=["all: loss > 0 -> high: up"],
                                resume_check=False, console=False, postmortem=False)
    watch.on_train_begin(args, TrainerState(global_step=1), TrainerControl())
    assert watch.resumed == [] and watch.started == []
    watch.on_log(args, TrainerState(global_step=2), TrainerControl(), logs={"loss": 1.0})
    assert [r["first_step"] for r in watch.started] == [2]
    watch = DiagnosticsCallback(include_builtin=False, custom_alerts=["all: loss > 0 -> high: up"],
                                console=False, postmortem=False)
    watch.on_train_begin(args, TrainerState(global_step=1), TrainerControl())
    # the two sessions of the loop logged step 1 (the later row of a step wins); step 2 is past the resume
    assert watch.resumed[0]["replayed_rows"] == 2 and [r["first_step"] for r in watch.started] == [1]


def test_a_fault_in_the_resume_check_is_said_and_training_goes_on(tmp_path, monkeypatch, capsys):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from ruledsl import DiagnosticsCallback
    from ruledsl.integrations import callback as callback_module

    def broken(value):
        raise RuntimeError("the broadcast went wrong")

    monkeypatch.setattr(callback_module, "ranks_agree", broken)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    watch = DiagnosticsCallback(include_builtin=False, custom_alerts=["all: loss > 0 -> high: up"],
                                resume_policy="error", postmortem=False)
    watch.on_train_begin(args, TrainerState(global_step=3), TrainerControl())  # raises nothing
    assert "the resume check failed (RuntimeError: the broadcast went wrong)" in capsys.readouterr().err
    watch.on_log(args, TrainerState(global_step=4), TrainerControl(), logs={"loss": 1.0})
    assert [r["first_step"] for r in watch.started] == [4]  # the rules still run
