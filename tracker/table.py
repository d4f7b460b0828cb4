"""The tracked table as the memory model sees it: columns, constraints, trigger, and the small
expression language CHECK constraints (and a scenario's own row invariants) are translated into.

A :class:`Table` is built from a SQL file by ``tracker.table_sql`` (PostgreSQL's own parser);
the bundled ``tracker/schema.sql`` goes through the same path. It is a frozen, picklable, hashable
record: worker processes get it with the scenario, and backends are cached by it.

Expressions follow SQL: NULL is ``None`` and boolean results are three-valued (``None`` is
unknown). A CHECK passes unless its expression is false; a WHERE matches only when it is true.

Imports only the standard library.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Value kinds the model stores exactly, and what a value of each is in Python.
KINDS = {
    "text": "a str",
    "int2": "a 16-bit integer",
    "int4": "a 32-bit integer",
    "int8": "a 64-bit integer",
    "boolean": "a bool",
    "timestamptz": "a timestamp (int microseconds since 1970)",
    "jsonb": "JSON",
    "enum": "one of the enum's labels",
}
INT_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1), "int8": (-(2**63), 2**63 - 1)}


# --- the expression language -------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A constant (jsonb constants are kept as their JSON text: the record stays hashable)."""

    value: Any
    kind: str


@dataclass(frozen=True)
class Ref:
    """The value of a column of the row being checked."""

    column: str


@dataclass(frozen=True)
class Now:
    """``now()`` / ``CURRENT_TIMESTAMP``: the database clock at the transaction's start."""


@dataclass(frozen=True)
class Compare:
    """``left <op> right``; ``labels`` is the enum's label order when both sides are that enum."""

    op: str
    left: Expr
    right: Expr
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Logic:
    """``AND`` / ``OR`` over two or more arguments."""

    op: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Negate:
    """``NOT arg``."""

    arg: Expr


@dataclass(frozen=True)
class NullTest:
    """``arg IS [NOT] NULL``."""

    arg: Expr
    negated: bool


@dataclass(frozen=True)
class Member:
    """``arg [NOT] IN (items)`` (also ``= ANY (ARRAY[...])`` and ``<> ALL (ARRAY[...])``)."""

    arg: Expr
    items: tuple[Expr, ...]
    negated: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Choose:
    """``CASE WHEN c1 THEN r1 ... ELSE otherwise END`` (a missing ELSE is NULL)."""

    whens: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr


@dataclass(frozen=True)
class Pick:
    """``COALESCE`` / ``GREATEST`` / ``LEAST``: NULLs skipped, the first / largest / smallest."""

    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Convert:
    """``arg::kind`` for the casts the model does exactly (widening integers, to text)."""

    arg: Expr
    kind: str


Expr = Lit | Ref | Now | Compare | Logic | Negate | NullTest | Member | Choose | Pick | Convert


def _cmp(a: Any, op: str, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return {"=": a == b, "<>": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _ranked(value: Any, labels: tuple[str, ...]) -> Any:
    """An enum's values compare by their place in the type's label list, not alphabetically."""
    return labels.index(value) if labels and value is not None else value


def evaluate(expr: Expr, row: dict[str, Any], now_us: int) -> Any:
    """The value of ``expr`` for ``row`` (None for NULL and for unknown)."""
    if isinstance(expr, Lit):
        return json.loads(expr.value) if expr.kind == "jsonb" and expr.value is not None else expr.value
    if isinstance(expr, Ref):
        return row[expr.column]
    if isinstance(expr, Now):
        return now_us
    if isinstance(expr, Compare):
        left, right = evaluate(expr.left, row, now_us), evaluate(expr.right, row, now_us)
        return _cmp(_ranked(left, expr.labels), expr.op, _ranked(right, expr.labels))
    if isinstance(expr, Logic):
        values = [evaluate(a, row, now_us) for a in expr.args]
        decisive = expr.op == "or"  # OR is decided by a true argument, AND by a false one
        if any(v is decisive for v in values):
            return decisive
        return None if any(v is None for v in values) else not decisive
    if isinstance(expr, Negate):
        value = evaluate(expr.arg, row, now_us)
        return None if value is None else not value
    if isinstance(expr, NullTest):
        return (evaluate(expr.arg, row, now_us) is None) != expr.negated
    if isinstance(expr, Member):
        value = evaluate(expr.arg, row, now_us)
        found = [_cmp(value, "=", evaluate(i, row, now_us)) for i in expr.items]
        inside = True if True in found else (None if None in found else False)
        return None if inside is None else inside != expr.negated
    if isinstance(expr, Choose):
        for condition, result in expr.whens:
            if evaluate(condition, row, now_us) is True:
                return evaluate(result, row, now_us)
        return evaluate(expr.otherwise, row, now_us)
    if isinstance(expr, Pick):
        if expr.fn == "coalesce":
            for arg in expr.args:
                value = evaluate(arg, row, now_us)
                if value is not None:
                    return value
            return None
        present = [v for v in (evaluate(a, row, now_us) for a in expr.args) if v is not None]
        if not present:
            return None
        return max(present) if expr.fn == "greatest" else min(present)
    if isinstance(expr, Convert):
        value = evaluate(expr.arg, row, now_us)
        if value is None or expr.kind != "text":
            return value
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    raise TypeError(f"not an expression: {expr!r}")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def compile_expr(expr: Expr) -> Callable[[dict[str, Any], int], Any]:
    """``expr`` as a function of ``(row, now_us)`` that gives what :func:`evaluate` gives (the
    same values, the same exceptions, arguments evaluated in the same order), without walking
    the expression tree per call: the memory model checks every written row against every CHECK."""
    if isinstance(expr, Lit):
        value = expr.value
        if expr.kind == "jsonb" and value is not None:
            return lambda row, now_us: json.loads(value)
        return lambda row, now_us: value
    if isinstance(expr, Ref):
        column = expr.column
        return lambda row, now_us: row[column]
    if isinstance(expr, Now):
        return lambda row, now_us: now_us
    if isinstance(expr, Compare):
        return _compiled_compare(expr)
    if isinstance(expr, Logic):
        args = tuple(compile_expr(a) for a in expr.args)
        decisive = expr.op == "or"  # OR is decided by a true argument, AND by a false one

        def logic(row: dict[str, Any], now_us: int) -> Any:
            values = [arg(row, now_us) for arg in args]
            unknown = False
            for v in values:
                if v is decisive:
                    return decisive
                if v is None:
                    unknown = True
            return None if unknown else not decisive

        return logic
    if isinstance(expr, Negate):
        arg = compile_expr(expr.arg)

        def negate(row: dict[str, Any], now_us: int) -> Any:
            value = arg(row, now_us)
            return None if value is None else not value

        return negate
    if isinstance(expr, NullTest):
        arg, negated = compile_expr(expr.arg), expr.negated
        return lambda row, now_us: (arg(row, now_us) is None) != negated
    if isinstance(expr, Member):
        arg, items, negated = compile_expr(expr.arg), tuple(compile_expr(i) for i in expr.items), expr.negated

        def member(row: dict[str, Any], now_us: int) -> Any:
            value = arg(row, now_us)
            found = [_cmp(value, "=", item(row, now_us)) for item in items]
            inside = True if True in found else (None if None in found else False)
            return None if inside is None else inside != negated

        return member
    if isinstance(expr, Choose):
        whens = tuple((compile_expr(c), compile_expr(r)) for c, r in expr.whens)
        otherwise = compile_expr(expr.otherwise)

        def choose(row: dict[str, Any], now_us: int) -> Any:
            for condition, result in whens:
                if condition(row, now_us) is True:
                    return result(row, now_us)
            return otherwise(row, now_us)

        return choose
    if isinstance(expr, Pick):
        args, fn = tuple(compile_expr(a) for a in expr.args), expr.fn
        if fn == "coalesce":

            def coalesce(row: dict[str, Any], now_us: int) -> Any:
                for arg in args:
                    value = arg(row, now_us)
                    if value is not None:
                        return value
                return None

            return coalesce
        pick = max if fn == "greatest" else min

        def extreme(row: dict[str, Any], now_us: int) -> Any:
            present = [v for v in (arg(row, now_us) for arg in args) if v is not None]
            return pick(present) if present else None

        return extreme
    if isinstance(expr, Convert):
        arg, to_text = compile_expr(expr.arg), expr.kind == "text"

        def convert(row: dict[str, Any], now_us: int) -> Any:
            value = arg(row, now_us)
            if value is None or not to_text:
                return value
            return ("true" if value else "false") if isinstance(value, bool) else str(value)

        return convert

    def unknown(row: dict[str, Any], now_us: int) -> Any:
        raise TypeError(f"not an expression: {expr!r}")

    return unknown


def _compiled_compare(expr: Compare) -> Callable[[dict[str, Any], int], Any]:
    left, right, op, labels = compile_expr(expr.left), compile_expr(expr.right), expr.op, expr.labels
    compare = _COMPARE.get(op)

    def comparison(row: dict[str, Any], now_us: int) -> Any:
        a, b = left(row, now_us), right(row, now_us)
        if labels:
            a, b = _ranked(a, labels), _ranked(b, labels)
        # Two ints or two strs compare every way, so :func:`_cmp`'s table of all six is not needed.
        if compare is not None and a.__class__ is b.__class__ and a.__class__ in _ORDERED:
            return compare(a, b)
        return _cmp(a, op, b)

    return comparison


_ORDERED = frozenset((int, str))


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column: ``sql_type`` as a cast names it; ``kind`` one of :data:`KINDS` (``other``:
    a type only PostgreSQL handles); ``default`` an expression, or None for NULL."""

    name: str
    sql_type: str
    kind: str
    not_null: bool = False
    default: Expr | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """A CHECK constraint: its name as PostgreSQL gives it and its translation."""

    name: str
    expr: Expr


@dataclass(frozen=True)
class Table:
    """The tracked table. ``key`` is its one-column primary key (the job's id, which operations
    address rows by); ``stamped`` the columns a ``BEFORE UPDATE`` trigger sets to ``now()``
    (``stamped_on_insert``: on INSERT too). ``sql`` is the file's text as PostgreSQL runs it,
    ``functions`` the functions it creates (pinned to racetrack's schema). ``unmodelled`` is the
    one line saying why the memory model cannot take this table (None when it can)."""

    name: str
    columns: tuple[Column, ...]
    key: str
    key_constraint: str
    checks: tuple[Check, ...] = ()
    stamped: tuple[str, ...] = ()
    stamped_on_insert: bool = False
    sql: str = field(default="", repr=False)
    functions: tuple[str, ...] = ()
    source: str = ""
    unmodelled: str | None = None

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def types(self) -> dict[str, str]:
        """Column name -> SQL type, in table order."""
        return {c.name: c.sql_type for c in self.columns}
