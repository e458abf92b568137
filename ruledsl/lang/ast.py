"""The typed syntax tree of a condition.

Immutable nodes with the source span they came from. The tree knows nothing
of polars or of any engine: engines walk it (ruledsl/engines/).

Two kinds of condition exist (docs/language.md §3):
  * a shorthand condition applies to the rule's `metric`: its leaves are
    shorthand terms (`< 0.5`, `drop(50%)`, …) combined with and/or/not;
  * a full expression names its metrics: its leaves are comparisons between
    arithmetic expressions over metric references and window functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ruledsl.lang.errors import Span

# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Number:
    value: float
    span: Span
    unit: str | None = None  # "%" or "x" as written; only meaningful in drop/rise and spike


@dataclass(frozen=True)
class MetricRef:
    name: str
    span: Span


@dataclass(frozen=True)
class StepRef:
    """`step`: the row's training step, a number."""

    span: Span


@dataclass(frozen=True)
class ConfigRef:
    """`config.KEY`: a value of the run's configuration (a number, a boolean or a string)."""

    key: str
    span: Span


@dataclass(frozen=True)
class Literal:
    """`true`, `false` or a quoted string: compared with `==`/`!=` only."""

    value: bool | str
    span: Span


@dataclass(frozen=True)
class Negative:
    operand: Value
    span: Span


@dataclass(frozen=True)
class BinaryOp:
    op: str  # one of + - * /
    left: Value
    right: Value
    span: Span


@dataclass(frozen=True)
class Call:
    """`mean(m, W)`, `delta(m, k)`, `abs(e)`, …: checked against ruledsl.lang.meaning.FUNCTIONS."""

    name: str
    args: tuple[Value, ...]
    span: Span

    @property
    def metric(self) -> MetricRef:
        """The series a window function reads (every function but `abs`)."""
        assert isinstance(self.args[0], MetricRef)
        return self.args[0]

    @property
    def window(self) -> int:
        assert isinstance(self.args[1], Number)
        return int(self.args[1].value)

    @property
    def lag(self) -> int:
        """L of a lagged window `mean(m, W, L)`: the window ends L values before the current one."""
        if len(self.args) < 3:
            return 0
        assert isinstance(self.args[2], Number)
        return int(self.args[2].value)


Value = Number | MetricRef | StepRef | ConfigRef | Literal | Negative | BinaryOp | Call


# ---------------------------------------------------------------- comparisons

COMPARATORS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Comparison:
    """A full-expression comparison: `left op right`."""

    op: str
    left: Value
    right: Value
    span: Span


# ---------------------------------------------------------------- shorthand terms


@dataclass(frozen=True)
class ShorthandCompare:
    """`< c`: the smoothed value v_i compared with c."""

    op: str
    threshold: Number
    span: Span


@dataclass(frozen=True)
class Between:
    """`range(a, b)` (inside=True) or `outside(a, b)` (inside=False)."""

    low: Number
    high: Number
    inside: bool
    span: Span


@dataclass(frozen=True)
class Change:
    """`drop(P%)` or `rise(P%)` against the baseline B = mean of the first W values."""

    direction: str  # "drop" or "rise"
    percent: Number
    span: Span


@dataclass(frozen=True)
class Spike:
    """`spike(Kx)`: x_i >= K * mean of the previous W values."""

    factor: Number
    span: Span


@dataclass(frozen=True)
class Flat:
    """`flat(e)`: max - min of the last W values <= e."""

    tolerance: Number
    span: Span


@dataclass(frozen=True)
class NonFinite:
    """`nonfinite`: the raw value is NaN or ±inf."""

    span: Span


@dataclass(frozen=True)
class Absent:
    """`absent(N)`: at least N steps since the metric was last present (it stopped arriving)."""

    steps: Number
    span: Span


ShorthandTerm = ShorthandCompare | Between | Change | Spike | Flat | NonFinite | Absent


@dataclass(frozen=True)
class AppliedShorthand:
    """`loss drop(50%)`: a shorthand written after its metric (inline alerts only).

    The checker turns the leading one of an inline alert into the rule's metric;
    anywhere else it is an error. `term` is a shorthand term, or any predicate after
    `not` (`loss not range(0.6, 0.8)`); `loss (< 0.5 or > 2)` is read as a call of
    `loss` and rewritten the same way.
    """

    metric: MetricRef
    term: Predicate
    span: Span


# ---------------------------------------------------------------- logic


@dataclass(frozen=True)
class And:
    operands: tuple[Predicate, ...]
    span: Span


@dataclass(frozen=True)
class Or:
    operands: tuple[Predicate, ...]
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Predicate
    span: Span


Predicate = And | Or | Not | Comparison | ShorthandTerm | AppliedShorthand
Node = Predicate | Value

SHORTHAND_TERMS = (ShorthandCompare, Between, Change, Spike, Flat, NonFinite, Absent)
# Terms that read the raw rows of their key rather than its series of finite values, and stand alone.
ALONE_TERMS = (NonFinite, Absent)
LOGIC = (And, Or, Not)
VALUES = (Number, MetricRef, StepRef, ConfigRef, Literal, Negative, BinaryOp, Call)
# Every node type an engine meets in a checked condition, by the role it plays there (an
# AppliedShorthand never reaches an engine: the checker rewrites or refuses it).
SHORTHAND_NODES = (*LOGIC, *SHORTHAND_TERMS)
EXPRESSION_PREDICATES = (*LOGIC, Comparison)

# ---------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """A checked condition.

    `kind` is "shorthand" (applies to the rule's metric) or "expression".
    `sustain` is N of a trailing `for N steps`, or None when not written.
    """

    body: Predicate
    kind: str
    sustain: int | None
    source: str
    span: Span

    @property
    def is_shorthand(self) -> bool:
        return self.kind == "shorthand"

    @property
    def text(self) -> str:
        """The condition as written (`source` is the text its spans index: for an inline
        alert, the whole alert)."""
        return self.source[self.span.start:self.span.end]


# ---------------------------------------------------------------- walking


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-nodes of `node`, in source order."""
    if isinstance(node, (And, Or)):
        return node.operands
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, Comparison):
        return (node.left, node.right)
    if isinstance(node, AppliedShorthand):
        return (node.metric, node.term)
    if isinstance(node, Negative):
        return (node.operand,)
    if isinstance(node, BinaryOp):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node under `node` (itself included), in source order, depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def depth(node: Node) -> int:
    """The number of levels of the tree under `node` (1 for a leaf), without recursion.
    The parser keeps it at most ruledsl.lang.parser.MAX_DEPTH for the body of any condition."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children(current))
    return deepest


def leaves(predicate: Predicate) -> list[Predicate]:
    """The terms of an and/or/not combination, in source order."""
    found: list[Predicate] = []
    stack: list[Predicate] = [predicate]
    while stack:
        current = stack.pop()
        if isinstance(current, (And, Or, Not)):
            stack.extend(reversed(children(current)))  # type: ignore[arg-type]
        else:
            found.append(current)
    return found


def metric_names(node: Node) -> list[str]:
    """The metrics a condition reads, each once, in source order."""
    seen: dict[str, None] = {}
    for n in walk(node):
        if isinstance(n, MetricRef):
            seen.setdefault(n.name, None)
    return list(seen)


def config_keys(node: Node) -> list[str]:
    """The configuration keys a condition reads (`config.KEY`), each once, in source order."""
    return list(dict.fromkeys(n.key for n in walk(node) if isinstance(n, ConfigRef)))
