"""The typer application and what every command shares: exit codes and usage errors."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Declarative rules that catch broken TRL post-training runs.\n\n"
    "Example: ruledsl audit examples/runs --fail-on high",
    no_args_is_help=True, add_completion=False, rich_markup_mode=None,
)

USAGE_ERROR = 2


@app.callback()
def _commands() -> None:
    """Declarative rules that catch broken TRL post-training runs."""


def fail(message: str) -> None:
    """A usage error: message on stderr, exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)
