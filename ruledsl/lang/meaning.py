"""What each construct of a checked condition means, in one table (spec §3–§5).

PLACEHOLDER: filled in by the table-of-meanings step.
"""

from __future__ import annotations

from ruledsl.lang import ast


def threshold_of(condition: ast.Condition) -> float | None:
    """Spec §5: the first number of the first term (n/a for a non-numeric right operand)."""
    first = ast.leaves(condition.body)[0]
    if isinstance(first, ast.ShorthandCompare):
        return first.threshold.value
    if isinstance(first, ast.Between):
        return first.low.value
    if isinstance(first, ast.Change):
        return first.percent.value
    if isinstance(first, ast.Spike):
        return first.factor.value
    if isinstance(first, ast.Flat):
        return first.tolerance.value
    if isinstance(first, ast.Comparison):
        right = first.right
        if isinstance(right, ast.Number):
            return right.value
        if isinstance(right, ast.Negative) and isinstance(right.operand, ast.Number):
            return -right.operand.value
    return None
