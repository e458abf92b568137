"""Railroad (syntax) diagrams as SVG, laid out from a grammar expression.

A small deterministic renderer: every size is a whole number of pixels,
computed from character counts (monospace text, so no font is measured or
downloaded), and the SVG text is built in a fixed order. The same grammar
always gives the same bytes, which is what lets a test compare the committed
diagrams with fresh ones.

Layout model: every piece has a width and the room it needs above (`up`) and
below (`down`) the track it sits on; `draw(x, y)` puts its entry at (x, y) and
its exit at (x + width, y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Protocol

from ruledsl.docs import grammar_model as g

CHAR_WIDTH = 8  # px per character of 13px monospace text
BOX_HEIGHT = 22
BOX_PADDING = 10  # text to box edge, each side
GAP = 10  # track between two items of a sequence
ARC = 10  # radius of the curves where tracks split and join
ROW_GAP = 8  # vertical room between two stacked tracks
MARGIN = 10
END_MARK = 20  # the start and end bars with their lead-in track

Link = Callable[[str], str] | None

STROKE = 'fill="none" stroke="#333" stroke-width="1.5"'
TEXT = 'font-family="monospace" font-size="13" text-anchor="middle" fill="#111"'


class _Canvas:
    def __init__(self) -> None:
        self.tracks: list[str] = []
        self.boxes: list[str] = []

    def track(self, d: str) -> None:
        self.tracks.append(f'<path d="{d}"/>')

    def line(self, x1: int, y: int, x2: int) -> None:
        if x2 != x1:
            self.track(f"M{x1} {y}H{x2}")


# ---------------------------------------------------------------- pieces


class _Piece(Protocol):
    """What a diagram is built of: a size around its track (up and down from it) and a drawing."""

    @property
    def width(self) -> int: ...

    @property
    def up(self) -> int: ...

    @property
    def down(self) -> int: ...

    def draw(self, c: _Canvas, x: int, y: int) -> None: ...


@dataclass
class _Box:
    text: str
    terminal: bool  # rounded box for what is typed, square box for a rule
    href: str | None = None  # where a rule's box links to (HTML page), None for no link

    @property
    def width(self) -> int:
        return len(self.text) * CHAR_WIDTH + 2 * BOX_PADDING

    up = down = BOX_HEIGHT // 2

    def draw(self, c: _Canvas, x: int, y: int) -> None:
        kind = "terminal" if self.terminal else "nonterminal"
        radius = BOX_HEIGHT // 2 if self.terminal else 0
        fill = "#e8f0ff" if self.terminal else "#fff6dd"
        box = (
            f'<g class="{kind}"><rect x="{x}" y="{y - self.up}" width="{self.width}" height="{BOX_HEIGHT}" '
            f'rx="{radius}" fill="{fill}" stroke="#333" stroke-width="1.5"/>'
            f'<text x="{x + self.width // 2}" y="{y + 4}" {TEXT}>{escape(self.text)}</text></g>'
        )
        if self.href is not None:
            box = f'<a href="{escape(self.href)}">{box}</a>'
        c.boxes.append(box)


@dataclass
class _Skip:
    width = up = down = 0

    def draw(self, c: _Canvas, x: int, y: int) -> None:
        return None


@dataclass
class _Sequence:
    items: list[_Piece]

    @property
    def width(self) -> int:
        return sum(i.width for i in self.items) + GAP * (len(self.items) - 1)

    @property
    def up(self) -> int:
        return max(i.up for i in self.items)

    @property
    def down(self) -> int:
        return max(i.down for i in self.items)

    def draw(self, c: _Canvas, x: int, y: int) -> None:
        for index, item in enumerate(self.items):
            if index:
                c.line(x, y, x + GAP)
                x += GAP
            item.draw(c, x, y)
            x += item.width


@dataclass
class _Choice:
    """Options stacked around the main one: those before `main` above it, the rest below."""

    options: list[_Piece]
    main: int = 0

    @property
    def inner(self) -> int:
        return max(o.width for o in self.options)

    @property
    def width(self) -> int:
        return self.inner + 4 * ARC

    def offsets(self) -> list[int]:
        """Each option's track, relative to the main track (negative: above)."""
        offsets = [0] * len(self.options)
        for i in range(self.main + 1, len(self.options)):
            prev, cur = self.options[i - 1], self.options[i]
            offsets[i] = offsets[i - 1] + max(2 * ARC, prev.down + ROW_GAP + cur.up)
        for i in range(self.main - 1, -1, -1):
            below, cur = self.options[i + 1], self.options[i]
            offsets[i] = offsets[i + 1] - max(2 * ARC, below.up + ROW_GAP + cur.down)
        return offsets

    @property
    def up(self) -> int:
        return max(o.up - dy for o, dy in zip(self.options, self.offsets()))

    @property
    def down(self) -> int:
        return max(o.down + dy for o, dy in zip(self.options, self.offsets()))

    def draw(self, c: _Canvas, x: int, y: int) -> None:
        end = x + self.width
        for option, dy in zip(self.options, self.offsets()):
            left, right = x + 2 * ARC, x + 2 * ARC + self.inner
            if dy == 0:
                c.line(x, y, left)
                c.line(right, y, end)
            else:
                s = 1 if dy > 0 else -1  # curve down (1) or up (-1)
                out, back = (1, 0) if dy > 0 else (0, 1)  # arc sweep flags
                c.track(f"M{x} {y}A{ARC} {ARC} 0 0 {out} {x + ARC} {y + s * ARC}"
                        f"V{y + dy - s * ARC}A{ARC} {ARC} 0 0 {back} {left} {y + dy}")
                c.track(f"M{right} {y + dy}A{ARC} {ARC} 0 0 {back} {end - ARC} {y + dy - s * ARC}"
                        f"V{y + s * ARC}A{ARC} {ARC} 0 0 {out} {end} {y}")
            option.draw(c, left, y + dy)
            c.line(left + option.width, y + dy, right)


@dataclass
class _Loop:
    """One or more `item`, going back under it (through `separator`, if any) to repeat."""

    item: _Piece
    separator: _Piece

    @property
    def inner(self) -> int:
        return max(self.item.width, self.separator.width)

    @property
    def width(self) -> int:
        return self.inner + 2 * ARC

    @property
    def back(self) -> int:
        return max(2 * ARC, self.item.down + ROW_GAP + self.separator.up)

    @property
    def up(self) -> int:
        return self.item.up

    @property
    def down(self) -> int:
        return self.back + self.separator.down

    def draw(self, c: _Canvas, x: int, y: int) -> None:
        left, right, low = x + ARC, x + ARC + self.inner, y + self.back
        c.line(x, y, left)
        self.item.draw(c, left, y)
        c.line(left + self.item.width, y, x + self.width)
        # the way back runs right to left under the item
        c.track(f"M{right} {y}A{ARC} {ARC} 0 0 1 {right + ARC} {y + ARC}V{low - ARC}"
                f"A{ARC} {ARC} 0 0 1 {right} {low}")
        sep_x = left + (self.inner - self.separator.width) // 2
        c.line(right, low, sep_x + self.separator.width)
        self.separator.draw(c, sep_x, low)
        c.line(sep_x, low, left)
        c.track(f"M{left} {low}A{ARC} {ARC} 0 0 1 {x} {low - ARC}V{y + ARC}"
                f"A{ARC} {ARC} 0 0 1 {left} {y}")


# ---------------------------------------------------------------- expressions → pieces


def _piece(expr: g.Expr, link: Link) -> _Piece:
    if isinstance(expr, g.Token):
        return _Box(expr.text, terminal=True)
    if isinstance(expr, g.Ref):
        return _Box(expr.name, terminal=False, href=link(expr.name) if link else None)
    if isinstance(expr, g.Sequence):
        return _sequence(list(expr.items), link)
    if isinstance(expr, g.Choice):
        return _Choice([_piece(o, link) for o in expr.options])
    if isinstance(expr, g.Optional):
        return _Choice([_Skip(), _piece(expr.item, link)], main=1)
    if isinstance(expr, g.Repeat):
        loop = _Loop(_piece(expr.item, link), _Skip())
        return loop if expr.at_least_one else _Choice([_Skip(), loop], main=1)
    raise TypeError(expr)


def _sequence(items: list[g.Expr], link: Link) -> _Piece:
    """Items in a row; `a (sep a)*` is drawn as one loop over `a` through `sep`."""
    pieces: list[_Piece] = []
    index = 0
    while index < len(items):
        item = items[index]
        following = items[index + 1] if index + 1 < len(items) else None
        separator = _separated_repeat(item, following)
        if separator is not None:
            pieces.append(_Loop(_piece(item, link), _piece(separator, link)))
            index += 2
        else:
            pieces.append(_piece(item, link))
            index += 1
    return pieces[0] if len(pieces) == 1 else _Sequence(pieces)


def _separated_repeat(item: g.Expr, following: g.Expr | None) -> g.Expr | None:
    """The separator when `following` is `(sep item)*`, else None."""
    if not (isinstance(following, g.Repeat) and not following.at_least_one):
        return None
    body = following.item
    if isinstance(body, g.Sequence) and len(body.items) == 2 and body.items[1] == item:
        return body.items[0]
    return None


# ---------------------------------------------------------------- the diagram


def _fmt(value: int) -> str:
    return str(int(value))


def diagram(expr: g.Expr, title: str, link: Link = None) -> str:
    """A standalone SVG document (no XML declaration, so it also inlines into HTML).

    `link(rule name)` gives the target of a rule's box; the HTML page links boxes to the
    rule's section, the .svg files shown as images link nowhere.
    """
    body = _piece(expr, link)
    width = 2 * MARGIN + 2 * END_MARK + body.width
    height = 2 * MARGIN + max(body.up, BOX_HEIGHT // 2) + max(body.down, BOX_HEIGHT // 2)
    y = MARGIN + max(body.up, BOX_HEIGHT // 2)
    canvas = _Canvas()
    start, stop = MARGIN, MARGIN + END_MARK + body.width
    canvas.track(f"M{start} {y - 8}V{y + 8}M{start + 4} {y - 8}V{y + 8}M{start + 4} {y}H{start + END_MARK}")
    body.draw(canvas, start + END_MARK, y)
    end = stop + END_MARK
    canvas.track(f"M{stop} {y}H{end - 4}M{end - 4} {y - 8}V{y + 8}M{end} {y - 8}V{y + 8}")
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="railroad" width="{_fmt(width)}" '
        f'height="{_fmt(height)}" viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{_fmt(width)}" height="{_fmt(height)}" fill="#ffffff"/>',
        f"<g {STROKE}>",
        *canvas.tracks,
        "</g>",
        *canvas.boxes,
        "</svg>",
    ]
    return "\n".join(lines) + "\n"
