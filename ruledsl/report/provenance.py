"""What a reader needs to trust a report: which ruledsl wrote it, from which command, when,
from which inputs and with which rules. The HTML and markdown reports open with it."""

from __future__ import annotations

import datetime
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Provenance:
    version: str
    command: str  # as typed, quoted for a shell
    time: str  # ISO 8601, UTC, to the second
    inputs: list[str] = field(default_factory=list)
    rule_sources: list[str] = field(default_factory=list)  # "builtin library", rule folders, inline alerts


def provenance(inputs: Sequence[Path | str], rule_paths: Sequence[Path | str] = (), builtin: bool = True,
               inline_alerts: int = 0, argv: Sequence[str] | None = None, extra_rules: Sequence[str] = (),
               command: Sequence[str] = ()) -> Provenance:
    """The provenance of a report made now by this process (`argv`: sys.argv by default, when this
    process is the ruledsl command; else `command`, the command as its caller describes it)."""
    from ruledsl import __version__

    words = list(argv) if argv is not None else command_words(command)
    sources = (["builtin library"] if builtin else []) + [str(p) for p in rule_paths] + list(extra_rules)
    if inline_alerts:
        sources.append(f"{inline_alerts} inline alert(s) (--alert)")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return Provenance(__version__, shlex.join(words), now.isoformat().replace("+00:00", "Z"),
                      [str(p) for p in inputs], sources or ["none"])


def command_words(fallback: Sequence[str] = ()) -> list[str]:
    """The command line: sys.argv when this process is the `ruledsl` command (its console script
    or `python -m ruledsl`); otherwise (the command called from Python, e.g. by typer's test
    runner, whose sys.argv is its host's) `fallback`, the command as its caller describes it."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if program.name == "ruledsl" or (program.name == "__main__.py" and program.parent.name == "ruledsl"):
        return ["ruledsl", *sys.argv[1:]]
    return list(fallback) or ["(called from Python)"]
