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


_OPERATORS = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def compile_expr(expr: Expr) -> Callable[[dict[str, Any], int], Any]:
    """``expr`` as a function of ``(row, now_us)`` that gives what :func:`evaluate` gives (the
    same values, the same exceptions, arguments evaluated in the same order), without walking
    the expression tree per call: the memory model checks every written row against every CHECK."""
    source = Source()
    result = source.value(expr)
    return source.function("expression", ("row", "now_us"), f"return {result}")  # type: ignore[return-value]


class Source:
    """Python source that evaluates expressions as :func:`evaluate` does, for :func:`compile`:
    straight-line statements into temporaries, SQL's three-valued logic spelled out per node
    (every argument of AND / OR / IN / GREATEST evaluated in order before deciding, CASE and
    COALESCE lazily), ints and strs compared directly and anything else through :func:`_cmp`,
    so that the values and the exceptions are :func:`evaluate`'s. The row is ``row``, the clock
    ``now_us``. A table's rules become one function this way instead of a tree of closures."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"_cmp": _cmp, "_json_loads": json.loads}
        self.depth = 1
        self.count = 0

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def temp(self) -> str:
        self.count += 1
        return f"_t{self.count}"

    def constant(self, value: Any) -> str:
        """``value`` as source: a literal for the types whose repr gives them back, else a name."""
        if value is None or value.__class__ in (int, str, bool):
            return repr(value)
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    def assign(self, source: str) -> str:
        name = self.temp()
        self.emit(f"{name} = {source}")
        return name

    def value(self, expr: Expr) -> str:
        """Emits what evaluates ``expr``; the name of a local that then holds its value."""
        if isinstance(expr, Lit):
            if expr.kind == "jsonb" and expr.value is not None:
                return self.assign(f"_json_loads({self.constant(expr.value)})")
            return self.assign(self.constant(expr.value))
        if isinstance(expr, Ref):
            return self.assign(f"row[{self.constant(expr.column)}]")
        if isinstance(expr, Now):
            return "now_us"
        if isinstance(expr, Compare):
            return self._compare(expr)
        if isinstance(expr, Logic):
            values = [self.value(a) for a in expr.args]
            decisive = expr.op == "or"  # OR is decided by a true argument, AND by a false one
            any_decisive = " or ".join(f"{v} is {decisive}" for v in values)
            any_unknown = " or ".join(f"{v} is None" for v in values)
            return self.assign(f"{decisive} if ({any_decisive}) else (None if ({any_unknown}) else {not decisive})")
        if isinstance(expr, Negate):
            value = self.value(expr.arg)
            return self.assign(f"None if {value} is None else not {value}")
        if isinstance(expr, NullTest):
            value = self.value(expr.arg)
            return self.assign(f"{value} is {'not ' if expr.negated else ''}None")
        if isinstance(expr, Member):
            return self._member(expr)
        if isinstance(expr, Choose):
            return self._lazy([(c, r) for c, r in expr.whens], expr.otherwise, "{} is True")
        if isinstance(expr, Pick):
            if expr.fn == "coalesce":
                return self._lazy([(a, None) for a in expr.args], None, "{} is not None")
            values = [self.value(a) for a in expr.args]
            present = self.assign(f"[_v for _v in ({''.join(v + ', ' for v in values)}) if _v is not None]")
            pick = "max" if expr.fn == "greatest" else "min"
            return self.assign(f"{pick}({present}) if {present} else None")
        if isinstance(expr, Convert):
            value = self.value(expr.arg)
            if expr.kind != "text":
                return value
            return self.assign(
                f"{value} if {value} is None else (('true' if {value} else 'false') "
                f"if isinstance({value}, bool) else str({value}))"
            )
        self.emit(f"raise TypeError({self.constant(f'not an expression: {expr!r}')})")
        return "None"

    def _compare(self, expr: Compare) -> str:
        if expr.labels:
            a, b = self.value(expr.left), self.value(expr.right)
            labels = self.constant(expr.labels)
            a = self.assign(f"{labels}.index({a}) if {a} is not None else {a}")
            b = self.assign(f"{labels}.index({b}) if {b} is not None else {b}")
            sides: tuple[Any, Any] = (None, None)
        else:
            a, b = self._operand(expr.left), self._operand(expr.right)
            sides = (_known(expr.left), _known(expr.right))
        fallback = f"_cmp({a}, {expr.op!r}, {b})"
        operator = _OPERATORS.get(expr.op)
        if operator is None:
            return self.assign(fallback)
        # Two ints or two strs compare every way, so _cmp's table of all six is not needed.
        kinds = {v.__class__ for v in sides if v is not None}
        if len(kinds) == 1 and next(iter(kinds)) in _ORDERED:
            kind = next(iter(kinds)).__name__  # one side is a constant of that class: test the other
            same = " and ".join(f"{x}.__class__ is {kind}" for x, v in zip((a, b), sides, strict=True) if v is None) or "True"
        else:
            a, b = (f"({x})" if x[0].isdigit() or x[0] == "-" else x for x in (a, b))  # (1).__class__
            same = f"{a}.__class__ is {b}.__class__ and ({a}.__class__ is int or {a}.__class__ is str)"
        return self.assign(f"({a} {operator} {b}) if {same} else {fallback}")

    def _operand(self, expr: Expr) -> str:
        """A constant int or str as its literal (used where ``is`` never tests it), else :meth:`value`."""
        known = _known(expr)
        return repr(known) if known.__class__ in _ORDERED else self.value(expr)

    def _member(self, expr: Member) -> str:
        value = self.value(expr.arg)
        items = [_known(i) for i in expr.items]
        kinds = {i.__class__ for i in items}
        inside = self.temp()
        if items and len(kinds) == 1 and next(iter(kinds)) in _ORDERED:
            # Constant ints or strs: for a value of their class each _cmp is ==, never None.
            self.emit(f"if {value}.__class__ is {next(iter(kinds)).__name__}:")
            self.emit(f"    {inside} = {value} in {self.constant(tuple(items))}")
            self.emit("else:")
            self.depth += 1
            found = [f"_cmp({value}, '=', {i!r})" for i in items]
        else:
            found = [self.assign(f"_cmp({value}, '=', {self.value(item)})") for item in expr.items]
        listed = self.assign(f"[{', '.join(found)}]")
        self.emit(f"{inside} = True if True in {listed} else (None if None in {listed} else False)")
        if items and len(kinds) == 1 and next(iter(kinds)) in _ORDERED:
            self.depth -= 1
        return self.assign(f"None if {inside} is None else {inside} != {expr.negated}")

    def _lazy(self, branches: list[tuple[Expr, Expr | None]], otherwise: Expr | None, taken: str) -> str:
        """CASE (a branch's result when its condition is true) and COALESCE (the first argument
        not NULL): each condition evaluated only when the ones before it were not taken."""
        result = self.temp()
        depth = self.depth
        for condition, then in branches:
            tested = self.value(condition)
            self.emit(f"if {taken.format(tested)}:")
            self.depth += 1
            self.emit(f"{result} = {tested if then is None else self.value(then)}")
            self.depth -= 1
            self.emit("else:")
            self.depth += 1
        self.emit(f"{result} = {'None' if otherwise is None else self.value(otherwise)}")
        self.depth = depth
        return result

    def function(self, name: str, parameters: tuple[str, ...], *last: str) -> Callable[..., Any]:
        """The statements emitted so far, then ``last``, as a function ``name(parameters)``."""
        for line in last:
            self.emit(line)
        text = f"def {name}({', '.join(parameters)}):\n" + "\n".join(self.lines) + "\n"
        namespace = dict(self.names)
        exec(compile(text, f"<racetrack {name}>", "exec"), namespace)  # noqa: S102 - our own generated source
        return namespace[name]  # type: ignore[no-any-return]


def compile_rules(not_null: tuple[str, ...], checks: tuple[Expr, ...]) -> Callable[[dict[str, Any], int], int | None]:
    """One function of ``(row, now_us)`` giving the index of the first rule the row breaks, or
    None: the columns ``not_null`` in their order (``row[column] is None``), then ``checks`` in
    their order (false, not unknown; index ``len(not_null) + i``), each evaluated as
    :func:`evaluate` would, and none after the first broken."""
    source = Source()
    for i, column in enumerate(not_null):
        source.emit(f"if row[{column!r}] is None:")
        source.emit(f"    return {i}")
    for i, check in enumerate(checks, len(not_null)):
        source.emit(f"if {source.value(check)} is False:")
        source.emit(f"    return {i}")
    return source.function("first_broken", ("row", "now_us"), "return None")  # type: ignore[return-value]


def compile_defaults(columns: tuple[Column, ...]) -> Callable[[int], dict[str, Any]]:
    """A function of ``now_us`` giving a new row of ``columns``' defaults (None where a column
    has none), each as :func:`evaluate` gives it against an empty row, in column order."""
    source = Source()
    source.emit("row = {}")
    values = [(c.name, "None" if c.default is None else source.value(c.default)) for c in columns]
    items = ", ".join(f"{name!r}: {value}" for name, value in values)
    return source.function("defaults", ("now_us",), f"return {{{items}}}")  # type: ignore[return-value]


def _known(expr: Expr) -> Any:
    """A constant's value when the source can rely on it (not jsonb, which is parsed per use)."""
    return expr.value if isinstance(expr, Lit) and expr.kind != "jsonb" else None


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
