"""Live alerts as people read them: one line with the severity, then the message; and the
coverage lines (docs/language.md §4): which rules see their keys, which were never evaluated.

Where they go (docs/callback.md, "Where the alerts appear"): the alert blocks and the
end-of-training summary go to stderr, where the Trainer's own warnings go (transformers'
logging handler and Python's `warnings` write there; stdout holds the Trainer's per-step
dicts). How they look depends on that stream:

* a terminal: a coloured block, `🚨 [HIGH] rule at step N` on the severity's background
  and the message behind a bar of its colour;
* a terminal with `NO_COLOR` set (non-empty) or `TERM=dumb`: the icon, no ANSI code;
* anything else (a file, a pipe, a captured notebook cell): plain `[HIGH] rule at step N`
  and the message indented by four spaces, the form that greps well in a log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from ruledsl.alerts import CoverageRecord, Severity, severity_mark

# The reasons that come from the run's configuration: the rule does not run on it (shown apart)
CONFIG_REASONS = frozenset({"when_false", "config_unknown"})

LOG_LEVELS = {"low": logging.INFO, "medium": logging.WARNING, "high": logging.WARNING,
              "critical": logging.ERROR}

# How a stream gets the alerts: `console_style`
PLAIN, ICONS, COLOUR = "plain", "icons", "colour"
# The block's first line: the severity's background (SGR codes), white or black text that reads on it
BLOCK = {Severity.LOW: "97;100", Severity.MEDIUM: "30;43", Severity.HIGH: "1;97;41", Severity.CRITICAL: "1;97;45"}
BAR = {Severity.LOW: "90", Severity.MEDIUM: "33", Severity.HIGH: "31", Severity.CRITICAL: "35"}
RESET = "\x1b[0m"
INDENT = "    "


def alert_text(record: Mapping[str, Any], *, plain: bool, colour: bool = False) -> str:
    """`🚨 [HIGH] rule_name at step N` and the message indented, each of its lines (no icon when
    plain); `colour`: the head on the severity's background and the message behind a coloured bar."""
    name = str(record.get("severity", ""))
    head = f"{record.get('rule')} at step {record.get('first_step')}"
    lines = str(record.get("message")).splitlines() or [""]
    severity = _severity(name)
    if colour and not plain and severity is not None:
        bar = f"\x1b[{BAR[severity]}m▌{RESET}   "
        top = f"\x1b[{BLOCK[severity]}m {severity_mark(name, terminal=True)} {head} {RESET}"
        return "\n".join([top, *(bar + line for line in lines)])
    mark = severity_mark(name, terminal=not plain) if severity is not None else f"[{name.upper()}]"
    return "\n".join([f"{mark} {head}", *(INDENT + line for line in lines)])


def _severity(name: str) -> Severity | None:
    try:
        return Severity(name)
    except ValueError:
        return None


def is_plain(stream: TextIO) -> bool:
    """Icons only on a terminal; logs, pipes and notebooks captured to files get plain text."""
    isatty = getattr(stream, "isatty", None)
    try:
        return not (isatty is not None and isatty())
    except ValueError:  # a closed stream
        return True


def console_style(stream: TextIO) -> str:
    """PLAIN off a terminal; on one, ICONS when NO_COLOR (https://no-color.org) is set or the
    terminal is `dumb`, else COLOUR."""
    if is_plain(stream):
        return PLAIN
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return ICONS
    return COLOUR


def styled_alert(record: Mapping[str, Any], stream: TextIO) -> str:
    """The alert as `stream` should get it (console_style)."""
    style = console_style(stream)
    return alert_text(record, plain=style == PLAIN, colour=style == COLOUR)


def show(text: str, stream: TextIO) -> None:
    """`text` and a newline on `stream`, flushed. While tqdm draws a progress bar (the Trainer's,
    on stderr) the bar is cleared first and drawn again after (tqdm's own `write`), so the text
    never lands in the middle of the bar's line. tqdm is only used when already imported."""
    bars = sys.modules.get("tqdm.std")
    if bars is not None and getattr(bars.tqdm, "_instances", None):
        bars.tqdm.write(text, file=stream)
        stream.flush()
    else:
        print(text, file=stream, flush=True)


def say(text: str, logger: logging.Logger, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """`text` to the console (stdout by default) and to `logger`."""
    stream = stream if stream is not None else sys.stdout
    print(text, file=stream, flush=True)
    logger.log(level, text)


def coverage_so_far(records: Sequence[CoverageRecord], total: int) -> str:
    """`ruledsl: 7 of 9 rules see their keys; not yet: a (why), …; not on this configuration: b (why)`.

    Said after the first training row: a rule sees its keys when it is not held back by the
    configuration and each of its metrics has a key in the run (a rule still filling its
    windows, `too_short` so far, sees them)."""
    blind = _first_per_rule(r for r in records if r.reason not in CONFIG_REASONS and r.reason != "too_short")
    config = _first_per_rule(r for r in records if r.reason in CONFIG_REASONS)
    text = f"ruledsl: {total - len(blind) - len(config)} of {total} rules see their keys"
    if blind:
        text += "; not yet: " + ", ".join(f"{r.rule} ({r.detail})" for r in blind)
    if config:
        text += "; not on this configuration: " + ", ".join(f"{r.rule} ({r.detail})" for r in config)
    return text


def coverage_at_end(records: Sequence[CoverageRecord], total: int) -> str:
    """The rules never evaluated on the run, one line each with the reason; those the configuration
    kept from running apart."""
    evaluated = total - len({r.rule for r in records})
    lines = [f"ruledsl: at the end of training, {evaluated} of {total} rules were evaluated on this run"]
    lines += [f"  never evaluated: {_who(r)} ({r.reason}: {r.detail})" for r in records
              if r.reason not in CONFIG_REASONS]
    lines += [f"  not on this configuration: {_who(r)} ({r.reason}: {r.detail})" for r in records
              if r.reason in CONFIG_REASONS]
    return "\n".join(lines)


def _first_per_rule(records: Iterable[CoverageRecord]) -> list[CoverageRecord]:
    found: dict[str, CoverageRecord] = {}
    for record in records:
        found.setdefault(record.rule, record)
    return list(found.values())


def _who(record: CoverageRecord) -> str:
    return f"{record.rule} [{record.metric}]" if record.metric is not None else record.rule
