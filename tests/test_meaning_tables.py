"""Every node type of the language has its row in the table of meanings and a handler in every
table that dispatches on it (both engines, explain): a construct added to the grammar and
forgotten somewhere fails here, not in a user's hands."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from ruledsl.authoring import explain
from ruledsl.engines.batch import polars_backend as batch
from ruledsl.engines.live import expression as live_expression
from ruledsl.engines.live import shorthand as live_shorthand
from ruledsl.lang import ast, meaning
from ruledsl.lang.meaning import Statistic


def node_types() -> set[type]:
    """Every dataclass of the AST module that is a node (it has a source span), but the Condition."""
    return {cls for _, cls in inspect.getmembers(ast, inspect.isclass)
            if dataclasses.is_dataclass(cls) and cls.__module__ == ast.__name__
            and "span" in {f.name for f in dataclasses.fields(cls)} and cls is not ast.Condition}


def test_every_node_type_has_a_role():
    roles = {*ast.SHORTHAND_NODES, *ast.EXPRESSION_PREDICATES, *ast.VALUES, ast.AppliedShorthand}
    assert node_types() == roles


def test_every_shorthand_term_has_a_meaning():
    assert set(meaning.TERMS) == set(ast.SHORTHAND_TERMS)
    for signature in meaning.TERMS.values():  # the engines rely on this order
        expected = (signature.value,) if signature.baseline is None else (signature.value, signature.baseline)
        assert signature.reads == expected, signature.name


TABLES = {
    "batch shorthand terms": (batch.TERM_HOLDS, ast.SHORTHAND_TERMS),
    "batch shorthand logic": (batch.LOGIC, ast.LOGIC),
    "batch predicates": (batch.PREDICATES, ast.EXPRESSION_PREDICATES),
    "batch values": (batch.VALUES, ast.VALUES),
    "live shorthand terms": (live_shorthand.TERM_HOLDS, ast.SHORTHAND_TERMS),
    "live shorthand logic": (live_shorthand.LOGIC, ast.LOGIC),
    "live predicates": (live_expression.PREDICATES, ast.EXPRESSION_PREDICATES),
    "live values": (live_expression.VALUES, ast.VALUES),
    "explain terms": (explain.TERM_WORDS, ast.SHORTHAND_TERMS),
    "explain values": (explain.VALUE_WORDS, ast.VALUES),
}


@pytest.mark.parametrize("name", TABLES)
def test_every_dispatch_table_covers_its_node_types(name):
    table, node_kinds = TABLES[name]
    assert set(table) == set(node_kinds), f"{name}: missing {set(node_kinds) - set(table)}"


@pytest.mark.parametrize("table", [batch.STATISTICS, live_shorthand.STATISTICS], ids=["batch", "live"])
def test_every_statistic_is_computed_by_both_engines(table):
    assert set(table) == set(Statistic)


@pytest.mark.parametrize("table", [batch.WINDOW_FUNCTIONS, live_expression.WINDOW_FUNCTIONS], ids=["batch", "live"])
def test_every_window_function_is_computed_by_both_engines(table):
    assert set(table) == set(meaning.SERIES_FUNCTIONS)


def test_explain_and_lint_read_the_first_index_from_the_table():
    from ruledsl.lang.read import parse_condition
    from ruledsl.lint.checks import values_needed

    for text, window, first in [("< 1", 5, 4), ("drop(10%)", 5, 9), ("spike(2x)", 5, 5), ("nonfinite", 5, 0),
                                ("flat(0.1) and < 3", 4, 3), ("drop(10%) or spike(3x)", 3, 5)]:
        condition = parse_condition(text)
        assert meaning.first_index(condition.body, window) == first, text
        assert values_needed(condition, window) == first + 1, text
