"""The grammar as data: rules, their alternatives and the terminals, read from the .lark file.

Lark's own loader (`lark.load_grammar`) parses grammar/ruledsl.lark; this
module only turns its definition trees into a few small immutable nodes that
the diagram renderer and the EBNF printer walk. Nothing here restates the
syntax: change the .lark file and the docs change with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lark import Token as LarkToken
from lark import Tree
from lark.grammar import NonTerminal, Terminal
from lark.load_grammar import load_grammar

from ruledsl.resources import data_dir

# ---------------------------------------------------------------- expression nodes


@dataclass(frozen=True)
class Token:
    """Text the reader types: a named terminal (`name`) or an anonymous literal (`name` None)."""

    text: str
    name: str | None = None


@dataclass(frozen=True)
class Ref:
    """A reference to another rule."""

    name: str


@dataclass(frozen=True)
class Sequence:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Choice:
    options: tuple[Expr, ...]


@dataclass(frozen=True)
class Optional:
    item: Expr


@dataclass(frozen=True)
class Repeat:
    item: Expr
    at_least_one: bool


Expr = Token | Ref | Sequence | Choice | Optional | Repeat

# ---------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Alternative:
    expr: Expr
    alias: str | None  # the tree node it builds (`-> range`), None when unnamed


@dataclass(frozen=True)
class Rule:
    name: str
    alternatives: tuple[Alternative, ...]
    inlined: bool  # `?rule`: the node is replaced by its child when it has only one

    @property
    def expr(self) -> Expr:
        if len(self.alternatives) == 1:
            return self.alternatives[0].expr
        return Choice(tuple(a.expr for a in self.alternatives))


@dataclass(frozen=True)
class TerminalDef:
    name: str
    pattern: str  # the definition as written in the grammar (`"<=" | ">="`, `/range\b/`)
    priority: int
    ignored: bool  # `%ignore`d between tokens (whitespace)


@dataclass(frozen=True)
class Grammar:
    source: str
    rules: tuple[Rule, ...]
    terminals: tuple[TerminalDef, ...]

    def rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def terminal(self, name: str) -> TerminalDef:
        for terminal in self.terminals:
            if terminal.name == name:
                return terminal
        raise KeyError(name)


class GrammarShapeError(ValueError):
    """The grammar uses a construct the docs generator does not draw yet."""


def default_grammar_path() -> Path:
    return data_dir("grammar") / "ruledsl.lark"


def read_grammar(path: Path | None = None) -> Grammar:
    """The grammar at `path` (default: the one the parser uses), as data."""
    source = Path(path or default_grammar_path()).read_text(encoding="utf-8")
    loaded, _files = load_grammar(source, str(path or "ruledsl.lark"), [], False)
    terminals = tuple(
        TerminalDef(name, _pattern_text(tree), int(priority), name in loaded.ignore)
        for name, (tree, priority) in loaded.term_defs
    )
    displays = {t.name: _display(t) for t in terminals}
    rules = tuple(
        Rule(name, _alternatives(tree, displays), bool(options.expand1))
        for name, _params, tree, options in loaded.rule_defs
    )
    return Grammar(source, rules, terminals)


# ---------------------------------------------------------------- lark trees → nodes


def _alternatives(tree: Tree, displays: dict[str, str]) -> tuple[Alternative, ...]:
    found = []
    for child in tree.children:  # the rule's top `expansions`
        if isinstance(child, Tree) and child.data == "alias":
            expansion, alias = child.children
            if not isinstance(alias, NonTerminal):
                raise GrammarShapeError(f"an alias that is not a rule name: {alias!r}")
            found.append(Alternative(_expr(expansion, displays), alias.name))
        else:
            found.append(Alternative(_expr(child, displays), None))
    return tuple(found)


def _expr(node, displays: dict[str, str]) -> Expr:
    if isinstance(node, NonTerminal):
        return Ref(node.name)
    if isinstance(node, Terminal):
        return Token(displays.get(node.name, node.name), node.name)
    kind = node.data
    if kind == "expansions":
        options = tuple(_expr(c, displays) for c in node.children)
        return options[0] if len(options) == 1 else Choice(options)
    if kind == "expansion":
        items = tuple(_expr(c, displays) for c in node.children)
        return items[0] if len(items) == 1 else Sequence(items)
    if kind == "value":
        return _expr(node.children[0], displays)
    if kind == "literal":
        return Token(_literal_text(node.children[0]))
    if kind == "maybe":
        return Optional(_expr(node.children[0], displays))
    if kind == "expr" and len(node.children) == 2 and isinstance(node.children[1], LarkToken):
        item, op = _expr(node.children[0], displays), str(node.children[1])
        if op == "?":
            return Optional(item)
        if op in ("*", "+"):
            return Repeat(item, at_least_one=op == "+")
    raise GrammarShapeError(f"the docs generator cannot draw this grammar construct yet: {node}")


def _literal_text(token: LarkToken) -> str:
    """`"("` → `(`; a regular expression stays as written, slashes included."""
    text = str(token)
    if token.type == "STRING":
        text = text[:-1] if text.endswith("i") else text
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _pattern_text(tree) -> str:
    """A terminal's definition as it reads in the grammar."""
    if isinstance(tree, LarkToken):
        return str(tree)
    if isinstance(tree, Terminal):
        return tree.name
    kind = tree.data
    parts = [_pattern_text(c) for c in tree.children]
    if kind == "expansions":
        return " | ".join(parts)
    if kind == "expansion":
        return " ".join(parts)
    if kind == "expr":
        return parts[0] + "".join(parts[1:])
    if kind == "maybe":
        return f"[{parts[0]}]"
    return " ".join(parts)  # value, literal


_KEYWORD = re.compile(r"^/([A-Za-z]+)\\b/$")


def _display(terminal: TerminalDef) -> str:
    """What a reader types for this terminal: `+` for "+", `range` for /range\\b/, else its name."""
    pattern = terminal.pattern
    if re.fullmatch(r'"[^"\\]+"', pattern):
        return pattern[1:-1]
    keyword = _KEYWORD.match(pattern)
    return keyword.group(1) if keyword else terminal.name


# ---------------------------------------------------------------- EBNF text


def ebnf(expr: Expr, nested: bool = False) -> str:
    """Lark-like EBNF: `"("` literals quoted, NAMES of terminals bare, rules lower case."""
    if isinstance(expr, Token):
        if expr.name is not None and expr.text == expr.name:
            return expr.name
        return '"' + expr.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(expr, Ref):
        return expr.name
    if isinstance(expr, Sequence):
        return " ".join(ebnf(i, nested=True) for i in expr.items)
    if isinstance(expr, Choice):
        text = " | ".join(ebnf(o) for o in expr.options)
        return f"({text})" if nested else text
    if isinstance(expr, Optional):
        return f"[{ebnf(expr.item)}]"
    if isinstance(expr, Repeat):
        if isinstance(expr.item, (Token, Ref, Choice)):
            inner = ebnf(expr.item, nested=True)  # a choice comes back in parentheses
        else:
            inner = f"({ebnf(expr.item)})"
        return inner + ("+" if expr.at_least_one else "*")
    raise TypeError(expr)


def rule_ebnf(rule: Rule) -> str:
    """The rule, one alternative a line, with its `-> alias` where it has one."""
    head = f"{rule.name} ::= "
    lines = []
    bodies = [ebnf(a.expr) for a in rule.alternatives]
    width = max(len(b) for b in bodies)
    for index, (alternative, body) in enumerate(zip(rule.alternatives, bodies)):
        lead = head if index == 0 else " " * (len(head) - 2) + "| "
        tail = f"   -> {alternative.alias}" if alternative.alias else ""
        lines.append((lead + body.ljust(width) + tail).rstrip())
    return "\n".join(lines)


def alternative_ebnf(rule: Rule, alternative: Alternative) -> str:
    tail = f"   -> {alternative.alias}" if alternative.alias else ""
    return f"{rule.name} ::= {ebnf(alternative.expr)}{tail}"
