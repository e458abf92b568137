"""The `ruledsl` command line: one module per command, all registered on `app`."""

from __future__ import annotations

from .app import app
from . import audit  # noqa: F401  (registers the command)
from . import grammar  # noqa: F401  (registers the command)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    app()
