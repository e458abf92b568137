"""`ruledsl grammar`: the contributor's grammar reference, generated from grammar/ruledsl.lark."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from lark.exceptions import GrammarError

from ruledsl import docs
from ruledsl.cli.app import app, fail, terminal_text
from ruledsl.cli.readable_help import choices
from ruledsl.docs.document import DocsContentError
from ruledsl.docs.grammar_model import GrammarShapeError


class DocFormat(str, Enum):
    markdown = "markdown"
    html = "html"
    lark = "lark"


FORMATS = choices(DocFormat)


@app.command("grammar")
def grammar(
    output_format: DocFormat = typer.Option(
        DocFormat.markdown, "--format", metavar=FORMATS,
        help="markdown (grammar.md; with --output DIR also the SVG diagrams in DIR/diagrams/), "
        "html (one self-contained page, diagrams inline) or lark (the grammar file itself)."),
    output: Path | None = typer.Option(
        None, "--output", metavar="PATH",
        help="markdown: a directory that receives grammar.md and diagrams/*.svg (stale diagrams are "
        "removed). html, lark: a file. Without it the text goes to stdout (markdown without its "
        "diagrams, which are files of their own)."),
) -> None:
    """Generate the grammar reference from grammar/ruledsl.lark.

    Every construct with its railroad diagram, syntax, examples and meaning, the error codes of
    conditions, and every rule and terminal of the grammar.

    Examples:

      ruledsl grammar --format markdown --output docs   (what `make docs` runs)

      ruledsl grammar --format html --output grammar.html

      ruledsl grammar --format lark
    """
    try:
        if output_format is DocFormat.markdown and output is not None:
            _write_markdown(output)
            return
        if output_format is DocFormat.markdown:
            text = docs.render_printed_markdown()
        elif output_format is DocFormat.html:
            text = docs.render_html()
        else:
            text = docs.render_lark()
    except (DocsContentError, GrammarShapeError, GrammarError, FileNotFoundError) as exc:
        fail(str(exc))
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.is_dir():
        fail(f"--output {output} is a directory; for --format {output_format.value} give a file")
    try:
        output.write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    _say(f"wrote {output}")


def _write_markdown(directory: Path) -> None:
    if (directory.exists() and not directory.is_dir()) or directory.suffix == ".md":
        fail(f"--output {directory}: for --format markdown give a directory "
             "(it receives grammar.md and diagrams/)")
    try:
        written = docs.write_markdown(directory)
    except OSError as exc:
        fail(f"cannot write to {directory}: {exc.strerror or exc}")
    _say(f"wrote {written[0]} and {len(written) - 1} diagrams in {directory / docs.DIAGRAM_DIR}")


def _say(what: str) -> None:
    """What was written, on stderr: stdout is the reference itself when there is no --output."""
    typer.echo(terminal_text(what), err=True)
