"""Running the real `ruledsl` command in a subprocess, as users do."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruledsl(*args: str, cwd: Path = ROOT, timeout: int = 180) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ruledsl", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})
