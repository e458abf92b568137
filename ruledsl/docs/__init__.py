"""The contributor's grammar reference, generated from grammar/ruledsl.lark.

    render_lark()               the grammar text itself
    render_markdown()           (grammar.md text, {diagram file name: SVG})
    render_printed_markdown()   grammar.md without its diagrams, for stdout (it links no file)
    render_html()               one self-contained page, diagrams inline
    write_markdown(directory)   grammar.md + diagrams/*.svg (what `make docs` runs)
    drift(directory)            how committed docs differ from freshly generated ones

Every function takes `grammar_path` (default: the grammar the parser uses),
which is how tests show that a changed grammar is caught.
"""

from __future__ import annotations

from pathlib import Path

from ruledsl.docs import html, markdown
from ruledsl.docs.document import Diagram, build
from ruledsl.docs.grammar_model import default_grammar_path, read_grammar

MARKDOWN_FILE = "grammar.md"
DIAGRAM_DIR = markdown.DIAGRAM_DIR

__all__ = ["render_lark", "render_markdown", "render_printed_markdown", "render_html", "write_markdown", "drift"]


def render_lark(grammar_path: Path | None = None) -> str:
    return Path(grammar_path or default_grammar_path()).read_text(encoding="utf-8")


def render_markdown(grammar_path: Path | None = None) -> tuple[str, dict[str, str]]:
    blocks = build(read_grammar(grammar_path))
    diagrams = {b.file: b.svg for b in blocks if isinstance(b, Diagram)}
    return markdown.render(blocks), dict(sorted(diagrams.items()))


def render_printed_markdown(grammar_path: Path | None = None) -> str:
    """grammar.md as printed to stdout: no file is written beside it, so no diagram is linked
    (an image link to diagrams/*.svg would be broken wherever the text is saved); a note says
    how to get them."""
    return markdown.render(markdown.without_diagrams(build(read_grammar(grammar_path))))


def render_html(grammar_path: Path | None = None) -> str:
    return html.render(build(read_grammar(grammar_path)))


def write_markdown(directory: Path, grammar_path: Path | None = None) -> list[Path]:
    """Write grammar.md and diagrams/; diagrams no longer generated are removed. Returns what was written."""
    text, diagrams = render_markdown(grammar_path)
    directory = Path(directory)
    diagram_dir = directory / DIAGRAM_DIR
    diagram_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(diagram_dir.glob("*.svg")):
        if stale.name not in diagrams:
            stale.unlink()
    written = [directory / MARKDOWN_FILE]
    written[0].write_text(text, encoding="utf-8", newline="\n")
    for name, svg in diagrams.items():
        path = diagram_dir / name
        path.write_text(svg, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def drift(directory: Path, grammar_path: Path | None = None) -> list[str]:
    """One line per file under `directory` that differs from what the grammar generates now."""
    text, diagrams = render_markdown(grammar_path)
    directory = Path(directory)
    expected = {MARKDOWN_FILE: text} | {f"{DIAGRAM_DIR}/{n}": svg for n, svg in diagrams.items()}
    problems = []
    for name, wanted in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_bytes() != wanted.encode("utf-8"):
            problems.append(f"{name}: differs from the generated version")
    committed = {f"{DIAGRAM_DIR}/{p.name}" for p in (directory / DIAGRAM_DIR).glob("*.svg")}
    problems += [f"{name}: no longer generated" for name in sorted(committed - set(expected))]
    return problems
