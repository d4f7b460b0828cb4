"""What a handler may ask for: the operations strategies yield, and what comes back.

A strategy's handler is a generator. It yields one of the records below and receives the answer:

==================  ==========================================================
yield               receives
==================  ==========================================================
``Select``          the row as a dict, or ``None`` when there is no row
``Insert``          the inserted row (``RETURNING *``); with ``on_conflict_update``, the inserted or
                    updated row, ``None`` when the conflict guard kept the row as it was
``Update``          the updated row, or ``None`` when the guard matched no row
``Rpc``             a tuple: each body statement's answer, in order
``Parallel``        a tuple: each statement's answer, in order, once all have come back
``Begin``/...       ``None``
``Sleep``           ``None``, after the delay
``ReadClock``       this host's clock reading, integer microseconds since 1970
==================  ==========================================================

A write the table rejects is thrown into the generator as :class:`TrackerError`, carrying the
constraint's name exactly as PostgreSQL reports it; a handler that does not catch it ends there
(as an unhandled promise rejection would in Node).

Timestamps everywhere are integer microseconds since the Unix epoch (UTC), the resolution of
PostgreSQL's ``timestamptz``. Values in ``Update.set`` may be plain values or expressions
(:class:`Col`, :class:`DbNow`, :class:`Greatest`, :class:`Least`, :class:`Coalesce`,
:class:`Case`, and in an upsert's update :class:`Excluded`); guards in
``Update.where`` are :class:`Cond` records, ANDed, with SQL's three-valued logic (a comparison
with NULL is unknown, and an unknown guard does not match).

Imports nothing but the standard library: drivers and backends interpret these records.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = "job_status"

#: Column name -> SQL type, in table order. ``tracker/schema.sql`` is the definition; a test keeps
#: the two in step.
COLUMNS: dict[str, str] = {
    "job_id": "text",
    "status": "text",
    "attempts": "integer",
    "max_attempts": "integer",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "started_at": "timestamptz",
    "completed_at": "timestamptz",
    "failed_at": "timestamptz",
    "error_message": "text",
    "progress": "jsonb",
    "cancelled": "boolean",
    "cancelled_at": "timestamptz",
}
STATUSES = ("pending", "waiting", "active", "completed", "failed", "delayed")

Row = dict[str, Any]


# --- expressions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """The row's current value of a column (in an UPDATE: the value before this statement)."""

    name: str


@dataclass(frozen=True)
class Excluded:
    """``EXCLUDED.<name>``: in an upsert's update (``Insert.on_conflict_update`` and
    ``conflict_where``), the value the INSERT proposed for a column: defaults and the BEFORE
    INSERT trigger applied, as PostgreSQL gives it."""

    name: str


@dataclass(frozen=True)
class DbNow:
    """``now()``: the database's clock at the start of the current transaction."""


@dataclass(frozen=True)
class Greatest:
    """``GREATEST(a, b, ...)``: the largest non-NULL argument (NULL if all are NULL)."""

    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", tuple(args))


@dataclass(frozen=True)
class Least:
    """``LEAST(a, b, ...)``: the smallest non-NULL argument (NULL if all are NULL)."""

    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", tuple(args))


@dataclass(frozen=True)
class Coalesce:
    """``COALESCE(a, b, ...)``: the first non-NULL argument."""

    args: tuple[Any, ...]

    def __init__(self, *args: Any) -> None:
        object.__setattr__(self, "args", tuple(args))


@dataclass(frozen=True)
class Cond:
    """One guard term: ``column <op> value``. ``op`` is one of :data:`COND_OPS`.

    ``value`` may be a plain value, an expression (``Col``, ``DbNow``...), or for ``in`` /
    ``not in`` a tuple of plain values; for ``is null`` / ``is not null`` it is ignored.
    """

    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Case:
    """``CASE WHEN <all conds> THEN then ELSE otherwise END``."""

    when: tuple[Cond, ...]
    then: Any
    otherwise: Any


Expr = Col | Excluded | DbNow | Greatest | Least | Coalesce | Case | Any

COND_OPS = ("=", "<>", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null")


def eq(column: str, value: Any) -> Cond:
    return Cond(column, "=", value)


def ne(column: str, value: Any) -> Cond:
    return Cond(column, "<>", value)


def lt(column: str, value: Any) -> Cond:
    return Cond(column, "<", value)


def le(column: str, value: Any) -> Cond:
    return Cond(column, "<=", value)


def gt(column: str, value: Any) -> Cond:
    return Cond(column, ">", value)


def ge(column: str, value: Any) -> Cond:
    return Cond(column, ">=", value)


def is_in(column: str, values: tuple[Any, ...] | list[Any]) -> Cond:
    return Cond(column, "in", tuple(values))


def not_in(column: str, values: tuple[Any, ...] | list[Any]) -> Cond:
    return Cond(column, "not in", tuple(values))


def is_null(column: str) -> Cond:
    return Cond(column, "is null")


def not_null(column: str) -> Cond:
    return Cond(column, "is not null")


# --- operations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Select:
    """``SELECT * FROM job_status WHERE job_id = $1 [FOR UPDATE]``."""

    job_id: str
    for_update: bool = False


@dataclass(frozen=True)
class Insert:
    """``INSERT INTO job_status (...) VALUES (...) RETURNING *``; omitted columns take defaults.

    With ``on_conflict_do_nothing`` an existing row is left alone and ``None`` comes back.

    With ``on_conflict_update`` it is an upsert: ``... ON CONFLICT (job_id) DO UPDATE SET ...
    [WHERE <conflict_where>] RETURNING *``. The SET's right-hand sides and the guard see the
    existing row (:class:`Col`) and the proposed one (:class:`Excluded`). PostgreSQL's semantics:
    the proposed row's constraints are checked first (even when it then updates); an existing row
    is locked before the guard is evaluated, so a row another open transaction inserted or locked
    makes the upsert wait and then update the version it committed; a guard that does not match
    answers ``None`` and, in a transaction, keeps the row locked.
    """

    job_id: str
    values: Mapping[str, Any] = field(default_factory=dict)
    on_conflict_do_nothing: bool = False
    on_conflict_update: Mapping[str, Any] | None = None
    conflict_where: tuple[Cond, ...] = ()

    def __post_init__(self) -> None:
        if self.on_conflict_update is not None and self.on_conflict_do_nothing:
            raise ValueError("Insert takes on_conflict_do_nothing or on_conflict_update, not both")
        if self.conflict_where and self.on_conflict_update is None:
            raise ValueError("Insert(conflict_where=...) guards an upsert's update: give on_conflict_update too")


@dataclass(frozen=True)
class Update:
    """``UPDATE job_status SET ... WHERE job_id = $1 AND <where> RETURNING *``.

    Right-hand sides see the row as it was before this statement, as in SQL.
    """

    job_id: str
    set: Mapping[str, Any]
    where: tuple[Cond, ...] = ()


@dataclass(frozen=True)
class Begin:
    """``BEGIN`` (READ COMMITTED)."""


@dataclass(frozen=True)
class Commit:
    """``COMMIT``; on a transaction that saw an error it rolls back, as PostgreSQL does."""


@dataclass(frozen=True)
class Rollback:
    """``ROLLBACK``."""


@dataclass(frozen=True)
class Sleep:
    """Wait ``ms`` milliseconds (``await setTimeout(ms)``); never touches the database. ``ms`` is
    a finite number from 0 to a day: anything else is a bug in the handler, raised where it is
    written."""

    ms: float

    def __post_init__(self) -> None:
        ms = self.ms
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 <= ms <= 86_400_000:
            raise ValueError(f"Sleep(ms) needs a number of milliseconds from 0 to 86400000 (a day), got {ms!r}")


@dataclass(frozen=True)
class ReadClock:
    """Read this host's clock (``Date.now()``): integer microseconds, whole milliseconds on a
    worker, as JavaScript gives them."""


@dataclass(frozen=True)
class Rpc:
    """A server-side function (supabase-js ``rpc(name)``, a PostgreSQL function): its ``body``,
    written as the same statements, runs at the server in one round trip and atomically: outside
    a transaction as one of its own (committed at its end; an error rolls all of it back), inside
    one as part of it. Its answer is each statement's answer, in order; ``now()`` in the body is
    the transaction's. A body statement that must wait for a row lock makes the call wait there,
    holding what the earlier ones locked."""

    name: str
    body: tuple[Select | Insert | Update, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Rpc(name, body) needs a function name, got {self.name!r}")
        if not isinstance(self.body, tuple) or not self.body or not all(
            isinstance(op, (Select, Insert, Update)) for op in self.body
        ):
            raise ValueError(
                f"Rpc {self.name!r}: its body must be a non-empty tuple of Select, Insert and Update "
                f"(a function runs in the caller's transaction or its own), got {self.body!r:.120}"
            )


#: What a :class:`Parallel` may send: statements that need no transaction of the handler's.
PARALLEL_OPS = (Select, Insert, Update, Rpc)


@dataclass(frozen=True)
class Parallel:
    """``await Promise.all([...])``: several statements in flight at once, written
    ``Parallel(op1, op2, ...)``. Each leaves at once on a connection of its own (a pool's client, an
    HTTP request), outside any transaction the handler holds, as a statement of its own
    (committed at its end); each has its own latency, so they may reach the server in any order.
    The answer is the tuple of their answers, in order, once all have come back. A statement the
    database refuses rejects the whole: the handler receives the first refusal to come back, as
    soon as it comes back, while the others still run to their end unseen (``Promise.all`` does
    not cancel them). ``Parallel()`` answers ``()`` at once. Only ``Select``, ``Insert``,
    ``Update`` and ``Rpc`` may be sent: a ``Begin`` on a connection of its own would open a
    transaction nothing could end."""

    ops: tuple[Select | Insert | Update | Rpc, ...]

    def __init__(self, *ops: Select | Insert | Update | Rpc) -> None:
        for op in ops:
            if not isinstance(op, PARALLEL_OPS):
                raise ValueError(
                    f"Parallel(op, ...) sends Select, Insert, Update and Rpc statements at once, got {op!r:.120}"
                )
        object.__setattr__(self, "ops", tuple(ops))


DbOp = Select | Insert | Update | Begin | Commit | Rollback | Rpc
Op = DbOp | Sleep | ReadClock | Parallel
DB_OPS = (Select, Insert, Update, Begin, Commit, Rollback, Rpc)

#: What a handler is: a generator that yields operations and receives their answers.
Handler = Generator[Op, Any, None]


class TrackerError(Exception):
    """A statement the database refused, as the handler sees it.

    ``sqlstate`` is PostgreSQL's error code (``23514`` check, ``23505`` unique, ``23502`` not
    null, ``25P02`` aborted transaction); ``constraint`` the constraint's name, as PostgreSQL puts
    it in the error (for NOT NULL: ``job_status_<column>_not_null``).
    """

    def __init__(self, sqlstate: str, constraint: str | None, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint
        self.message = message

    def key(self) -> tuple[str, str | None]:
        """What must agree between backends: the code and the constraint."""
        return (self.sqlstate, self.constraint)


def describe(op: Op) -> str:
    """One line of SQL-like text for a timeline (not executable: values are shown, not bound)."""
    if isinstance(op, Select):
        return "SELECT * FOR UPDATE" if op.for_update else "SELECT *"
    if isinstance(op, Insert):
        verb = "INSERT ON CONFLICT DO NOTHING" if op.on_conflict_do_nothing else "INSERT"
        inner = ", ".join(f"{k}={show(v)}" for k, v in op.values.items())
        text = f"{verb} ({inner})" if inner else verb
        if op.on_conflict_update is not None:
            sets = ", ".join(f"{k}={show(v)}" for k, v in op.on_conflict_update.items())
            where = " AND ".join(show_cond(c) for c in op.conflict_where)
            text += f" ON CONFLICT DO UPDATE SET {sets}" + (f" WHERE {where}" if where else "")
        return text
    if isinstance(op, Update):
        sets = ", ".join(f"{k}={show(v)}" for k, v in op.set.items())
        where = " AND ".join(show_cond(c) for c in op.where)
        return f"UPDATE SET {sets}" + (f" WHERE {where}" if where else "")
    if isinstance(op, Rpc):
        return f"RPC {op.name}(" + "; ".join(describe(s) for s in op.body) + ")"
    if isinstance(op, Parallel):
        return "PARALLEL(" + "; ".join(describe(s) for s in op.ops) + ")"
    if isinstance(op, Sleep):
        return f"sleep {op.ms:g} ms"
    if isinstance(op, ReadClock):
        return "read clock"
    return type(op).__name__.upper()


def show(value: Any) -> str:
    """A value or expression as a timeline shows it (timestamps as seconds.micros of the day)."""
    if isinstance(value, str):  # plain values first: a statement's commonest
        return repr(value)
    if isinstance(value, bool) or value is None:
        return "NULL" if value is None else str(value).lower()
    if isinstance(value, int):
        return format_timestamp(value) if value >= TIMESTAMP_FLOOR_US else str(value)
    if isinstance(value, Col):
        return value.name
    if isinstance(value, DbNow):
        return "now()"
    if isinstance(value, Excluded):
        return f"excluded.{value.name}"
    if isinstance(value, Greatest):
        return "GREATEST(" + ", ".join(show(a) for a in value.args) + ")"
    if isinstance(value, Least):
        return "LEAST(" + ", ".join(show(a) for a in value.args) + ")"
    if isinstance(value, Coalesce):
        return "COALESCE(" + ", ".join(show(a) for a in value.args) + ")"
    if isinstance(value, Case):
        cond = " AND ".join(show_cond(c) for c in value.when)
        return f"CASE WHEN {cond} THEN {show(value.then)} ELSE {show(value.otherwise)} END"
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
    return str(value)


#: Integers at or above this (2001-09-09) are shown as timestamps; attempts never get there.
TIMESTAMP_FLOOR_US = 10**15


def format_timestamp(us: int) -> str:
    """``HH:MM:SS.ffffff`` (UTC) of a microsecond timestamp: runs last seconds, not days."""
    seconds, micros = divmod(us, 1_000_000)
    day_seconds = seconds % 86400
    return f"{day_seconds // 3600:02d}:{day_seconds // 60 % 60:02d}:{day_seconds % 60:02d}.{micros:06d}"


def show_cond(cond: Cond) -> str:
    if cond.op in ("is null", "is not null"):
        return f"{cond.column} {cond.op.upper()}"
    return f"{cond.column} {cond.op.upper()} {show(cond.value)}"
