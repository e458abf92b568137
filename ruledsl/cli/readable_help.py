"""Help texts in the words a person reads: `PATH…`, `N`, `FILE`, never Python's types.

typer (0.26 and later) shows an argument as `paths... <list[Path]>` in `--help`, and as
`{paths}...` in the usage line: the parameter's Python name and type. Every argument and
option of ruledsl declares a metavar instead (`metavar="PATH…"`); the command class here
shows an argument by its metavar alone, in the usage line too (`[PATH…]` when it may be
left out), as click itself does. tests/test_cli_frictions.py walks every command's help
and refuses a type name or a `<…>` metavar, so a new option cannot bring one back.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer
from typer.core import TyperCommand


class ReadableCommand(TyperCommand):
    """A typer command whose arguments are shown by their metavar alone."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if _is_argument(param):
                arguments.append((param.metavar or record[0], record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if _is_argument(param) and param.metavar:
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


def _is_argument(param: Any) -> bool:
    # typer carries its own copy of click: compare the kind, not the class
    return param.param_type_name == "argument"


class ReadableTyper(typer.Typer):
    """A typer application whose commands are `ReadableCommand`s unless told otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", ReadableCommand)
        return super().command(*args, **kwargs)


def choices(options: type[Enum]) -> str:
    """The metavar of an option taking one of an Enum's values: `table|json|markdown`."""
    return "|".join(str(option.value) for option in options)
