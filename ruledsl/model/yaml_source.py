"""YAML text → plain data plus where every value came from.

Rule files are read with PyYAML's safe loader, but through its node tree, so
that each value keeps its place in the file: a schema error, an unknown field
or a syntax error inside a condition string can then point at line and column
of the file. Duplicate keys, which PyYAML silently lets the last one win, are
found on the way.

Paths are tuples of mapping keys and list indices, as in JSON Schema errors:
`("tests", 0, "series")`.

PyYAML's libyaml-based loader is used when PyYAML has it: the same safe
constructor and the same node marks (in characters), several times faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from ruledsl.lang.errors import Diagnostic, Span

Path = tuple  # of str | int
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # both are a SafeConstructor


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


def read_yaml(text: str) -> YamlDocument:
    """Parse one YAML document safely; raises YamlError with the position of the problem."""
    loader = Loader(text)
    try:
        root = loader.get_single_node()
        document = YamlDocument(text, None)
        if root is not None:
            _index(root, (), document, loader)
            document.data = loader.construct_document(root)
        return document
    except yaml.YAMLError as exc:
        raise YamlError(_yaml_diagnostic(exc, text)) from None
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: Path, document: YamlDocument, loader: SafeConstructor) -> None:
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
