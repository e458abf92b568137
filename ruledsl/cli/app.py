"""The typer application and what every command shares: exit codes and usage errors."""

from __future__ import annotations

from typing import NoReturn

import typer

from ruledsl import __version__

app = typer.Typer(
    help="Declarative rules that catch broken TRL post-training runs.\n\n"
    "Example: ruledsl audit examples/runs --fail-on high",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
)

USAGE_ERROR = 2


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
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)
