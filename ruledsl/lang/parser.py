"""Text → syntax tree: the Lark LALR parser and the transformer to ruledsl.ast.

This module only reads. What a tree means (shorthand or full expression,
valid windows, known functions) is decided by ruledsl/lang/checker.py.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, cast

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

from ruledsl.lang import ast
from ruledsl.lang.errors import Diagnostic, RuleSyntaxError, Span
from ruledsl.resources import data_dir

MAX_LENGTH = 4096  # characters in one condition or inline alert
MAX_DEPTH = 64  # levels of the condition's syntax tree, each operator of a chain counted (_check_depth)

GRAMMAR_FILE = "ruledsl.lark"


@functools.cache
def _parser() -> Lark:
    grammar = (data_dir("grammar") / GRAMMAR_FILE).read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        start=["condition", "inline_alert"],
        propagate_positions=True,
        maybe_placeholders=False,
    )


@dataclass(frozen=True)
class InlineAlertTree:
    """The parts of an inline alert, before checking."""

    trainers: tuple[str, ...]
    condition: ast.Predicate
    sustain: int | None
    condition_span: Span
    severity: str
    message: str


def parse_condition_tree(text: str) -> tuple[ast.Predicate, int | None, Span]:
    """Parse a condition: its predicate, its `for N steps` (or None), its span."""
    tree = _parse(text, "condition")
    return _condition_parts(tree, text)


def parse_inline_tree(text: str) -> InlineAlertTree:
    tree = _parse(text, "inline_alert")
    # `inline_alert: trainer_list ":" condition ARROW SEVERITY ":" MESSAGE`: the first two are trees
    trainers_branch, condition_branch, _arrow, severity, message = tree.children
    trainers_tree = cast("Tree[Token]", trainers_branch)
    predicate, sustain, span = _condition_parts(cast("Tree[Token]", condition_branch), text)
    if trainers_tree.data == "any_trainer":
        trainers: tuple[str, ...] = ("all",)
    else:
        trainers = tuple(str(t) for t in trainers_tree.children)
    return InlineAlertTree(trainers, predicate, sustain, span, str(severity), str(message).rstrip())


def _condition_parts(tree: Tree[Token], text: str) -> tuple[ast.Predicate, int | None, Span]:
    # `condition: disjunction sustain?`: every rule under `disjunction` builds a tree, as does `sustain`
    body_tree = cast("Tree[Token]", tree.children[0])
    _check_depth(body_tree, text)
    body = _ToAst(text).transform(body_tree)
    sustain: int | None = None
    if len(tree.children) > 1:
        sustain_tree = cast("Tree[Token]", tree.children[1])  # `sustain: FOR INT STEPS`
        sustain = int(cast(Token, sustain_tree.children[1]))
    return body, sustain, _tree_span(tree, text)


# ---------------------------------------------------------------- reading text


def _parse(text: str, start: str) -> Tree[Token]:
    what = "condition" if start == "condition" else "inline alert"
    if not isinstance(text, str):
        raise TypeError(f"a {what} must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise _error(
            text, MAX_LENGTH, f"this {what} is {len(text)} characters long; the limit is {MAX_LENGTH}",
            code="E107", hint="split it into several rules",
        )
    if not text.strip():
        raise _error(text, 0, f"the {what} is empty", code="E101",
                     hint="write a condition such as '< 0.5' or 'loss > 2'")
    try:
        return _parser().parse(text, start=start)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc, what) from None


def _error(text: str, offset: int, message: str, *, code: str, hint: str | None = None,
           length: int = 1, expected: tuple[str, ...] = ()) -> RuleSyntaxError:
    span = Span.at(text, offset, length)
    return RuleSyntaxError(Diagnostic(code, message, span, hint), text, expected)


CONFIG_PREFIX = "config."  # `config.beta`: a key of the run's configuration (reserved prefix)

# Words for the grammar's terminals, so that authors never read `LPAR` or `__ANON_3`.
_TERMINAL_WORDS = {
    "NUMBER": "a number",
    "INT": "a whole number",
    "NAME": "a metric name",
    "QUOTED_NAME": "a `quoted` metric name",
    "STRING": "a quoted text ('sigmoid')",
    "COMPARATOR": "a comparison (<, <=, >, >=, ==, !=)",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "COLON": "':'",
    "_AND": "'and'",
    "_OR": "'or'",
    "NOT": "'not'",
    "FOR": "'for'",
    "STEPS": "'steps'",
    "UNIT": "'%' or 'x'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "ARROW": "'->'",
    "SEVERITY": "a severity (low, medium, high, critical)",
    "TRAINER": "a trainer id such as 'grpo'",
    "MESSAGE": "a message",
    "$END": "the end of the text",
}
_SHORTHAND_KEYWORDS = {"RANGE", "OUTSIDE", "DROP", "RISE", "SPIKE", "FLAT", "NONFINITE", "ABSENT"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH"}


def describe_expected(terminals: set[str]) -> tuple[str, ...]:
    """What the parser would have accepted, in words, most useful first (at most four)."""
    names = set(terminals)
    words: list[str] = []
    if len(names & _OPERATORS) >= 3:
        # After a complete value: what matters is how to go on, not every closing token.
        if "COMPARATOR" in names:
            words.append(_TERMINAL_WORDS["COMPARATOR"])
        words.append("an operator (+ - * /)")
        if {"_AND", "_OR"} <= names:
            words.append("'and'/'or'")
        if "ARROW" in names:
            words.append("'->'")
        return tuple(words)
    if len(names & _SHORTHAND_KEYWORDS) >= 3:
        words.append("a shorthand such as '< 0.5' or 'drop(50%)'")
        names -= _SHORTHAND_KEYWORDS | {"COMPARATOR"}
    if "NUMBER" in names and "NAME" in names:
        words.append("a number or a metric name")
        names -= {"NUMBER", "NAME", "QUOTED_NAME", "LPAR", "MINUS", "NOT"}
    if {"_AND", "_OR"} <= names:
        words.append("'and'/'or'")
        names -= {"_AND", "_OR"}
    order = list(_TERMINAL_WORDS)
    for name in sorted(names, key=lambda n: order.index(n) if n in order else len(order)):
        word = _TERMINAL_WORDS.get(name) or f"'{name.lower()}'"
        if word not in words:
            words.append(word)
    return tuple(words[:4])


def _join_words(words: tuple[str, ...]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(text: str, exc: UnexpectedInput, what: str) -> RuleSyntaxError:
    if isinstance(exc, UnexpectedToken):
        terminals = set(exc.expected)
        at_end = exc.token.type == "$END"
        offset = len(text) if at_end else exc.token.start_pos
        found = "" if at_end else _next_lexeme(text, offset)
        length = max(1, len(found))
    elif isinstance(exc, UnexpectedCharacters):
        terminals = set(exc.allowed or ())
        # lark declares `pos_in_stream = None` on UnexpectedInput; UnexpectedCharacters sets the offset
        offset = cast(int, exc.pos_in_stream)
        at_end = False
        found = text[offset]
        length = 1
    else:  # pragma: no cover - LALR raises only the two above
        terminals, offset, at_end, found, length = set(), 0, False, text[:1], 1

    expected = describe_expected(terminals)
    previous = _previous_lexeme(text, offset)
    message = f"expected {_join_words(expected)}" if expected else "unexpected text"
    if previous:
        message += f" after '{previous}'"
    if at_end:
        message = f"the {what} ends too early: {message}"
    elif found:
        shown = found if found.isprintable() else f"character U+{ord(found[0]):04X}"
        message += f", found '{shown}'" if found.isprintable() else f", found {shown}"
    hint = _hint_for(found, previous)
    if what == "inline alert" and ":" not in text[:offset]:  # still in the trainer list: the prefix is wrong
        message = f"an inline alert starts with its trainers and ':' ({INLINE_FORM}); {message}"
        hint = _prefix_hint(text, offset, found)
    return _error(text, offset, message, code="E101", hint=hint, length=length, expected=expected)


INLINE_FORM = "TRAINERS: CONDITION -> SEVERITY: MESSAGE"
_SHOWN_IN_HINT = 100  # characters of the alert a hint repeats, corrected, at most


def _prefix_hint(text: str, offset: int, found: str) -> str:
    """How to write the `TRAINERS:` prefix of this alert: the alert itself, corrected, when it
    is short and the mistake is plain (`loss > 5 -> …` lacks the prefix; `grpo loss > 5 -> …`
    its ':'), else an example."""
    example = "e.g. `dpo, kto: loss > 1 -> high: loss too high`; `all:` or `*:` for every trainer"
    shorthand_alone = not text[:offset].strip() and found[:1] in ("<", ">", "=", "!")  # `> 5 -> …`: no metric
    if len(text) > _SHOWN_IN_HINT or "," in text[:offset] or shorthand_alone:
        return example  # too long to repeat, a trainer list already begun, or nothing to prefix
    if re.fullmatch(r"[A-Za-z0-9_]+", found):  # two words in a row: the trainer, then the condition
        return f"end the trainers with ':': `{text[:offset].rstrip()}: {text[offset:].lstrip()}`"
    return f"for every trainer: `all: {text.strip()}`; or name them: `dpo, kto: …`"


def _next_lexeme(text: str, offset: int) -> str:
    """The token-sized piece of text at `offset` (not the rest of the line)."""
    match = re.compile(r"`[^`]*`|[A-Za-z0-9_./%]+|<=|>=|==|!=|->|\S").match(text, offset)
    lexeme = match.group(0) if match else text[offset:offset + 1]
    return lexeme if len(lexeme) <= 40 else lexeme[:37] + "..."


_LEXEME = re.compile(r"(`[^`]*`|[A-Za-z0-9_./%]+|<=|>=|==|!=|->|\S)\s*$")


def _previous_lexeme(text: str, offset: int) -> str:
    match = _LEXEME.search(text[:offset])
    if not match:
        return ""
    lexeme = match.group(1)
    return lexeme if len(lexeme) <= 40 else lexeme[:37] + "..."


def _hint_for(found: str, previous: str) -> str | None:
    if found == "=":
        return "comparisons are written ==, <=, >=, <, > or !="
    if found in {"&", "&&"}:
        return "write 'and'"
    if found in {"|", "||"}:
        return "write 'or'"
    if found in {"-", "!", "#", "@", "$", "?", "~", "[", "]", "{", "}", "'", '"'} and previous:
        return "a metric name with unusual characters goes in backticks: `my-metric`"
    return None


# ---------------------------------------------------------------- depth guard
#
# Everything after the parser walks the syntax tree recursively (Lark's transformer, the
# checker, both engines' compilers, `explain`, a frozen node's hash and repr), so its depth
# is bounded here, once, before any of them runs. The depth is that of the tree of
# ruledsl.lang.ast nodes, measured on the parse tree without recursion: each parse node
# becomes one ast node, except that
#   * the k operands of a `sum` or `product` become a chain of k - 1 BinaryOp nodes leaning
#     left (`_ToAst._fold`: a + b + c is (a + b) + c), operand j lying k - max(j, 1) levels
#     below the chain's top: every operator of a chain adds a level;
#   * `loss not range(…)` puts its term under a Not of its own (`_ToAst.applied_negation`);
#   * the numbers of a shorthand term (`< 1`, `range(a, b)`) are its fields, not nodes under it
#     (`ast.children`): a term is a leaf.
# Parentheses only group: `((a)) > 1` is the tree of `a > 1`, and so costs nothing.
# tests/test_deep_conditions.py checks this measure against the depth of the ast built.

_CHAINS = frozenset({"sum", "product"})
_TERM_FIELDS = frozenset({"shorthand_number"})
_CHAIN_HINT = "split it into several rules, or use sum()/mean() of a window"
_NESTING_HINT = "simplify it (repeated 'not' or '-', calls inside calls), or split it into several rules"


def _check_depth(tree: Tree[Token], text: str) -> None:
    """Refuse a condition whose ast would be deeper than MAX_DEPTH (E106), placed where reading
    the text left to right first makes it too deep."""
    heights = _heights(tree)
    if heights[id(tree)] <= MAX_DEPTH:
        return
    place = _crossing(tree, heights)
    if isinstance(place, Token):
        raise _error(text, cast(int, place.start_pos),
                     f"the condition nests more than {MAX_DEPTH} levels deep: each operator of a chain "
                     f"such as a + b + c adds a level", code="E106", hint=_CHAIN_HINT)
    raise _error(text, _tree_span(place, text).start, f"the condition nests more than {MAX_DEPTH} levels deep",
                 code="E106", hint=_NESTING_HINT)


def _levels(node: Tree[Token]) -> list[tuple[Tree[Token], int]]:
    """The parse nodes under `node`, in source order, each with how many ast levels below it it lies."""
    subtrees = [c for c in node.children if isinstance(c, Tree) and c.data not in _TERM_FIELDS]
    if node.data in _CHAINS:
        return [(c, len(subtrees) - max(j, 1)) for j, c in enumerate(subtrees)]
    if node.data == "applied_negation":  # `sum NOT negation`: the term one level further, under its Not
        metric, term = subtrees
        return [(metric, 1), (term, 2)]
    return [(c, 1) for c in subtrees]


def _heights(tree: Tree[Token]) -> dict[int, int]:
    """id(parse node) → the number of ast levels of its subtree (1 for a leaf), computed bottom up."""
    heights: dict[int, int] = {}
    stack: list[tuple[Tree[Token], bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            heights[id(node)] = max([offset + heights[id(c)] for c, offset in _levels(node)], default=1)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c, _offset in _levels(node))
    return heights


def _crossing(tree: Tree[Token], heights: dict[int, int]) -> Tree[Token] | Token:
    """Where the text, read left to right, first holds a tree deeper than MAX_DEPTH: the
    node that lies too deep, or the operator that makes a chain too long."""
    node, depth = tree, 1  # depth: the ast level of `node` in the text read so far
    while depth <= MAX_DEPTH:
        if node.data in _CHAINS:
            found = _chain_crossing(node, depth, heights)
            if isinstance(found, Token):
                return found
            node, depth = found
            continue
        # a node's other children stay where they are as the text goes on: the first one too deep
        node, depth = next((c, depth + offset) for c, offset in _levels(node)
                           if depth + offset + heights[id(c)] - 1 > MAX_DEPTH)
    return node


def _chain_crossing(node: Tree[Token], depth: int, heights: dict[int, int]) -> Token | tuple[Tree[Token], int]:
    """In a chain a ∘ b ∘ c … at level `depth`, too deep: the operand too deep in itself (with
    its level), or the operator that pushes what was read of the chain one level too far down."""
    operands, operators = node.children[0::2], node.children[1::2]
    first = cast("Tree[Token]", operands[0])
    deepest = heights[id(first)] - 1  # the chain read so far reaches depth + (operators read) + deepest
    if depth + deepest > MAX_DEPTH:  # the first operand alone, not yet under any operator
        return first, depth
    for i in range(1, len(operands)):
        if depth + i + deepest > MAX_DEPTH:
            return cast(Token, operators[i - 1])
        operand = cast("Tree[Token]", operands[i])
        if depth + heights[id(operand)] > MAX_DEPTH:  # the newest operand lies one level below the top
            return operand, depth + 1
        deepest = max(deepest, heights[id(operand)] - i)
    raise AssertionError("a chain deeper than MAX_DEPTH has a place where it becomes so")


# ---------------------------------------------------------------- tree → ast


def _tree_span(node: Tree[Token] | Token, text: str) -> Span:
    if isinstance(node, Token):
        # lark types a token's positions Optional (a token made by hand has none); the lexer sets them all
        assert node.line is not None and node.column is not None and node.end_line is not None
        assert node.end_column is not None and node.start_pos is not None and node.end_pos is not None
        return Span(node.line, node.column, node.end_line, node.end_column,
                    node.start_pos, node.end_pos)
    meta = node.meta
    if getattr(meta, "empty", True):
        return Span.at(text, 0, 0)
    return Span(meta.line, meta.column, meta.end_line, meta.end_column,
                meta.start_pos, meta.end_pos)


@v_args(meta=True)
class _ToAst(Transformer[Token, ast.Predicate]):  # the root: a predicate, or a bare value the checker refuses
    """Builds ruledsl.ast nodes from Lark's parse tree (positions included)."""

    def __init__(self, text: str):
        super().__init__()
        self._text = text

    def _span(self, meta: Meta) -> Span:
        return Span(meta.line, meta.column, meta.end_line, meta.end_column,
                    meta.start_pos, meta.end_pos)

    # logic
    def disjunction(self, meta: Meta, operands: list[ast.Predicate]) -> ast.Or:
        return ast.Or(tuple(operands), self._span(meta))

    def conjunction(self, meta: Meta, operands: list[ast.Predicate]) -> ast.And:
        return ast.And(tuple(operands), self._span(meta))

    def negation(self, meta: Meta, children: list[Any]) -> ast.Not:
        _keyword, operand = children
        return ast.Not(operand, self._span(meta))

    # comparisons
    def compare(self, meta: Meta, children: list[Any]) -> ast.Comparison:
        left, op, right = children
        return ast.Comparison(str(op), left, right, self._span(meta))

    def applied_shorthand(self, meta: Meta, children: list[Any]) -> ast.AppliedShorthand:
        metric, term = children
        return ast.AppliedShorthand(metric, term, self._span(meta))

    def applied_negation(self, meta: Meta, children: list[Any]) -> ast.AppliedShorthand:
        """`loss not range(0.6, 0.8)`: the metric, then a negated shorthand."""
        metric, keyword, operand = children
        negation = ast.Not(operand, Span.at(self._text, keyword.start_pos, operand.span.end - keyword.start_pos))
        return ast.AppliedShorthand(metric, negation, self._span(meta))

    # shorthand terms
    def shorthand_number(self, meta: Meta, children: list[Token]) -> ast.Number:
        sign = -1.0 if children[0].type == "MINUS" else 1.0
        digits = [c for c in children if c.type == "NUMBER"][0]
        unit = next((str(c) for c in children if c.type == "UNIT"), None)
        return ast.Number(sign * float(digits), self._span(meta), unit)

    def shorthand_compare(self, meta: Meta, children: list[Any]) -> ast.ShorthandCompare:
        op, number = children
        return ast.ShorthandCompare(str(op), number, self._span(meta))

    def range(self, meta: Meta, children: list[Any]) -> ast.Between:
        _keyword, low, high = children
        return ast.Between(low, high, True, self._span(meta))

    def outside(self, meta: Meta, children: list[Any]) -> ast.Between:
        _keyword, low, high = children
        return ast.Between(low, high, False, self._span(meta))

    def drop(self, meta: Meta, children: list[Any]) -> ast.Change:
        return ast.Change("drop", children[1], self._span(meta))

    def rise(self, meta: Meta, children: list[Any]) -> ast.Change:
        return ast.Change("rise", children[1], self._span(meta))

    def spike(self, meta: Meta, children: list[Any]) -> ast.Spike:
        return ast.Spike(children[1], self._span(meta))

    def flat(self, meta: Meta, children: list[Any]) -> ast.Flat:
        return ast.Flat(children[1], self._span(meta))

    def nonfinite(self, meta: Meta, children: list[Token]) -> ast.NonFinite:
        return ast.NonFinite(self._span(meta))

    def absent(self, meta: Meta, children: list[Any]) -> ast.Absent:
        return ast.Absent(children[1], self._span(meta))

    # arithmetic
    def sum(self, meta: Meta, children: list[Any]) -> ast.Value:
        return self._fold(children)

    def product(self, meta: Meta, children: list[Any]) -> ast.Value:
        return self._fold(children)

    def _fold(self, children: list[Any]) -> ast.Value:
        """`a - b + c` arrives flat; fold it left to right without recursion."""
        result: ast.Value = children[0]
        for op, right in zip(children[1::2], children[2::2]):
            span = Span(result.span.line, result.span.column, right.span.end_line,
                        right.span.end_column, result.span.start, right.span.end)
            result = ast.BinaryOp(str(op), result, right, span)
        return result

    def negative(self, meta: Meta, children: list[Any]) -> ast.Negative:
        _minus, operand = children
        return ast.Negative(operand, self._span(meta))

    def number(self, meta: Meta, children: list[Token]) -> ast.Number:
        unit = str(children[1]) if len(children) > 1 else None
        return ast.Number(float(children[0]), self._span(meta), unit)

    def metric(self, meta: Meta, children: list[Token]) -> ast.Value:
        """A bare name: a metric, unless it is a reserved one (`step`, `true`, `false`, `config.KEY`)."""
        name, span = str(children[0]), self._span(meta)
        if name == "step":
            return ast.StepRef(span)
        if name in ("true", "false"):
            return ast.Literal(name == "true", span)
        if name == "config" or name.startswith(CONFIG_PREFIX):
            return ast.ConfigRef(name[len(CONFIG_PREFIX):], span)
        return ast.MetricRef(name, span)

    def string(self, meta: Meta, children: list[Token]) -> ast.Literal:
        return ast.Literal(str(children[0])[1:-1], self._span(meta))

    def quoted_metric(self, meta: Meta, children: list[Token]) -> ast.MetricRef:
        return ast.MetricRef(str(children[0])[1:-1], self._span(meta))

    def call(self, meta: Meta, children: list[Any]) -> ast.Call:
        name, *args = children
        return ast.Call(str(name), tuple(args), self._span(meta))
