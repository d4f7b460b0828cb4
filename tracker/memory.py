"""The in-memory model of the tracker: the seed's table, its constraints, its trigger, and READ
COMMITTED transactions with row locks, as PostgreSQL behaves for the operations in
``tracker.ops``.

It is a *model* that must agree with PostgreSQL (``--backend both`` checks it statement by
statement), not a stand-in for it. What it models:

* defaults and the ``updated_at`` trigger use ``now()``: the database clock at the start of the
  current transaction (at the statement for autocommit statements);
* NOT NULL, then CHECK constraints in alphabetical order of name (as PostgreSQL evaluates them),
  then the primary key; a failure raises the same SQLSTATE and constraint name as PostgreSQL;
* an error inside a transaction aborts it: later statements fail with 25P02 until it ends; its
  locks are released at the error (PostgreSQL aborts the transaction there, the ROLLBACK only
  ends the block);
* UPDATE and SELECT FOR UPDATE lock the row until the transaction ends; a plain SELECT never
  waits and sees the last committed version (or the session's own); an UPDATE whose guard does
  not match the committed version skips the row without waiting, and one that waited re-checks
  its guard on the version the blocker committed (PostgreSQL's EvalPlanQual).

Imports only ``tracker``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracker.backend import Blocked, Done, Outcome
from tracker.ops import (
    COLUMNS,
    STATUSES,
    TABLE,
    Begin,
    Case,
    Coalesce,
    Col,
    Commit,
    Cond,
    DbNow,
    DbOp,
    Greatest,
    Insert,
    Least,
    Rollback,
    Row,
    Select,
    TrackerError,
    Update,
)

NOT_NULL_COLUMNS = ("job_id", "status", "attempts", "max_attempts", "created_at", "updated_at", "cancelled")
PRIMARY_KEY = f"{TABLE}_pkey"


def _defaults(now_us: int) -> Row:
    return {
        "job_id": None,
        "status": "pending",
        "attempts": 0,
        "max_attempts": 1,
        "created_at": now_us,
        "updated_at": now_us,
        "started_at": None,
        "completed_at": None,
        "failed_at": None,
        "error_message": None,
        "progress": None,
        "cancelled": False,
        "cancelled_at": None,
    }


# --- SQL three-valued logic --------------------------------------------------------------------
# True / False / None (unknown). A CHECK passes unless it is False; a WHERE matches only if True.


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    if any(v is None for v in values):
        return None
    return True


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


def _ordered(later: Any, earlier: Any) -> bool:
    """``later IS NULL OR earlier IS NULL OR later >= earlier``: false only when both are set."""
    return later is None or earlier is None or later >= earlier


#: Each CHECK constraint of ``schema.sql`` as a predicate, by name. A CHECK passes unless its
#: expression is false (NULL passes): each predicate returns False only when SQL's would be false.
CHECKS: dict[str, Callable[[Row], bool | None]] = {
    f"{TABLE}_attempts_check": lambda r: _and(
        _cmp(r["attempts"], ">=", 0), _cmp(r["attempts"], "<=", r["max_attempts"])
    ),
    f"{TABLE}_cancelled_check": lambda r: r["cancelled"] is not True or r["cancelled_at"] is not None,
    f"{TABLE}_completed_check": lambda r: r["status"] != "completed" or r["completed_at"] is not None,
    f"{TABLE}_failed_check": lambda r: r["status"] != "failed" or r["failed_at"] is not None,
    f"{TABLE}_status_check": lambda r: r["status"] is None or r["status"] in STATUSES,
    f"{TABLE}_timestamps_check": lambda r: (
        _ordered(r["started_at"], r["created_at"])
        and (r["started_at"] is None or _ordered(r["completed_at"], r["started_at"]))
        and (r["started_at"] is None or _ordered(r["failed_at"], r["started_at"]))
    ),
}
_CHECK_ORDER = sorted(CHECKS)


def check_row(row: Row) -> TrackerError | None:
    """The error PostgreSQL would raise for storing ``row``, or ``None`` if it is allowed."""
    for column in NOT_NULL_COLUMNS:
        if row[column] is None:
            return TrackerError(
                "23502",
                f"{TABLE}_{column}_not_null",
                f'null value in column "{column}" of relation "{TABLE}" violates not-null constraint',
            )
    for name in _CHECK_ORDER:
        if CHECKS[name](row) is False:
            return TrackerError(
                "23514", name, f'new row for relation "{TABLE}" violates check constraint "{name}"'
            )
    return None


def evaluate(expr: Any, row: Row | None, now_us: int) -> Any:
    """The value of an expression against ``row`` (the version before the statement)."""
    if isinstance(expr, Col):
        if row is None or expr.name not in row:
            raise ValueError(f"column {expr.name!r} is not a column of {TABLE}")
        return row[expr.name]
    if isinstance(expr, DbNow):
        return now_us
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


def cond_value(cond: Cond, row: Row | None, now_us: int) -> bool | None:
    """One guard term in three-valued logic."""
    if row is None:
        return None
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
    return _cmp(current, cond.op, evaluate(cond.value, row, now_us))


def matches(where: tuple[Cond, ...], row: Row | None, now_us: int) -> bool:
    """A WHERE clause matches only when it is true (not false, not unknown)."""
    if row is None:
        return False
    for cond in where:
        if cond_value(cond, row, now_us) is not True:
            return False
    return True


def _check_columns(verb: str, values: Any) -> None:
    for column in values:
        if column not in COLUMNS or column == "job_id":
            raise ValueError(f"{verb} may not set column {column!r} (the columns of {TABLE}: {', '.join(COLUMNS)})")


_INT4 = (-(2**31), 2**31 - 1)
_A_VALUE = {"integer": "a 32-bit integer", "text": "a str", "boolean": "a bool",
            "timestamptz": "a timestamp (int microseconds since 1970)", "jsonb": "JSON"}


def _fits(sql_type: str, value: Any) -> bool:
    """Whether PostgreSQL would store ``value`` in a column of ``sql_type`` as the value it is."""
    if value is None or sql_type == "jsonb":
        return True
    if sql_type == "boolean":
        return isinstance(value, bool)
    if sql_type == "text":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    if sql_type == "integer":
        return _INT4[0] <= value <= _INT4[1]
    return -(2**62) < value < 2**62  # timestamptz: microseconds since 1970


def _check_types(verb: str, values: dict[str, Any]) -> None:
    """A value of the wrong type is a bug in the handler (PostgreSQL would refuse the statement's
    text, not a constraint): said naming the column, its type and the value."""
    for column, value in values.items():
        if not _fits(COLUMNS[column], value):
            raise ValueError(f"{verb} sets {column} ({COLUMNS[column]}) to {value!r}, which is not {_A_VALUE[COLUMNS[column]]}")


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
    """The job_status table in memory. State: committed rows, sessions, row locks."""

    name = "memory"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._committed: dict[str, Row] = {}
        self._sessions: dict[str, _Session] = {}
        self._lock_owner: dict[str, str] = {}

    # -- the contract ---------------------------------------------------------------------------

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = _Session()
        if isinstance(op, Begin):
            if not state.in_tx:
                state.in_tx, state.aborted, state.tx_now_us = True, False, db_now_us
            return Done()
        if isinstance(op, (Commit, Rollback)):
            self._end_transaction(session, state, commit=isinstance(op, Commit) and not state.aborted)
            return Done()
        if state.aborted:
            return Done(
                error=TrackerError(
                    "25P02",
                    None,
                    "current transaction is aborted, commands ignored until end of transaction block",
                )
            )
        now_us = state.tx_now_us if state.in_tx else db_now_us
        outcome = self._statement(session, state, op, now_us, resumed=False)
        if isinstance(outcome, Blocked):
            state.waiting = (op, db_now_us)
        elif outcome.error is not None and state.in_tx:
            self._abort(session, state)
        return outcome

    def resume(self, session: str) -> Outcome:
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
        _check_columns("INSERT", op.values)
        row = _defaults(now_us)
        values = {k: evaluate(v, None, now_us) for k, v in op.values.items()}
        _check_types("INSERT", values)
        row.update(values)
        row["job_id"] = op.job_id
        error = check_row(row)
        if error:
            return Done(error=error)
        if op.job_id not in self._committed and op.job_id not in state.writes:
            # A row another open transaction inserted: the unique index makes us wait for it.
            blocked = self._blockers(session, op.job_id)
            if blocked:
                return blocked
        if op.job_id in self._committed or op.job_id in state.writes:
            if op.on_conflict_do_nothing:
                return Done(value=None)
            return Done(
                error=TrackerError(
                    "23505",
                    PRIMARY_KEY,
                    f'duplicate key value violates unique constraint "{PRIMARY_KEY}"',
                )
            )
        self._write(session, state, op.job_id, row)
        return Done(value=None if row is None else dict(row))

    def _update(self, session: str, state: _Session, op: Update, now_us: int, resumed: bool) -> Outcome:
        _check_columns("UPDATE", op.set)
        row = self._visible(state, op.job_id)
        if not matches(op.where, row, now_us):
            return Done(value=None)
        blocked = self._blockers(session, op.job_id)
        if blocked:
            return blocked
        if resumed:
            # Waited for a blocker: re-check the guard on the version it left (EvalPlanQual).
            row = self._visible(state, op.job_id)
            if not matches(op.where, row, now_us):
                return Done(value=None)
        assert row is not None
        new = dict(row)
        values = {k: evaluate(v, row, now_us) for k, v in op.set.items()}
        _check_types("UPDATE", values)
        new.update(values)
        new["updated_at"] = now_us  # the BEFORE UPDATE trigger
        error = check_row(new)
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
