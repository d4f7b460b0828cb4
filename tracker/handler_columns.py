"""The columns a strategy's handlers write, read from their source, checked against the tracked
table before any run: a write to a column the table does not have is one error at load time,
naming the handler's file and line, instead of a crash in every run.

Only what the source says literally is checked: ``Update(..., {"col": ...})`` /
``Update(..., set={...})`` and ``Insert(..., {"col": ...})`` / ``Insert(..., values={...})`` with
string keys. Columns chosen at run time (a dict built elsewhere, ``**spread``) are left to the
run-time check: the model refuses the write, naming the table's columns, and the run ends at the
handler's ``yield`` with its file and line.

Imports the standard library and ``tracker``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from tracker.errors import UserError
from tracker.strategies import EVENTS, Strategy
from tracker.table import Table

_WRITES = {"Update": "set", "Insert": "values"}


class UnknownColumnWrite(UserError):
    """A handler writes a column the table does not have; ``str()`` is the one line."""


@dataclass(frozen=True)
class ColumnWrite:
    """One literal column name a handler writes: where (file, line), which handler, what."""

    file: str
    line: int
    handler: str
    operation: str
    column: str


def _called(node: ast.Call) -> str | None:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    return name if name in _WRITES else None


def literal_writes(fn: Callable[..., Any]) -> Iterator[ColumnWrite]:
    """The column names ``fn``'s source writes literally (nothing when its source is unavailable)."""
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<unknown>"
    except (OSError, TypeError):  # built in C, typed at a prompt: the run-time check still holds
        return
    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:  # a lambda's line cut mid-expression: leave it to the run-time check
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or (operation := _called(node)) is None:
            continue
        given = node.args[1] if len(node.args) > 1 else next(
            (k.value for k in node.keywords if k.arg == _WRITES[operation]), None
        )
        if not isinstance(given, ast.Dict):
            continue
        for key in given.keys:
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                yield ColumnWrite(file, first + key.lineno - 1, getattr(fn, "__qualname__", repr(fn)), operation, key.value)


@cache
def check_writes(strategy: Strategy, table: Table) -> None:
    """Raise :class:`UnknownColumnWrite` for the first literal write (in event order) to a
    column ``table`` does not have, or to its key (which operations set themselves)."""
    for event in EVENTS:
        fn = strategy.handler(event)
        if fn is None:
            continue
        for write in literal_writes(fn):
            if write.column not in table.names or write.column == table.key:
                what = "sets the key column" if write.column == table.key else "writes column"
                raise UnknownColumnWrite(
                    f"{write.file}:{write.line}: strategy {strategy.name}: handler {write.handler} ({event}) {write.operation} "
                    f"{what} {write.column!r}, which table {table.name} ({table.source}) cannot take; "
                    f"its columns: {', '.join(c for c in table.names if c != table.key)}"
                )
