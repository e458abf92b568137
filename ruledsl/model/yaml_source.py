"""YAML text → plain data plus where every value came from.

Rule files are read with PyYAML's safe loader, but through its node tree, so
that each value keeps its place in the file: a schema error, an unknown field
or a syntax error inside a condition string can then point at line and column
of the file. Duplicate keys, which PyYAML silently lets the last one win, are
found on the way.

What YAML allows but a rule file must not hold is refused before anything is built, each an
E002 at its place: anchors and aliases (`&a`, `*a`: a few hundred bytes of aliases to aliases
expand into gigabytes, and no rule needs them), lines longer than `MAX_LINE_LENGTH`, values
nested deeper than `MAX_DEPTH`, and integers too long for Python's `int()` (over 4300 digits).

Paths are tuples of mapping keys and list indices, as in JSON Schema errors:
`("tests", 0, "series")`.

PyYAML's libyaml-based loader is used when PyYAML has it: the same safe
constructor and the same node marks (in characters), several times faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from ruledsl.lang.errors import Diagnostic, Span

Path = tuple  # of str | int
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # both are a SafeConstructor
# The longest line a rule file may have, in characters. Rule lines are short (the builtin library's
# longest is under 200); a one-line test series of 64 Ki characters already holds ~13,000 values.
# A longer line is generated or binary data, and editors, diffs and review tools choke on it.
MAX_LINE_LENGTH = 64 * 1024
# The deepest a value may be nested. A rule's deepest value (tests → case → expect → episode → field)
# is 5 levels down; indexing and constructing recurse once per level, and near 1000 levels (which
# libyaml still reads) they would reach Python's recursion limit.
MAX_DEPTH = 64
INT_TAG = "tag:yaml.org,2002:int"


class YamlError(ValueError):
    """Text that is not valid YAML for a rule file; carries one E002 diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


@dataclass
class YamlDocument:
    text: str
    data: Any
    nodes: dict[Path, yaml.Node] = field(default_factory=dict)
    key_nodes: dict[Path, yaml.Node] = field(default_factory=dict)
    duplicate_keys: list[Diagnostic] = field(default_factory=list)

    def span_of(self, path: Path, *, key: bool = False) -> Span:
        """The span of the value (or its key) at `path`; the nearest existing parent otherwise."""
        table = self.key_nodes if key else self.nodes
        while path not in table and path:
            path = path[:-1]
        node = table.get(path) or self.nodes.get(())
        if node is None:
            return Span.at(self.text, 0)
        return _node_span(self.text, node)

    def span_in_string(self, path: Path, inner: Span) -> Span:
        """Where a span inside the string value at `path` lies in the file."""
        node = self.nodes.get(path)
        if not isinstance(node, yaml.ScalarNode):
            return self.span_of(path)
        raw = self.text[node.start_mark.index : node.end_mark.index]
        offsets = _value_offsets(node.value, raw, node.style)
        if not offsets:
            return _node_span(self.text, node)
        first = offsets[min(inner.start, len(offsets) - 1)]
        last = offsets[min(max(inner.end - 1, inner.start), len(offsets) - 1)]
        return Span.at(self.text, node.start_mark.index + first, last - first + 1)


class RuleLoader(Loader):  # type: ignore[valid-type,misc]  # Loader is chosen at run time (libyaml or not)
    """The safe loader, but an integer too long for `int()` is a YAML error at its place."""


def _construct_int(loader: SafeConstructor, node: yaml.ScalarNode) -> int:
    try:
        return SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:  # Python refuses int() of more than 4300 digits (CVE-2020-10735)
        raise ConstructorError(None, None, f"this integer has {len(node.value):,} characters, too many to "
                               "read", node.start_mark) from None


RuleLoader.add_constructor(INT_TAG, _construct_int)


def read_yaml(text: str) -> YamlDocument:
    """Parse one YAML document safely; raises YamlError with the position of the problem.

    Linear in the text's size: overlong lines, anchors and aliases are refused before the
    document is composed, so nothing is ever expanded.
    """
    try:
        refused = _overlong_line(text) or _anchor_or_alias(text)
        if refused is not None:
            raise YamlError(refused)
        return _document(text)
    except yaml.YAMLError as exc:
        raise YamlError(_yaml_diagnostic(exc, text)) from None


def _document(text: str) -> YamlDocument:
    loader = RuleLoader(text)
    try:
        root = loader.get_single_node()
        document = YamlDocument(text, None)
        if root is not None:
            _index(root, (), document, loader)
            document.data = loader.construct_document(root)
        return document
    finally:
        loader.dispose()


def _overlong_line(text: str) -> Diagnostic | None:
    """E002 at the first line longer than MAX_LINE_LENGTH, if there is one."""
    lengths = [len(line) for line in text.split("\n")]
    if max(lengths) <= MAX_LINE_LENGTH:
        return None
    number = next(i for i, length in enumerate(lengths) if length > MAX_LINE_LENGTH)
    start = sum(lengths[:number]) + number  # each earlier line and its "\n"
    return Diagnostic("E002", f"this line has {lengths[number]:,} characters; rule files have lines of at most "
                      f"{MAX_LINE_LENGTH:,}", Span.at(text, start),
                      hint="break long lists over several lines (one value per line)")


def _anchor_or_alias(text: str) -> Diagnostic | None:
    """E002 at the first anchor (`&name`) or alias (`*name`), found in the event stream, before
    any node is composed or constructed: an alias is never followed, so its cost is its size."""
    if "&" not in text and "*" not in text:
        return None  # the two indicators: without them the file has neither (most rule files)
    events = Loader(text)
    try:
        while events.check_event():
            event = events.get_event()
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:  # an alias, or a node with an anchor
                return _anchor_diagnostic(text, event)
    finally:
        events.dispose()
    return None


def _anchor_diagnostic(text: str, event: yaml.NodeEvent) -> Diagnostic:
    kind, indicator = ("alias", "*") if isinstance(event, yaml.AliasEvent) else ("anchor", "&")
    written = f"{indicator}{event.anchor}"
    offset = event.start_mark.index if event.start_mark is not None else 0
    return Diagnostic("E002", f"the {kind} '{written}': rule files have no anchors or aliases (an alias repeats "
                      "a value by reference, and a few hundred bytes of them can expand into gigabytes)",
                      Span.at(text, offset, len(written)),
                      hint="rule files do not use anchors (&) or aliases (*); write the value out")


def _index(node: yaml.Node, path: Path, document: YamlDocument, loader: SafeConstructor) -> None:
    if len(path) > MAX_DEPTH:
        raise YamlError(Diagnostic("E002", f"this value is nested more than {MAX_DEPTH} levels deep; rule files "
                                   "nest a few", _node_span(document.text, node),
                                   hint="flatten it: a rule's deepest value (in tests:) is 5 levels down"))
    document.nodes[path] = node
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, loader)
            if key in seen:
                document.duplicate_keys.append(Diagnostic(
                    "E004", f"the key '{key}' appears twice in this mapping (first on line "
                    f"{seen[key].start_mark.line + 1}); YAML would silently keep only the last one",
                    _node_span(document.text, key_node), hint="remove or rename one of them"))
                continue
            seen[key] = key_node
            document.key_nodes[path + (key,)] = key_node
            _index(value_node, path + (key,), document, loader)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, path + (index,), document, loader)


def _key(key_node: yaml.Node, loader: SafeConstructor) -> Any:
    if isinstance(key_node, yaml.ScalarNode):
        value = loader.construct_object(key_node)
        return value if isinstance(value, (str, int, float, bool)) or value is None else key_node.value
    kind = key_node.id if isinstance(key_node, (yaml.MappingNode, yaml.SequenceNode)) else "complex"
    return f"<{kind} key at line {key_node.start_mark.line + 1}>"


def _node_span(text: str, node: yaml.Node) -> Span:
    start, end = node.start_mark.index, node.end_mark.index
    first_line_end = text.find("\n", start)
    if first_line_end != -1 and first_line_end < end:
        end = first_line_end  # a multi-line node is shown by its first line
    return Span.at(text, start, max(1, end - start))


def _value_offsets(value: str, raw: str, style: str | None) -> list[int]:
    """For each character of a scalar's value, its offset in the scalar's source text.

    Walks value and source together: quotes, indentation and folded line breaks
    exist only in the source, an escape (`\\n`, `''`) is one value character.
    """
    offsets: list[int] = []
    i = 1 if style in ("'", '"') else (raw.find("\n") + 1 if style in ("|", ">") else 0)
    for char in value:
        while i < len(raw):
            source = raw[i]
            if style == '"' and source == "\\":
                offsets.append(i)
                i += _escape_length(raw, i)
                break
            if style == "'" and raw.startswith("''", i) and char == "'":
                offsets.append(i)
                i += 2
                break
            if source == char or (source == "\n" and char == " "):
                offsets.append(i)
                i += 1
                break
            i += 1
        else:
            offsets.append(max(0, len(raw) - 1))
    return offsets


def _escape_length(raw: str, i: int) -> int:
    return {"x": 4, "u": 6, "U": 10}.get(raw[i + 1 : i + 2], 2)


def _yaml_diagnostic(exc: yaml.YAMLError, text: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    span = Span.at(text, mark.index) if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    hint = None
    if "could not determine a constructor" in str(exc):
        problem = "this YAML tag is not allowed: rule files are plain data and nothing in them is executed"
        hint = "remove the tag (the part starting with '!')"
    elif "expected a single document" in str(exc):
        problem = "a rule file holds one YAML document (one rule); this one has several"
        hint = "put each rule in a file of its own"
    elif span is not None and "\t" in _line(text, span.line):
        hint = "indent with spaces, not tabs"
    return Diagnostic("E002", f"not valid YAML: {problem}", span, hint)


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""
