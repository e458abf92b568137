"""Run the `ruledsl` command (in-process by default, or the real console script), and read its JSON records."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess as _subprocess
import sys
import traceback
from pathlib import Path

from typer.testing import CliRunner

from ruledsl.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "runs"
ANY_LOSS = "all: loss > -1e30 -> low: loss seen"  # fires at every row with a loss: n_evals counts them


def ruledsl(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            subprocess: bool = False) -> _subprocess.CompletedProcess:
    """The command as users run it: no colour, stdout and stderr captured apart, the exit status.

    By default in this process, through typer's CliRunner: the same commands, options, exit codes
    and output streams (stdout and stderr are not terminals), in milliseconds instead of the second
    a fresh interpreter takes. An exception the command lets escape exits 1 with its traceback on
    stderr, as it would in a real process. `subprocess=True` starts the real command instead
    (`python -m ruledsl`) for what only a process gives: a fresh interpreter, its own stdin.
    """
    variables = {"NO_COLOR": "1", **(env or {})}
    if subprocess:
        command = [sys.executable, "-m", "ruledsl", *args]
        return _subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=180,
                               env={**os.environ, **variables})
    with _working_directory(cwd):
        result = _runner().invoke(app, list(args), env=variables, prog_name="ruledsl")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return _subprocess.CompletedProcess(["ruledsl", *args], result.exit_code, result.stdout, stderr)


def _runner() -> CliRunner:
    """A runner that keeps stderr apart from stdout (result.stderr).

    Typer >= 0.26 carries its own copy of click (8.3's code): its runner, like click >= 8.2's,
    always keeps the two apart and takes no `mix_stderr`. Older ones mix them unless told.
    """
    try:
        return CliRunner(mix_stderr=False)  # typer on click < 8.2
    except TypeError:  # no such argument: the streams are always apart
        return CliRunner()


@contextlib.contextmanager
def _working_directory(path: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def audit_json(*args: str, env: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """The records of `ruledsl audit … --format json` (which must succeed, or exit 3 exactly when an
    input was skipped or only partly read, as it says) and its stderr."""
    result = ruledsl("audit", *args, "--format", "json", env=env)
    partly_read = "skipped or only partly read" in result.stderr
    assert result.returncode == (3 if partly_read else 0), result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result.stderr


def episodes(records: list[dict]) -> set[tuple]:
    return {(r["run"], r["rule"], r["first_step"], r["last_step"], r["n_evals"]) for r in records}
