"""A plain progress line on stderr while logs are read: shown only when reading
takes more than a moment, and only on a terminal (or when RULEDSL_PROGRESS=1),
so it never mixes with a report on stdout or with redirected warnings."""

from __future__ import annotations

import os
import sys
import time

DELAY_SECONDS = 0.5  # quicker reads show nothing
FORCE_VARIABLE = "RULEDSL_PROGRESS"
BAR = 24  # characters


class ProgressLine:
    def __init__(self, label: str, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.enabled = os.environ.get(FORCE_VARIABLE) == "1" or \
            (os.environ.get(FORCE_VARIABLE) != "0" and self.stream.isatty())
        self.started = time.monotonic()
        self.shown = False
        self.width = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or (not self.shown and time.monotonic() - self.started < DELAY_SECONDS):
            return
        filled = BAR * done // max(total, 1)
        line = f"\r{self.label} [{'#' * filled}{'.' * (BAR - filled)}] {done}/{total}"
        self.width = max(self.width, len(line))
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False
