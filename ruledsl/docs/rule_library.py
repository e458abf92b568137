"""The rule library for people: a terminal table, JSON records and a Markdown page.

`ruledsl list` prints all three; tools/update_docs.py writes docs/rules.md with `library_page()`,
which is `markdown()` over the builtin rules/, so the committed page is what `ruledsl list --format
markdown` prints. Nothing here knows which trainers or rules exist: sections, index lines and
column widths come from the rules given, so a new trainer's rules need no change here.

Rule files are text from anyone: before it reaches a terminal or a page, control characters are
written as escapes (`printable`, as the audit table does), Markdown-special characters are made
inert (`plain`) and terminal cells are cut to fit with "…".
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ruledsl.alerts import SEVERITIES, severity_rank
from ruledsl.docs import markdown as markdown_format
from ruledsl.docs.document import Block, Bullets, Heading, Paragraph, Table, code_span, plain
from ruledsl.model.loader import builtin_rules_dir, load_rules
from ruledsl.model.rule import ALL_TRAINERS, Rule
from ruledsl.report.table import printable

TABLE_WIDTH = 100  # columns, when the output is not a terminal (a pipe, a file, a test)
GAP = "  "
ELLIPSIS = "…"
WILDCARD_TRAINERS = (ALL_TRAINERS, "common")  # what `--trainer` accepts for "the rules of every trainer"

TABLE_HEADER = ("SEVERITY", "RULE", "TRAINERS", "METRIC", "CONDITION")
# What each column keeps while the others are cut: the columns are cut in turn, the one with the
# most above its floor first. A rule's name is what `ruledsl explain` takes, so it is kept whole
# longest; the condition says most about a rule, the trainers least (`--trainer` picks them).
COLUMN_FLOORS = (8, 36, 8, 12, 30)

# A sentence ends at . ! or ? followed by space and what starts a sentence; "i.e. that" does not.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`'\"(])")
URL = re.compile(r"https?://[^\s<>]+")

DOCS_INTRO = (
    "Generated from the rule files under `rules/` by `tools/update_docs.py` (`make docs`): do not edit "
    "by hand. Change a rule file and regenerate; `make docs-check` fails while this page and the rule "
    "files disagree. In a terminal, `ruledsl list` prints the same library (`--trainer ID` for the "
    "rules one trainer runs, `--format json` for scripts)."
)


# ---------------------------------------------------------------- what is shown of a rule


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """Worst severity first, then by name."""
    return sorted(rules, key=lambda rule: (-severity_rank(rule.severity), rule.name))


def one_line(text: str) -> str:
    return " ".join(text.split())


def summary(rule: Rule) -> str:
    """The first sentence of the rule's description, on one line ("" without a description)."""
    if not rule.description:
        return ""
    return SENTENCE_END.split(one_line(rule.description), maxsplit=1)[0]


def metric_names(rule: Rule) -> tuple[str, ...]:
    """The rule's `metric`, or the metrics its full expression reads."""
    return (rule.metric,) if rule.metric else rule.metrics


def shown_path(rule: Rule) -> str | None:
    """Where the rule was read; a builtin rule as `rules/<dir>/<file>`, the same on every machine."""
    if rule.origin is None:
        return None
    path, builtin = Path(rule.origin), builtin_rules_dir()
    if path.is_absolute() and path.is_relative_to(builtin):
        return (Path(builtin.name) / path.relative_to(builtin)).as_posix()
    return rule.origin


def is_wildcard(trainer: str | None) -> bool:
    return trainer in WILDCARD_TRAINERS


def count_line(rules: Sequence[Rule], trainer: str | None = None) -> str:
    """`18 rules; 4 for every trainer; 14 for some trainers only; 3 critical, 12 high, …`."""
    common = sum(rule.applies_to_all for rule in rules)
    named = len(rules) - common
    if is_wildcard(trainer):
        parts = [f"{_counted(len(rules), 'rule')} for every trainer"]
    else:
        scope = f" for {trainer} runs" if trainer else ""
        parts = [f"{_counted(len(rules), 'rule')}{scope}", f"{common} for every trainer",
                 f"{named} naming {trainer}" if trainer else f"{named} for some trainers only"]
    severities = severity_counts(rules)
    return "; ".join(parts + ([severities] if severities else [])) + "."


def severity_counts(rules: Sequence[Rule]) -> str:
    """`3 critical, 12 high, 2 medium, 1 low`, worst first, severities without a rule left out."""
    counts = {severity: sum(rule.severity == severity for rule in rules) for severity in reversed(SEVERITIES)}
    return ", ".join(f"{n} {severity}" for severity, n in counts.items() if n)


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------- JSON


def records(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """One object per rule, in table order: what the table shows and the rest of the rule's settings."""
    return [record(rule) for rule in ordered(rules)]


def record(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name, "trainers": list(rule.trainers), "severity": rule.severity, "metric": rule.metric,
        "metrics": list(metric_names(rule)), "condition": rule.condition.text, "summary": summary(rule),
        "description": rule.description, "file": rule.origin, "tags": list(rule.tags), "window": rule.window,
        "min_steps": rule.min_steps, "for": rule.sustain, "when": rule.when.text if rule.when else None,
        "reference": list(rule.reference),
    }


# ---------------------------------------------------------------- the terminal table


def table(rules: Iterable[Rule], trainer: str | None = None, width: int = TABLE_WIDTH) -> str:
    """One line per rule (severity, name, trainers, metric, condition) and its description's first
    sentence under it; every line at most `width` columns; a count line at the end."""
    listed = ordered(rules)
    rows = [_cells(rule) for rule in listed]
    lines = []
    if rows:
        widths = fitted_widths([TABLE_HEADER, *rows], width)
        indent = " " * (widths[0] + len(GAP))  # descriptions start under the rule's name
        lines.append(_table_line(TABLE_HEADER, widths))
        for rule, cells in zip(listed, rows):
            lines.append(_table_line(cells, widths))
            if rule.description:
                lines.append(indent + clipped(printable(summary(rule)), width - len(indent)))
    else:
        lines.append("No rules.")
    lines += ["", textwrap.fill(count_line(listed, trainer), width=width)]
    return "\n".join(lines) + "\n"


def _cells(rule: Rule) -> tuple[str, ...]:
    texts = (rule.severity, rule.name, ", ".join(rule.trainers), ", ".join(metric_names(rule)),
             rule.condition.text)
    return tuple(printable(one_line(text)) for text in texts)


def _table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(padded(clipped(cell, w), w) for cell, w in zip(cells, widths)).rstrip()


def fitted_widths(rows: Sequence[Sequence[str]], width: int) -> list[int]:
    """Column widths that fit `width` with the gaps: each column as wide as its widest cell, then cut,
    the column furthest above its floor (COLUMN_FLOORS) first, down to the floors; if that is still
    too wide (a narrow terminal), the widest first, down to one column each."""
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    budget = width - len(GAP) * (len(widths) - 1)
    for floors in ([min(w, floor) for w, floor in zip(widths, COLUMN_FLOORS)], [1] * len(widths)):
        while sum(widths) > budget:
            cuttable = [i for i, w in enumerate(widths) if w > floors[i]]
            if not cuttable:
                break
            widths[max(cuttable, key=lambda i: (widths[i] - floors[i], i))] -= 1
    return widths


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide (East Asian, emoji) characters two, combining marks none."""
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def clipped(text: str, width: int) -> str:
    """`text`, or as much of it as fits in `width` columns with "…" at the end."""
    if display_width(text) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        if used + _char_width(ch) > width - 1:
            break
        kept.append(ch)
        used += _char_width(ch)
    return "".join(kept) + ELLIPSIS


def padded(text: str, width: int) -> str:
    return text + " " * max(width - display_width(text), 0)


# ---------------------------------------------------------------- Markdown (docs/rules.md)


def library_page() -> str:
    """docs/rules.md: the builtin library, every rule that is enabled."""
    return markdown(load_rules(), intro=DOCS_INTRO)


def markdown(rules: Iterable[Rule], trainer: str | None = None, intro: str | None = None) -> str:
    return markdown_format.render(markdown_blocks(rules, trainer, intro))


def markdown_blocks(rules: Iterable[Rule], trainer: str | None = None, intro: str | None = None) -> list[Block]:
    """A title and the count line; without a trainer, which rules each trainer runs; then a section per
    group of rules (those for every trainer, then by the first trainer a rule names): a table, and
    each rule in full."""
    listed = ordered(rules)
    blocks: list[Block] = [Heading(1, _title(trainer), "rules")]
    blocks += [Paragraph(intro)] if intro else []
    blocks.append(Paragraph(plain(count_line(listed, trainer))))
    if trainer is None and listed:
        blocks += _trainer_index(listed)
    for group, members in groups(listed):
        blocks += _group_section(group, members)
        for rule in members:
            blocks += _rule_section(rule)
    return blocks


def _title(trainer: str | None) -> str:
    if trainer is None:
        return "Rule library"
    return "Rules for every trainer" if is_wildcard(trainer) else f"Rules for {plain(trainer)} runs"


def groups(rules: Sequence[Rule]) -> list[tuple[str, list[Rule]]]:
    """(group, its rules): `all` first, then each trainer a rule names first, alphabetically. The
    library keeps a trainer's rules in rules/<trainer>/, each naming that trainer first."""
    by_group: dict[str, list[Rule]] = {}
    for rule in rules:
        by_group.setdefault(ALL_TRAINERS if rule.applies_to_all else rule.trainers[0], []).append(rule)
    return sorted(by_group.items(), key=lambda item: (item[0] != ALL_TRAINERS, item[0]))


def _trainer_index(rules: Sequence[Rule]) -> list[Block]:
    common = [rule for rule in rules if rule.applies_to_all]
    named = sorted({t for rule in rules if not rule.applies_to_all for t in rule.trainers})
    rows = [("every trainer", _links(common))] if common else []
    rows += [(plain(t), _links([rule for rule in rules if not rule.applies_to_all and t in rule.trainers]))
             for t in named]
    return [Heading(2, "Which rules run for which trainer", "by-trainer"),
            Paragraph("A run of a trainer is checked with the rules for every trainer and the rules that name "
                      "its trainer id; a trainer not listed here gets only the rules for every trainer. "
                      "Rules are grouped below by the first trainer they name."),
            Table(("trainer", "rules"), tuple(rows))]


def _group_section(group: str, rules: Sequence[Rule]) -> list[Block]:
    title = "For every trainer" if group == ALL_TRAINERS else plain(group)
    rows = tuple((_link(rule), rule.severity, plain(printable(", ".join(rule.trainers))), _metrics(rule),
                  _code(rule.condition.text), plain(printable(summary(rule)))) for rule in rules)
    return [Heading(2, title, f"trainers-{group}"),
            Table(("rule", "severity", "trainers", "metric", "condition", "what it means"), rows)]


def _rule_section(rule: Rule) -> list[Block]:
    blocks: list[Block] = [Heading(3, code_span(rule.name), rule_anchor(rule)), Bullets(_settings(rule))]
    if rule.description:
        blocks.append(Paragraph(_escaped_paragraph(printable(one_line(rule.description)))))
    if rule.reference:
        blocks += [Paragraph("References:"), Bullets(tuple(_reference(text) for text in rule.reference))]
    return blocks


def _settings(rule: Rule) -> tuple[str, ...]:
    items = [f"**Severity:** {rule.severity}", f"**Trainers:** {plain(printable(', '.join(rule.trainers)))}",
             f"**Condition:** {_code(rule.condition.text)}", f"**Metric:** {_metrics(rule)}",
             f"**Window:** {rule.window} · **for:** {rule.sustain} · **min_steps:** {rule.min_steps}"]
    if rule.when is not None:
        items.append(f"**When:** {_code(rule.when.text)}")
    if rule.tags:
        items.append(f"**Tags:** {plain(printable(', '.join(rule.tags)))}")
    path = shown_path(rule)
    if path is not None:
        items.append(f"**File:** {_code(path)}")
    return tuple(items)


def _link(rule: Rule) -> str:
    return f"[{code_span(rule.name)}](#{rule_anchor(rule)})"


def rule_anchor(rule: Rule) -> str:
    """The rule's section: `rule-NAME`, never a heading's own id (`NAME`) nor a group's (`trainers-…`)."""
    return f"rule-{rule.name}"


def _links(rules: Sequence[Rule]) -> str:
    return ", ".join(_link(rule) for rule in rules)


def _code(text: str) -> str:
    return code_span(printable(one_line(text)))


def _metrics(rule: Rule) -> str:
    return ", ".join(_code(name) for name in metric_names(rule)) or "–"


def _reference(text: str) -> str:
    """A reference as inert Markdown, its URLs as links."""
    text = printable(one_line(text))
    out: list[str] = []
    position = 0
    for match in URL.finditer(text):
        url = _without_trailing_punctuation(match.group(0))
        out += [plain(text[position:match.start()]), f"<{url}>"]
        position = match.start() + len(url)
    return "".join(out + [plain(text[position:])])


def _without_trailing_punctuation(url: str) -> str:
    """A URL as written in a sentence, without the sentence's `.` or `,` or the `)` that closes it."""
    url = url.rstrip(".,;:!?")
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1].rstrip(".,;:!?")
    return url


def _escaped_paragraph(text: str) -> str:
    """`plain` text that also cannot start a heading, list or quote (`# `, `- `, `1. `, `> ` at its start)."""
    text = plain(text)
    numbered = re.match(r"\d+(?=[.)](\s|$))", text)
    if numbered:  # `1.` starts a numbered list; `1\.` does not
        return text[:numbered.end()] + "\\" + text[numbered.end():]
    return "\\" + text if re.match(r"[#+\-=]", text) else text
