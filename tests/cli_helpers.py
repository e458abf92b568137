"""Run the real `ruledsl` command in a subprocess, and read its JSON records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "runs"
ANY_LOSS = "all: loss > -1e30 -> low: loss seen"  # fires at every row with a loss: n_evals counts them


def ruledsl(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The command as users run it: a fresh process, no colour, output captured."""
    command = [sys.executable, "-m", "ruledsl", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=180,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def audit_json(*args: str, env: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """The records of `ruledsl audit … --format json` (which must succeed) and its stderr."""
    result = ruledsl("audit", *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result.stderr


def episodes(records: list[dict]) -> set[tuple]:
    return {(r["run"], r["rule"], r["first_step"], r["last_step"], r["n_evals"]) for r in records}
