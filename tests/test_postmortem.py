"""Postmortems: diagnostics/postmortem.json when training ends abnormally, and `ruledsl postmortem`.

The abnormal ends are real: a tiny TRL trainer (tests/tiny_trl.py) run as its own process
(tests/postmortem_trainer.py) that raises from a user callback, or that holds at step 3 until
a real SIGTERM or SIGINT is sent to it; in this process, a KeyboardInterrupt raised inside
train(), a stop_on decision, and SIGTERM sent to this process while the previous handler is a
callable or SIG_IGN (so that the test process lives on). The CLI reads the files those runs wrote.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import ruledsl
from ruledsl.integrations.postmortem import POSTMORTEM_FILE, write_atomically

TESTS = Path(__file__).resolve().parent
DRIVER = TESTS / "postmortem_trainer.py"
TIMEOUT = 180  # seconds for one training subprocess, at most (a loaded CI machine)


def trl_run(test):
    """A test that trains a real tiny trainer (or reads what one wrote)."""
    return pytest.mark.trl(pytest.mark.slow(test))


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def model_dir() -> Path:
    pytest.importorskip("trl", reason="needs the TRL extra: pip install 'ruledsl[trl]'")
    from tiny_trl import tiny_model_dir

    return tiny_model_dir()


def start(mode: str, model: Path, output: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(DRIVER), mode, str(model), str(output)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        pytest.fail(f"the training process did not end within {TIMEOUT} s:\n{stderr[-3000:]}")
    return process.returncode, stderr


def signalled(mode: str, model: Path, output: Path, signum: int) -> tuple[int, str]:
    """Start a run that holds at step 3, wait until metrics.jsonl has its 3 rows, send `signum`."""
    process = start(mode, model, output)
    metrics = output / "diagnostics" / "metrics.jsonl"
    deadline = time.monotonic() + TIMEOUT
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run never logged 3 rows:\n{process.communicate()[1][-3000:]}")
        time.sleep(0.1)
    os.kill(process.pid, signum)
    return finished(process)


def postmortem_of(output: Path) -> dict:
    return json.loads((output / "diagnostics" / POSTMORTEM_FILE).read_text(encoding="utf-8"))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic write still lying around."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- a trainer that raises, in a process


@pytest.fixture(scope="module")
def raised(model_dir, tmp_path_factory) -> tuple[Path, int, str]:
    output = tmp_path_factory.mktemp("raised")
    returncode, stderr = finished(start("raise", model_dir, output))
    return output, returncode, stderr


@pytest.mark.subprocess
@trl_run
def test_an_exception_in_the_training_loop_leaves_a_postmortem_and_still_ends_the_process(raised):
    output, returncode, stderr = raised
    assert returncode == 1
    assert stderr.rstrip().endswith("RuntimeError: user callback failed at step 3")  # the original, unchanged
    report = postmortem_of(output)
    assert report["schema_version"] == 1 and report["reason"] == "exception"
    assert report["last_step"] == 3 and report["last_logged_step"] == 3
    assert report["exception"]["type"] == "RuntimeError"
    assert report["exception"]["message"] == "user callback failed at step 3"
    assert 'raise RuntimeError(f"user callback failed' in report["exception"]["traceback"]
    assert [row["step"] for row in report["recent_rows"]] == [2, 3]  # postmortem_rows=2: the last two
    assert isinstance(report["recent_rows"][-1]["loss"], float)
    assert report["trainer"] == "sft" and report["run"] == output.name
    assert report["versions"]["trl"] and report["versions"]["ruledsl"]
    assert any(rule["name"] == "grad_norm_nonfinite" for rule in report["rules"])
    assert {"rule", "reason"} <= set(report["coverage"][0])
    assert f"postmortem written to {output / 'diagnostics' / POSTMORTEM_FILE}" in stderr
    assert leftovers(output / "diagnostics") == []


@pytest.mark.subprocess
@trl_run
def test_a_callback_added_after_init_writes_it_through_the_chained_excepthook(model_dir, tmp_path):
    returncode, stderr = finished(start("raise_added", model_dir, tmp_path))
    assert returncode == 1 and "RuntimeError: user callback failed at step 3" in stderr
    report = postmortem_of(tmp_path)
    assert report["reason"] == "exception" and report["last_step"] == 3
    assert report["exception"]["type"] == "RuntimeError"


# ---------------------------------------------------------------- real signals sent to a training process


@pytest.mark.subprocess
@trl_run
def test_sigterm_writes_a_postmortem_and_the_process_still_dies_of_sigterm(model_dir, tmp_path):
    returncode, stderr = signalled("hold", model_dir, tmp_path, signal.SIGTERM)
    assert returncode == -signal.SIGTERM, stderr[-2000:]
    report = postmortem_of(tmp_path)
    assert report["reason"] == "sigterm" and report["exception"] is None
    assert report["signal"] == {"signal": "SIGTERM", "previous_handler": "default"}
    assert report["last_step"] == 3 and [row["step"] for row in report["recent_rows"]] == [2, 3]
    assert leftovers(tmp_path / "diagnostics") == []


@pytest.mark.subprocess
@trl_run
def test_sigterm_chains_to_the_users_own_handler(model_dir, tmp_path):
    returncode, stderr = signalled("hold_handler", model_dir, tmp_path, signal.SIGTERM)
    assert returncode == 143, stderr[-2000:]  # the user's handler ran: sys.exit(143)
    assert (tmp_path / "user_handler_ran").read_text() == "yes"
    report = postmortem_of(tmp_path)
    # its SystemExit left train() afterwards: still the sigterm postmortem, not an "exception" one
    assert report["reason"] == "sigterm" and report["exception"] is None
    assert report["signal"]["previous_handler"].endswith("user_handler")


@pytest.mark.subprocess
@trl_run
def test_ctrl_c_is_a_keyboard_interrupt_postmortem(model_dir, tmp_path):
    returncode, stderr = signalled("hold", model_dir, tmp_path, signal.SIGINT)
    assert returncode == -signal.SIGINT, stderr[-2000:]  # Python's exit for an uncaught KeyboardInterrupt
    report = postmortem_of(tmp_path)
    assert report["reason"] == "keyboard_interrupt" and report["exception"]["type"] == "KeyboardInterrupt"
    assert report["last_step"] == 3


# ---------------------------------------------------------------- in this process


def train_here(model_dir: Path, output: Path, callbacks: list, **overrides):
    from tiny_trl import make_trainer

    trainer = make_trainer("sft", model_dir, output, callbacks=callbacks, **{"max_steps": 4, **overrides})
    return trainer


class At:
    """A user callback doing `action(state)` at on_log of one step."""

    def __new__(cls, step: int, action):
        from transformers import TrainerCallback

        class Doing(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.global_step == step:
                    action(state)

        return Doing()


@trl_run
def test_keyboard_interrupt_in_train_is_written_reraised_unchanged_and_everything_is_put_back(
        model_dir, tmp_path):
    from ruledsl.integrations.callback import DiagnosticsCallback

    interrupt = KeyboardInterrupt("stop now")

    def press_ctrl_c(state):
        raise interrupt

    before = signal.getsignal(signal.SIGTERM), sys.excepthook
    trainer = train_here(model_dir, tmp_path, [DiagnosticsCallback(console=False), At(2, press_ctrl_c)])
    with pytest.raises(KeyboardInterrupt) as raised:
        trainer.train()
    assert raised.value is interrupt
    report = postmortem_of(tmp_path)
    assert report["reason"] == "keyboard_interrupt" and report["last_step"] == 2
    assert report["exception"] == {"type": "KeyboardInterrupt", "message": "stop now",
                                   "traceback": report["exception"]["traceback"]}
    assert (signal.getsignal(signal.SIGTERM), sys.excepthook) == before


@trl_run
def test_stop_on_writes_a_postmortem_with_the_rule_and_notifies(model_dir, tmp_path):
    from ruledsl.integrations.callback import DiagnosticsCallback

    bodies: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        callback = DiagnosticsCallback(custom_alerts={"loss_seen": "sft: loss > 0 -> critical: loss {value}"},
                                       stop_on="high", console=False,
                                       notify=f"http://127.0.0.1:{server.server_address[1]}/hook")
        trainer = train_here(model_dir, tmp_path, [callback], max_steps=6)
        trainer.train()  # ends normally: stop_on is a decision, not a crash
    finally:
        server.shutdown()
    assert trainer.state.global_step == 1
    report = postmortem_of(tmp_path)
    assert report["reason"] == "stop_on" and report["stop_on"] == "high"
    assert report["stopped"]["rule"] == "loss_seen" and report["stopped"]["severity"] == "critical"
    assert report["stopped"]["step"] == 1 and report["last_step"] == 1
    assert [(e["rule"], e["open"]) for e in report["episodes"]] == [("loss_seen", True)]
    posted = [b["ruledsl"]["report"] for b in bodies if b["ruledsl"]["kind"] == "postmortem"]
    assert len(posted) == 1 and posted[0]["reason"] == "stop_on"


@trl_run
def test_sigterm_chains_to_a_callable_and_an_ignored_sigterm_stays_ignored(model_dir, tmp_path):
    from ruledsl.integrations.callback import DiagnosticsCallback

    calls: list[int] = []
    original = signal.getsignal(signal.SIGTERM)
    for previous, folder in ((lambda signum, frame: calls.append(signum), "callable"), (signal.SIG_IGN, "ignored")):
        signal.signal(signal.SIGTERM, previous)
        try:
            trainer = train_here(model_dir, tmp_path / folder, [
                DiagnosticsCallback(console=False), At(2, lambda state: os.kill(os.getpid(), signal.SIGTERM))])
            trainer.train()  # the previous handler lets training go on (as the Trainer's JIT checkpoint does)
            assert trainer.state.global_step == 4
            assert signal.getsignal(signal.SIGTERM) is previous  # put back at the end of training
        finally:
            signal.signal(signal.SIGTERM, original)
        report = postmortem_of(tmp_path / folder)
        assert report["reason"] == "sigterm" and report["last_step"] == 2
        assert report["signal"]["previous_handler"].endswith("ignored" if folder == "ignored" else "<lambda>")
    assert calls == [signal.SIGTERM]


@trl_run
def test_outside_the_main_thread_sigterm_is_skipped_and_said_once_exceptions_still_written(
        model_dir, tmp_path, capsys):
    from ruledsl.integrations.callback import DiagnosticsCallback

    def fail(state):
        raise RuntimeError("boom in a thread")

    before = signal.getsignal(signal.SIGTERM)
    trainer = train_here(model_dir, tmp_path, [DiagnosticsCallback(console=True), At(2, fail)])
    raised: list[BaseException] = []

    def train_in_thread():
        try:
            trainer.train()
        except BaseException as exc:  # the thread's exception, for the assertion below
            raised.append(exc)

    worker = threading.Thread(target=train_in_thread)
    worker.start()
    worker.join(TIMEOUT)
    assert [str(exc) for exc in raised] == ["boom in a thread"]
    assert signal.getsignal(signal.SIGTERM) is before
    stderr = capsys.readouterr().err
    assert stderr.count("training runs outside the main thread") == 1
    report = postmortem_of(tmp_path)
    assert report["reason"] == "exception" and report["exception"]["message"] == "boom in a thread"


@trl_run
def test_postmortem_false_writes_nothing_and_installs_nothing(model_dir, tmp_path):
    from ruledsl.integrations.callback import DiagnosticsCallback

    during: list = []

    def fail(state):
        during.append(signal.getsignal(signal.SIGTERM))
        raise RuntimeError("boom")

    before = signal.getsignal(signal.SIGTERM)
    trainer = train_here(model_dir, tmp_path, [DiagnosticsCallback(postmortem=False, console=False), At(2, fail)])
    assert "train" not in vars(trainer)  # not wrapped
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    assert during == [before]
    assert (tmp_path / "diagnostics" / "metrics.jsonl").exists()
    assert not (tmp_path / "diagnostics" / POSTMORTEM_FILE).exists()


@trl_run
def test_postmortem_rows_is_checked_in_the_constructor():
    pytest.importorskip("transformers")
    from ruledsl.integrations.callback import DiagnosticsCallback

    for bad in (-1, 2.5, True, "50"):
        with pytest.raises(ValueError, match="postmortem_rows takes a whole number"):
            DiagnosticsCallback(postmortem_rows=bad)


# ---------------------------------------------------------------- the atomic write


def test_the_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / POSTMORTEM_FILE
    write_atomically(target, {"reason": "exception", "rows": list(range(5))})
    write_atomically(target, {"reason": "sigterm"})
    assert json.loads(target.read_text()) == {"reason": "sigterm"}
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / POSTMORTEM_FILE
    target.mkdir()  # a folder in the way: os.replace fails after the temporary file was written
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        write_atomically(target, {"reason": "exception"})
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [POSTMORTEM_FILE]
    with pytest.raises(ValueError):  # NaN is not JSON: nothing is written at all
        write_atomically(tmp_path / "other.json", {"value": float("nan")})
    assert not (tmp_path / "other.json").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- ruledsl postmortem


@trl_run
def test_the_cli_shows_a_real_postmortem_from_the_output_dir(raised):
    output, _, _ = raised
    result = ruledsl("postmortem", str(output))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"Postmortem of run {output.name} (trainer sft)" in text
    assert "ended by:  exception RuntimeError: user callback failed at step 3" in text
    assert "at step:   3" in text
    assert 'raise RuntimeError(f"user callback failed at step {state.global_step}")' in text
    assert "Open alert episodes: 0" in text
    assert "Last 2 rows read:" in text and any(line.split()[:3] == ["step", "2", "3"] for line in text.splitlines())
    assert any(line.split()[0] == "loss" for line in text.splitlines() if line.strip())
    assert "Coverage:" in text and "trl 1." in text


@trl_run
def test_the_cli_json_is_the_file(raised):
    output, _, _ = raised
    for given in (output, output / "diagnostics", output / "diagnostics" / POSTMORTEM_FILE):
        result = ruledsl("postmortem", str(given), "--format", "json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == postmortem_of(output)


def test_the_cli_refuses_what_is_not_a_postmortem(tmp_path):
    cases = {
        "missing": (tmp_path / "nowhere", "nowhere: no such file or directory"),
        "folder": (tmp_path, f"no {POSTMORTEM_FILE} in it nor in"),
    }
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "reason": "exception",\n  "last_step": \n}\n')
    cases["syntax"] = (broken, "broken.json:4:1: not valid JSON (Expecting value)")
    shapes = {
        "list.json": ("[1, 2]", "not a ruledsl postmortem: the file holds a list, not an object"),
        "no_reason.json": ('{"schema_version": 1}', "no 'reason' field"),
        "rows.json": ('{"schema_version": 1, "reason": "sigterm", "recent_rows": {"step": 1}}',
                      "'recent_rows' should be a list of rows, not an object"),
        "row.json": ('{"schema_version": 1, "reason": "sigterm", "recent_rows": [3]}',
                     "'recent_rows' item 1 should be an object, not a number"),
        "newer.json": ('{"schema_version": 99, "reason": "sigterm"}', "newer than this ruledsl reads"),
    }
    for name, (content, message) in shapes.items():
        (tmp_path / name).write_text(content)
        cases[name] = (tmp_path / name, message)
    (tmp_path / "latin1.json").write_bytes(b'{"reason": "\xe9"}')
    cases["latin1"] = (tmp_path / "latin1.json", "not UTF-8 text")
    for label, (path, message) in cases.items():
        result = ruledsl("postmortem", str(path))
        assert result.returncode == 2, label
        assert result.stderr.startswith(f"error: {path}") and message in result.stderr, (label, result.stderr)
        assert "Traceback" not in result.stderr, label
