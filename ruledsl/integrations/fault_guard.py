"""Faults in live monitoring never reach the training loop.

A `Fuse` runs the parts of the callback (the rules, each file, each tracker)
and catches what they raise. The first fault of a part is reported once, with
what failed and why, and that part is switched off; everything else goes on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("ruledsl.callback")
# A library logs only where the application routes it: without this, Python's last-resort handler
# would print every alert a second time on stderr (the callback already writes to the console).
logging.getLogger("ruledsl").addHandler(logging.NullHandler())


class Fuse:
    def __init__(self) -> None:
        self.blown: dict[str, str] = {}  # part → why it was switched off

    def is_on(self, part: str) -> bool:
        return part not in self.blown

    def run(self, part: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`action(*args, **kwargs)`, or None when `part` is off or fails now."""
        if part in self.blown:
            return None
        try:
            return action(*args, **kwargs)
        except Exception as exc:  # a fault here must never stop training
            self.blow(part, f"{type(exc).__name__}: {exc}", exc)
            return None

    def blow(self, part: str, why: str, exc: BaseException | None = None) -> None:
        """Switch `part` off and say so once, with what failed and why."""
        if part in self.blown:
            return
        self.blown[part] = why
        text = f"ruledsl: {part} failed ({why}); {part} is switched off for the rest of this run, training goes on"
        logger.warning(text, exc_info=exc)
        print(text, file=sys.stderr, flush=True)
