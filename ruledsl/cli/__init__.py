"""The `ruledsl` command line: one module per command, all registered on `app`."""

from __future__ import annotations

from ruledsl.cli import audit, explain, grammar, lint, list_rules, new, postmortem, report, testing  # noqa: F401  (each module registers its command)
from ruledsl.cli.app import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    app()
