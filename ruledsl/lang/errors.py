"""Errors as values.

Every problem ruledsl finds in a rule is a `Diagnostic`: a code, a sentence a
rule author understands, where it is, and a hint. The exceptions below only
carry diagnostics; they never assemble messages of their own, so the CLI, the
linter and the Python API all render the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of source text; lines and columns are 1-based, offsets 0-based."""

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int

    @classmethod
    def at(cls, text: str, offset: int, length: int = 1) -> Span:
        """The span of `length` characters of `text` starting at `offset`."""
        offset = max(0, min(offset, len(text)))
        end = min(len(text), offset + max(length, 0))
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        end_line = text.count("\n", 0, end) + 1
        end_column = end - (text.rfind("\n", 0, end) + 1) + 1
        return cls(line, column, end_line, end_column, offset, end)


@dataclass(frozen=True)
class Diagnostic:
    """One problem: `code` is stable (documented), `message` is for people."""

    code: str
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"
    field: str | None = None  # the rule field it concerns, e.g. "condition"


def _printable(line: str) -> str:
    """Control characters would garble a terminal: show them escaped, one cell each."""
    return "".join(ch if ch.isprintable() or ch == " " else "?" for ch in line)


def render_snippet(text: str, span: Span) -> str:
    """The offending line of `text` and a caret line under `span`."""
    lines = text.split("\n") or [""]
    line_text = lines[min(span.line, len(lines)) - 1]
    start = span.column - 1
    width = span.end_column - span.column if span.end_line == span.line else len(line_text) - start
    # Long lines (hostile input) are cut around the error so the caret stays visible.
    window_start = max(0, start - 60)
    shown = line_text[window_start : window_start + 120]
    prefix = "…" if window_start else ""
    suffix = "…" if window_start + 120 < len(line_text) else ""
    caret_column = len(prefix) + start - window_start
    caret = " " * caret_column + "^" * max(1, min(width, 120 - (start - window_start)))
    return f"  {prefix}{_printable(shown)}{suffix}\n  {caret}"


class RuleSyntaxError(ValueError):
    """A condition, inline alert or template that cannot be read.

    Carries a `Diagnostic` and the source text; `line`, `column`, `offending`,
    `expected` (words) and `hint` are there for programs, `str()` for people.
    """

    def __init__(self, diagnostic: Diagnostic, source: str, expected: tuple[str, ...] = ()):
        self.diagnostic = diagnostic
        self.source = source
        self.expected = expected
        super().__init__(self._render())

    @property
    def span(self) -> Span:
        assert self.diagnostic.span is not None
        return self.diagnostic.span

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    @property
    def code(self) -> str:
        return self.diagnostic.code

    @property
    def hint(self) -> str | None:
        return self.diagnostic.hint

    @property
    def offending(self) -> str:
        return self.source[self.span.start : self.span.end]

    def _render(self) -> str:
        d, span = self.diagnostic, self.span
        text = f"line {span.line}, column {span.column}: {d.message}\n"
        text += render_snippet(self.source, span)
        if d.hint:
            text += f"\n  hint: {d.hint}"
        return text


@dataclass
class RuleValidationError(ValueError):
    """A rule mapping with one or more problems; all of them, not just the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    rule_name: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        who = f"rule {self.rule_name!r}" if self.rule_name else "rule"
        parts = [f"{who}: {len(self.diagnostics)} problem(s)"]
        for d in self.diagnostics:
            where = f"{d.field}: " if d.field else ""
            if d.span is not None and d.field:
                where = f"{d.field} (column {d.span.column}): "
            line = f"  [{d.code}] {where}{d.message}"
            if d.hint:
                line += f" (hint: {d.hint})"
            parts.append(line)
        return "\n".join(parts)


class FrameError(ValueError):
    """A log frame that the engines cannot read (missing `step`, wrong types, …)."""
