"""The in-memory model of the tracker: the tracked table (a :class:`~tracker.table.Table` read
from SQL: the bundled ``schema.sql`` or the user's own), its constraints, its trigger, and READ
COMMITTED transactions with row locks, as PostgreSQL behaves for the operations in
``tracker.ops``. A table it cannot reproduce exactly is refused (:class:`UnmodelledTable`).

It is a *model* that must agree with PostgreSQL (``--backend both`` checks it statement by
statement), not a stand-in for it. What it models:

* defaults and the ``updated_at``-style trigger use ``now()``: the database clock at the start of the
  current transaction (at the statement for autocommit statements);
* NOT NULL, then CHECK constraints in alphabetical order of name (as PostgreSQL evaluates them),
  then the primary key; a failure raises the same SQLSTATE and constraint name as PostgreSQL;
* an error inside a transaction aborts it: later statements fail with 25P02 until it ends; its
  locks are released at the error (PostgreSQL aborts the transaction there, the ROLLBACK only
  ends the block);
* an upsert (``Insert.on_conflict_update``) checks the proposed row's constraints first, then on
  a conflict locks the existing row (waiting for a transaction that inserted or locked it, then
  starting over on the version it committed), evaluates its guard on that version with
  ``EXCLUDED`` as the proposed row, and updates it as an UPDATE would (trigger, constraints); a
  guard that does not match leaves the row locked and answers ``None``;
* UPDATE and SELECT FOR UPDATE lock the row until the transaction ends; a plain SELECT never
  waits and sees the last committed version (or the session's own); an UPDATE whose guard does
  not match the committed version skips the row without waiting, and one that waited re-checks
  its guard on the version the blocker committed (PostgreSQL's EvalPlanQual).

Imports only ``tracker``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracker.backend import Blocked, Done, Outcome, RpcCalls
from tracker.errors import UserError
from tracker.ops import (
    Begin,
    Case,
    Coalesce,
    Col,
    Commit,
    Cond,
    DbNow,
    DbOp,
    Excluded,
    Greatest,
    Insert,
    Least,
    Rollback,
    Row,
    Rpc,
    Select,
    TrackerError,
    Update,
)
from tracker.table import INT_RANGES, KINDS, Column, Table, compile_defaults, compile_rules
from tracker.table import evaluate as evaluate_sql
from tracker.table_sql import bundled_table


class UnmodelledTable(UserError):
    """A table the memory model cannot reproduce exactly; the line names the construct."""


# --- SQL three-valued logic --------------------------------------------------------------------
# True / False / None (unknown). A CHECK passes unless it is False; a WHERE matches only if True.


def _or(*values: bool | None) -> bool | None:
    if any(v is True for v in values):
        return True
    if any(v is None for v in values):
        return None
    return False


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _cmp(a: Any, op: str, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if op == "=":
        return bool(a == b)
    if op == "<>":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    raise ValueError(f"unknown comparison {op!r}")


def checks_of(table: Table) -> dict[str, Callable[[Row], bool | None]]:
    """Each CHECK constraint of ``table`` as a predicate, by name (False only when SQL's is false)."""
    def predicate(expr: Any) -> Callable[[Row], bool | None]:
        return lambda row: evaluate_sql(expr, row, 0)

    return {c.name: predicate(c.expr) for c in table.checks}


#: The bundled table's CHECK constraints and NOT NULL columns, by the names PostgreSQL gives them.
CHECKS = checks_of(bundled_table())
NOT_NULL_COLUMNS = tuple(c.name for c in bundled_table().columns if c.not_null)


def check_row(row: Row, table: Table | None = None, now_us: int = 0) -> TrackerError | None:
    """The error PostgreSQL would raise for storing ``row``, or ``None`` if it is allowed: NOT
    NULL in column order, then the CHECKs in name order."""
    return _rules_of(table or bundled_table()).check_row(row, now_us)


@functools.lru_cache(maxsize=32)
def _rules_of(table: Table) -> _Rules:
    """A table's :class:`_Rules`, shared by every model of it (a sweep makes one model per run)."""
    return _Rules(table)


class _Rules:
    """What the model looks up in its table for every statement, worked out once per table: the
    columns by name, the ones a statement may set, the enum columns' labels, the defaults, and
    the NOT NULL columns and CHECKs compiled into one function
    (:func:`~tracker.table.compile_rules`)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = {c.name: c for c in table.columns}
        self.settable = frozenset(self.columns) - {table.key}
        self.enum_labels = {c.name: c.labels for c in table.columns if c.kind == "enum"}
        self.defaults = compile_defaults(table.columns)
        not_null = tuple(c.name for c in table.columns if c.not_null)
        self._first_broken = compile_rules(not_null, tuple(c.expr for c in table.checks))
        #: Per column: the classes a value may have to fit without a look (None: any), and the
        #: range an int must be in (empty when ints need :func:`_check_types`).
        self._accepts = {c.name: _ACCEPTS.get(c.kind, (_NULL, 1, 0)) for c in table.columns}
        #: The error of each rule, in the order compile_rules numbers them.
        self._errors = tuple(
            (
                "23502",
                f"{table.name}_{name}_not_null",
                f'null value in column "{name}" of relation "{table.name}" violates not-null constraint',
            )
            for name in not_null
        ) + tuple(
            ("23514", c.name, f'new row for relation "{table.name}" violates check constraint "{c.name}"')
            for c in table.checks
        )

    def check_types(self, verb: str, values: dict[str, Any]) -> TrackerError | None:
        """:func:`_check_types`, deciding the values whose class alone says they fit (and ints in
        their column's range) without it; any other value has it check them all, as before."""
        accepts = self._accepts
        for name, value in values.items():
            classes, lo, hi = accepts[name]
            if classes is None or value.__class__ in classes or (value.__class__ is int and lo <= value <= hi):
                continue
            return _check_types(self.table, verb, values, self.columns)
        return None

    def check_row(self, row: Row, now_us: int) -> TrackerError | None:
        broken = self._first_broken(row, now_us)
        return None if broken is None else TrackerError(*self._errors[broken])

    def check_columns(self, verb: str, values: Any) -> None:
        if not self.settable.issuperset(values):
            _check_columns(self.table, verb, values)  # says which column, as it always did


_NULL = frozenset((type(None),))
#: What :func:`_fits` accepts, by kind, in the form ``_Rules._accepts`` keeps (enum labels and
#: other kinds are left to :func:`_check_types`).
_ACCEPTS: dict[str, tuple[frozenset[type] | None, int, int]] = {
    "text": (frozenset((str, type(None))), 1, 0),
    "boolean": (frozenset((bool, type(None))), 1, 0),
    "jsonb": (None, 1, 0),
    "timestamptz": (_NULL, -(2**62) + 1, 2**62 - 1),
    **{kind: (_NULL, lo, hi) for kind, (lo, hi) in INT_RANGES.items()},
}

#: Values an expression may be that evaluate to themselves (the common case, tested first).
_PLAIN = frozenset((int, str, float, bool, type(None)))


def evaluate(expr: Any, row: Row | None, now_us: int) -> Any:
    """The value of an expression against ``row`` (the version before the statement)."""
    if expr.__class__ in _PLAIN:
        return expr
    if isinstance(expr, Col):
        if row is None or expr.name not in row:
            raise ValueError(f"column {expr.name!r} is not a column of the table")
        return row[expr.name]
    if isinstance(expr, DbNow):
        return now_us
    if isinstance(expr, Excluded):
        raise ValueError(f"EXCLUDED.{expr.name} is only known in an upsert's on_conflict_update or conflict_where")
    if isinstance(expr, (Greatest, Least)):
        values = [v for v in (evaluate(a, row, now_us) for a in expr.args) if v is not None]
        if not values:
            return None
        return max(values) if isinstance(expr, Greatest) else min(values)
    if isinstance(expr, Coalesce):
        for arg in expr.args:
            value = evaluate(arg, row, now_us)
            if value is not None:
                return value
        return None
    if isinstance(expr, Case):
        return evaluate(expr.then if matches(expr.when, row, now_us) else expr.otherwise, row, now_us)
    # Stored jsonb is copied once, here: rows are then shared by shallow copies and never mutated.
    return copy.deepcopy(expr) if isinstance(expr, (dict, list)) else expr


def cond_value(cond: Cond, row: Row | None, now_us: int, labels: tuple[str, ...] = ()) -> bool | None:
    """One guard term in three-valued logic (``labels``: the enum order of the column's type)."""
    if row is None:
        return None
    if cond.column not in row:
        raise ValueError(f"a guard names column {cond.column!r}, which is not a column of the table")
    current = row[cond.column]
    if cond.op == "is null":
        return current is None
    if cond.op == "is not null":
        return current is not None
    if cond.op in ("in", "not in"):
        if current is None:
            return None
        inside = _or(*(_cmp(current, "=", v) for v in cond.value))
        return inside if cond.op == "in" else _not(inside)
    other = evaluate(cond.value, row, now_us)
    if labels and current is not None and other is not None:
        current, other = labels.index(current), labels.index(other)
    return _cmp(current, cond.op, other)


def matches(
    where: tuple[Cond, ...], row: Row | None, now_us: int, enum_labels: Mapping[str, tuple[str, ...]] | None = None
) -> bool:
    """A WHERE clause matches only when it is true (not false, not unknown). ``enum_labels``:
    the label order of the table's enum columns, by column."""
    if row is None:
        return False
    for cond in where:
        labels = enum_labels.get(cond.column, ()) if enum_labels else ()
        if cond_value(cond, row, now_us, labels) is not True:
            return False
    return True


def _with_excluded(expr: Any, proposed: Row) -> Any:
    """``expr`` with every ``EXCLUDED.<column>`` replaced by the proposed row's value."""
    if isinstance(expr, Excluded):
        if expr.name not in proposed:
            raise ValueError(f"EXCLUDED names column {expr.name!r}, which is not a column of the table")
        return proposed[expr.name]
    if isinstance(expr, (Greatest, Least, Coalesce)):
        return type(expr)(*(_with_excluded(a, proposed) for a in expr.args))
    if isinstance(expr, Case):
        when = tuple(Cond(c.column, c.op, _with_excluded(c.value, proposed)) for c in expr.when)
        return Case(when, _with_excluded(expr.then, proposed), _with_excluded(expr.otherwise, proposed))
    if isinstance(expr, tuple):
        return tuple(_with_excluded(v, proposed) for v in expr)
    return expr


def _check_columns(table: Table, verb: str, values: Any) -> None:
    for column in values:
        if column not in table.names or column == table.key:
            raise ValueError(
                f"{verb} may not set column {column!r} (the columns of {table.name}: {', '.join(table.names)})"
            )


def _fits(kind: str, value: Any, labels: tuple[str, ...] = ()) -> bool:
    """Whether PostgreSQL would store ``value`` in a column of ``kind`` as the value it is."""
    if value is None or kind == "jsonb":
        return True
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("text", "enum"):
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    if kind in INT_RANGES:
        return INT_RANGES[kind][0] <= value <= INT_RANGES[kind][1]
    return -(2**62) < value < 2**62  # timestamptz: microseconds since 1970


def _check_types(
    table: Table, verb: str, values: dict[str, Any], columns: Mapping[str, Column] | None = None
) -> TrackerError | None:
    """A value of the wrong type is a bug in the handler (PostgreSQL would refuse the statement's
    text, not a constraint): said naming the column, its type and the value. A string that is no
    label of an enum column is the server's error (22P02), as PostgreSQL raises it. ``columns``:
    the table's columns by name, if the caller has them."""
    for name, value in values.items():
        column = columns[name] if columns is not None else table.column(name)
        assert column is not None
        if not _fits(column.kind, value):
            raise ValueError(f"{verb} sets {name} ({column.sql_type}) to {value!r}, which is not {KINDS[column.kind]}")
        if column.kind == "enum" and value is not None and value not in column.labels:
            return TrackerError(
                "22P02", None, f'invalid input value for enum {column.sql_type.strip(chr(34))}: "{value}"'
            )
    return None


_DONE = Done()  # a frozen answer without a value or error: every BEGIN/COMMIT/ROLLBACK may share it


@dataclass
class _Session:
    in_tx: bool = False
    aborted: bool = False
    tx_now_us: int = 0
    #: This transaction's own versions of rows (its writes, not yet committed).
    writes: dict[str, Row] = field(default_factory=dict)
    #: Rows this transaction has locked (updated, inserted or selected FOR UPDATE).
    locks: set[str] = field(default_factory=set)
    #: The statement that answered Blocked, with its database time.
    waiting: tuple[DbOp, int] | None = None


class MemoryTracker:
    """The tracked table in memory. State: committed rows, sessions, row locks."""

    name = "memory"

    def __init__(self, table: Table | None = None) -> None:
        self.table = table or bundled_table()
        if self.table.unmodelled:
            raise UnmodelledTable(self.table.unmodelled)
        self._rules = _rules_of(self.table)
        self.reset()

    def reset(self) -> None:
        self._committed: dict[str, Row] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock_owner: dict[str, str] = {}
        self._rpcs = RpcCalls()

    # -- the contract ---------------------------------------------------------------------------

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = _Session()
        cls = op.__class__
        if cls is not Update and cls is not Select and cls is not Insert:  # the common three skip these
            if isinstance(op, Begin):
                if not state.in_tx:
                    state.in_tx, state.aborted, state.tx_now_us = True, False, db_now_us
                return _DONE
            if isinstance(op, (Commit, Rollback)):
                self._end_transaction(session, state, commit=isinstance(op, Commit) and not state.aborted)
                return _DONE
        if state.aborted:
            return Done(
                error=TrackerError(
                    "25P02",
                    None,
                    "current transaction is aborted, commands ignored until end of transaction block",
                )
            )
        if cls is Rpc:
            return self._rpcs.execute(op, db_now_us, state.in_tx, lambda o: self.execute(session, o, db_now_us), session)  # type: ignore[arg-type]
        now_us = state.tx_now_us if state.in_tx else db_now_us
        if cls is Update:  # as _statement would, without its isinstance tests
            outcome = self._update(session, state, op, now_us, False)  # type: ignore[arg-type]
        elif cls is Select:
            outcome = self._select(session, state, op)  # type: ignore[arg-type]
        elif cls is Insert:
            outcome = self._insert(session, state, op, now_us)  # type: ignore[arg-type]
        else:
            outcome = self._statement(session, state, op, now_us, resumed=False)
        if isinstance(outcome, Blocked):
            state.waiting = (op, db_now_us)
        elif outcome.error is not None and state.in_tx:
            self._abort(session, state)
        return outcome

    def resume(self, session: str) -> Outcome:
        if session in self._rpcs:
            db_now_us = self._sessions[session].waiting[1]  # type: ignore[index]
            return self._rpcs.resume(session, lambda: self._resume(session), lambda o: self.execute(session, o, db_now_us))
        return self._resume(session)

    def _resume(self, session: str) -> Outcome:
        state = self._sessions[session]
        if state.waiting is None:
            raise RuntimeError(f"session {session} has no statement waiting")
        op, db_now_us = state.waiting
        now_us = state.tx_now_us if state.in_tx else db_now_us
        outcome = self._statement(session, state, op, now_us, resumed=True)
        if isinstance(outcome, Done):
            state.waiting = None
            if outcome.error is not None and state.in_tx:
                self._abort(session, state)
        return outcome

    def end_session(self, session: str) -> None:
        self._rpcs.end(session)
        state = self._sessions.pop(session, None)
        if state is not None and state.in_tx:
            self._end_transaction(session, state, commit=False)

    def rows(self) -> dict[str, Row]:
        return {k: dict(v) for k, v in self._committed.items()}

    def lock_holders(self) -> dict[str, str]:
        """Row -> session holding its lock (for tests and timelines)."""
        return dict(self._lock_owner)

    # -- statements -----------------------------------------------------------------------------

    def _visible(self, state: _Session, job_id: str) -> Row | None:
        return state.writes.get(job_id, self._committed.get(job_id))

    def _blockers(self, session: str, job_id: str) -> Blocked | None:
        owner = self._lock_owner.get(job_id)
        return Blocked((owner,)) if owner is not None and owner != session else None

    def _statement(self, session: str, state: _Session, op: DbOp, now_us: int, resumed: bool) -> Outcome:
        if isinstance(op, Select):
            return self._select(session, state, op)
        if isinstance(op, Insert):
            return self._insert(session, state, op, now_us)
        if isinstance(op, Update):
            return self._update(session, state, op, now_us, resumed)
        raise TypeError(f"not a database operation: {op!r}")

    def _select(self, session: str, state: _Session, op: Select) -> Outcome:
        row = self._visible(state, op.job_id)
        if op.for_update and row is not None:
            blocked = self._blockers(session, op.job_id)
            if blocked:
                return blocked
            row = self._visible(state, op.job_id)
            self._lock(session, state, op.job_id)
        return Done(value=None if row is None else dict(row))

    def _insert(self, session: str, state: _Session, op: Insert, now_us: int) -> Outcome:
        table, rules = self.table, self._rules
        rules.check_columns("INSERT", op.values)
        row = rules.defaults(now_us)
        values = {k: evaluate(v, None, now_us) for k, v in op.values.items()}
        error = rules.check_types("INSERT", values)
        if error:
            return Done(error=error)
        row.update(values)
        row[table.key] = op.job_id
        if table.stamped_on_insert:
            row.update(dict.fromkeys(table.stamped, now_us))  # the BEFORE INSERT trigger
        error = rules.check_row(row, now_us)
        if error:
            return Done(error=error)
        if op.job_id not in self._committed and op.job_id not in state.writes:
            # A row another open transaction inserted: the unique index makes us wait for it.
            blocked = self._blockers(session, op.job_id)
            if blocked:
                return blocked
        if op.on_conflict_update is not None and self._visible(state, op.job_id) is not None:
            return self._conflict_update(session, state, op, row, now_us)
        if op.job_id in self._committed or op.job_id in state.writes:
            if op.on_conflict_do_nothing:
                return Done(value=None)
            return Done(
                error=TrackerError(
                    "23505",
                    table.key_constraint,
                    f'duplicate key value violates unique constraint "{table.key_constraint}"',
                )
            )
        self._write(session, state, op.job_id, row)
        return Done(value=None if row is None else dict(row))

    def _conflict_update(self, session: str, state: _Session, op: Insert, proposed: Row, now_us: int) -> Outcome:
        """``ON CONFLICT (key) DO UPDATE``: lock the existing row first (wait for its holder, then
        start the statement over), then guard and update the version now visible."""
        assert op.on_conflict_update is not None
        table = self.table
        _check_columns(table, "ON CONFLICT DO UPDATE", op.on_conflict_update)
        blocked = self._blockers(session, op.job_id)
        if blocked:
            return blocked
        self._lock(session, state, op.job_id)
        row = self._visible(state, op.job_id)
        where = tuple(
            Cond(c.column, c.op, _with_excluded(c.value, proposed)) for c in op.conflict_where
        )
        if not matches(where, row, now_us, self._rules.enum_labels):
            return Done(value=None)
        assert row is not None
        new = dict(row)
        values = {k: evaluate(_with_excluded(v, proposed), row, now_us) for k, v in op.on_conflict_update.items()}
        error = _check_types(table, "ON CONFLICT DO UPDATE", values)
        if error:
            return Done(error=error)
        new.update(values)
        new.update(dict.fromkeys(table.stamped, now_us))  # the BEFORE UPDATE trigger
        error = self._rules.check_row(new, now_us)
        if error:
            return Done(error=error)
        self._write(session, state, op.job_id, new)
        return Done(value=dict(new))

    def _update(self, session: str, state: _Session, op: Update, now_us: int, resumed: bool) -> Outcome:
        table, rules = self.table, self._rules
        rules.check_columns("UPDATE", op.set)
        row = self._visible(state, op.job_id)
        if not matches(op.where, row, now_us, rules.enum_labels):
            return Done(value=None)
        blocked = self._blockers(session, op.job_id)
        if blocked:
            return blocked
        if resumed:
            # Waited for a blocker: re-check the guard on the version it left (EvalPlanQual).
            row = self._visible(state, op.job_id)
            if not matches(op.where, row, now_us, rules.enum_labels):
                return Done(value=None)
        assert row is not None
        new = dict(row)
        values = {k: evaluate(v, row, now_us) for k, v in op.set.items()}
        error = rules.check_types("UPDATE", values)
        if error:
            return Done(error=error)
        new.update(values)
        for column in table.stamped:  # the BEFORE UPDATE trigger
            new[column] = now_us
        error = rules.check_row(new, now_us)
        if error:
            return Done(error=error)
        self._write(session, state, op.job_id, new)
        return Done(value=dict(new))

    # -- transactions ---------------------------------------------------------------------------

    def _lock(self, session: str, state: _Session, job_id: str) -> None:
        if state.in_tx:
            self._lock_owner[job_id] = session
            state.locks.add(job_id)

    def _write(self, session: str, state: _Session, job_id: str, row: Row) -> None:
        if state.in_tx:
            state.writes[job_id] = row
            self._lock(session, state, job_id)
        else:
            self._committed[job_id] = row

    def _abort(self, session: str, state: _Session) -> None:
        """An error aborts the transaction at once: PostgreSQL releases its locks then, not at
        the ROLLBACK the client still owes."""
        state.aborted = True
        self._unlock(session, state)

    def _unlock(self, session: str, state: _Session) -> None:
        for job_id in state.locks:
            if self._lock_owner.get(job_id) == session:
                del self._lock_owner[job_id]
        state.locks = set()

    def _end_transaction(self, session: str, state: _Session, commit: bool) -> None:
        if commit:
            self._committed.update(state.writes)
        self._unlock(session, state)
        state.in_tx, state.aborted = False, False
        state.writes = {}
