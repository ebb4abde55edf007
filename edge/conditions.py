"""Conditions a shop writes over named values, `{name: {operator: bound}}`, all of which must
hold: the one definition of their operators, shared by triggered-offer rules (`edge.rules`) and
segment rules (`edge.segments`), and the checks that say what is wrong with one."""

from __future__ import annotations

import math
from collections.abc import Callable

# {value name: {operator: bound}}
Conditions = dict[str, dict[str, object]]

# Numbers take these; labels (strings) take LABEL_OPERATORS.
NUMERIC_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda x, v: x > v,
    "ge": lambda x, v: x >= v,
    "lt": lambda x, v: x < v,
    "le": lambda x, v: x <= v,
    "eq": lambda x, v: x == v,
}
LABEL_OPERATORS: dict[str, Callable[[str, object], bool]] = {
    "eq": lambda x, v: x == v,
    "in": lambda x, v: isinstance(v, list) and x in v,
    "not_in": lambda x, v: isinstance(v, list) and x not in v,
}
SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "in": "in", "not_in": "not in"}


def holds(op: str, value: float | str, bound: object) -> bool:
    """Whether `value op bound` holds; a number takes the numeric operators, a label the
    label ones. The operator was checked when the conditions were (`bound_errors`)."""
    if isinstance(value, str):
        return LABEL_OPERATORS[op](value, bound)
    return NUMERIC_OPERATORS[op](value, bound)  # type: ignore[arg-type]  # a number: bound_errors checked it


def bound_errors(field: str, op: str, bound: object, numeric: bool) -> list[str]:
    """What is wrong with one `op: bound` of the condition on `field`, a number (`numeric`) or
    a label, naming the field and what is allowed."""
    operators = NUMERIC_OPERATORS if numeric else LABEL_OPERATORS
    if op not in operators:
        return [f"{field}: unknown operator {op!r}; allowed: {', '.join(operators)}"]
    where = f"{field}.{op}"
    if numeric and not (
        isinstance(bound, int | float) and not isinstance(bound, bool) and math.isfinite(bound)
    ):
        return [f"{where}: {bound!r} is not a number"]
    if not numeric and op == "eq" and not isinstance(bound, str):
        return [f"{where}: {bound!r} is not a label (a string)"]
    if (
        not numeric
        and op != "eq"
        and not (isinstance(bound, list) and all(isinstance(v, str) for v in bound))
    ):
        return [f"{where}: {bound!r} is not a list of labels"]
    return []
