"""Live alerts as people read them: one line with the severity, then the message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from ruledsl.alerts import severity_mark

LOG_LEVELS = {"low": logging.INFO, "medium": logging.WARNING, "high": logging.WARNING,
              "critical": logging.ERROR}


def alert_text(record: Mapping[str, Any], *, plain: bool) -> str:
    """`🚨 [HIGH] rule_name at step N` and the indented message (no icon when plain)."""
    mark = severity_mark(str(record.get("severity", "")), terminal=not plain)
    return f"{mark} {record.get('rule')} at step {record.get('first_step')}\n    {record.get('message')}"


def is_plain(stream: TextIO) -> bool:
    """Icons only on a terminal; logs, pipes and notebooks captured to files get plain text."""
    isatty = getattr(stream, "isatty", None)
    try:
        return not (isatty is not None and isatty())
    except ValueError:  # a closed stream
        return True


def say(text: str, logger: logging.Logger, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """`text` to the console (stdout by default) and to `logger`."""
    stream = stream if stream is not None else sys.stdout
    print(text, file=stream, flush=True)
    logger.log(level, text)
