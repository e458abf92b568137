"""The typer application and what every command shares: exit codes and usage errors."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import typer

from ruledsl import __version__
from ruledsl.cli.readable_help import ReadableTyper
from ruledsl.report.text import printable

app = ReadableTyper(
    help="Declarative rules that catch broken TRL post-training runs.\n\n"
    "Example: ruledsl audit examples/runs --fail-on high",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
)

# Exit statuses (`ruledsl audit --help` and docs/report.md say what each means to the audit).
CHECK_FAILED = 1  # a check asked for failed: --fail-on, --strict-coverage, --strict-inputs
USAGE_ERROR = 2  # nothing done, or nothing written that can be trusted
INPUTS_INCOMPLETE = 3  # done, but without some of what was asked for (an input skipped or partly read)
INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports a command stopped by Ctrl-C
TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a command stopped by SIGTERM


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ruledsl {__version__}")
        raise typer.Exit()


@app.callback()
def _commands(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print ruledsl's version and exit."),
) -> None:
    """Declarative rules that catch broken TRL post-training runs."""


def fail(message: str) -> NoReturn:
    """A usage error: message on stderr, exit status 2."""
    typer.echo(f"error: {terminal_text(message)}", err=True)
    raise typer.Exit(USAGE_ERROR)


def terminal_text(message: str) -> str:
    """A message for stderr with its control characters shown as escapes (a path or a run
    id can hold an escape sequence), its line breaks kept (a syntax error's caret line)."""
    return "\n".join(printable(line) for line in message.split("\n"))


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread where it was when the signal came."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside: SIGTERM raises `Terminated` (exit status 143) instead of killing the
    process, so that `finally` blocks and atexit handlers remove temporary files, as after
    Ctrl-C. A second SIGTERM during that clean-up is ignored (SIGKILL still kills). Python
    runs the handler between two bytecodes of the main thread: a polars query already
    running finishes first. The previous handler is restored on the way out."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread can set one
        yield
        return

    def unwind(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(TERMINATED)

    previous = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_rule_paths(paths: list[Path]) -> None:
    """Each --rules path exists, and a folder holds a rule file: nothing is left out without a word."""
    from ruledsl.model.loader import RULE_SUFFIXES, discover  # only the commands taking --rules need it

    for path in paths:
        if not path.exists():
            fail(f"--rules {path}: no such file or directory")
        if path.is_dir() and not discover([path]):
            fail(f"--rules {path}: no rule file ({', '.join('*' + s for s in RULE_SUFFIXES)}) found in it")
