"""Blocks → one self-contained HTML page: diagrams inline as SVG, every text escaped.

The page is also well-formed XML (every tag closed), which keeps it easy to
check mechanically.
"""

from __future__ import annotations

import re
from html import escape

from ruledsl.docs.document import Block, Bullets, Code, Diagram, Heading, Paragraph, Table

STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #111; }
code, pre { font-family: monospace; background: #f4f4f4; }
pre { padding: .6rem .8rem; overflow-x: auto; }
table { border-collapse: collapse; margin: .8rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
figure { margin: .8rem 0; overflow-x: auto; }
""".strip()

_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
_ESCAPED = re.compile(r"\\([\\`*_\[\]<>|])")
_LINK = re.compile(r"\[([^\]]+)\]\(#([A-Za-z0-9_-]+)\)")


def render(blocks: list[Block]) -> str:
    title = next((b.text for b in blocks if isinstance(b, Heading)), "ruledsl grammar")
    body = "\n".join(_block(b) for b in blocks)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{escape(block.anchor)}">{inline(block.text)}</h{block.level}>'
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre><code>{escape(block.text)}</code></pre>"
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(c)}</th>" for c in block.header)
        rows = "\n".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                         for row in block.rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{inline(i)}</li>" for i in block.items) + "\n</ul>"
    if isinstance(block, Diagram):
        return f'<figure class="diagram">\n{block.linked_svg.rstrip()}\n</figure>'
    raise TypeError(block)


def inline(text: str) -> str:
    """The Markdown inline subset of the blocks: code spans and links to anchors."""
    out = []
    position = 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_links(text[position:match.start()]))
        code = match.group(2)
        if code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        out.append(f"<code>{escape(code)}</code>")
        position = match.end()
    out.append(_links(text[position:]))
    return "".join(out)


def _links(text: str) -> str:
    out = []
    position = 0
    for match in _LINK.finditer(text):
        out.append(_text(text[position:match.start()]))
        out.append(f'<a href="#{match.group(2)}">{_text(match.group(1))}</a>')
        position = match.end()
    out.append(_text(text[position:]))
    return "".join(out)


def _text(text: str) -> str:
    """Plain text: Markdown backslash escapes undone, then HTML-escaped."""
    return escape(_ESCAPED.sub(r"\1", text))
