"""Blocks → GitHub-flavoured Markdown; diagrams are linked as diagrams/<name>.svg."""

from __future__ import annotations

from ruledsl.docs.document import Block, Bullets, Code, Diagram, Heading, Paragraph, Table

DIAGRAM_DIR = "diagrams"
NO_DIAGRAMS = Paragraph(
    "This copy is printed without its railroad diagrams, which are SVG files of their own: "
    "`ruledsl grammar --format markdown --output DIR` writes `DIR/grammar.md` with `DIR/diagrams/`, "
    "and `ruledsl grammar --format html --output FILE` one page with the diagrams inline.")


def render(blocks: list[Block]) -> str:
    parts = [_block(b) for b in blocks]
    return "\n\n".join(parts) + "\n"


def without_diagrams(blocks: list[Block]) -> list[Block]:
    """`blocks` without their diagrams, `NO_DIAGRAMS` after the opening paragraph saying so."""
    kept = [b for b in blocks if not isinstance(b, Diagram)]
    first_paragraph = next((i for i, b in enumerate(kept) if isinstance(b, Paragraph)), len(kept) - 1)
    return [*kept[:first_paragraph + 1], NO_DIAGRAMS, *kept[first_paragraph + 1:]]


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f'<a id="{block.anchor}"></a>\n\n{"#" * block.level} {block.text}'
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    if isinstance(block, Table):
        lines = [_row(block.header), "|" + "---|" * len(block.header)]
        lines += [_row(row) for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Diagram):
        return f"![{block.title}]({DIAGRAM_DIR}/{block.file})"
    raise TypeError(block)


def _row(cells: tuple[str, ...]) -> str:
    # A `|` would end the cell, even inside a code span.
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
