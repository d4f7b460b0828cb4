"""What a run records: every operation a handler performed, the row versions that became visible,
and the world's ground truth. Frozen records; the invariants are pure functions of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from sim.record.clocks import Clock
from tracker.backend import Done
from tracker.lifecycle import DEFAULT_LIFECYCLE, Lifecycle
from tracker.ops import Begin, Commit, DbOp, Insert, Op, ReadClock, Rollback, Row, Rpc, Update


@dataclass(frozen=True)
class Step:
    """One operation of one actor. Times are true simulated microseconds.

    ``kind``: 'db' (a statement), 'clock' (a clock read), 'error' (the handler ended by an
    exception it did not catch). For 'db': ``sent_us`` when the request left, ``executed_us`` when
    it ran at the server (after any lock wait), ``replied_us`` when the answer arrived.
    """

    index: int
    actor: str
    job_id: str
    event: str
    host: str
    kind: str
    op: Op | None
    sent_us: int
    executed_us: int
    replied_us: int
    db_now_us: int | None = None
    clock_us: int | None = None
    waited_us: int = 0
    blocked_by: tuple[str, ...] = ()
    result: Any = None
    error: tuple[str, str | None, str] | None = None  # (sqlstate, constraint, message)
    row_before: Row | None = None
    row_after: Row | None = None
    #: Row versions that became visible to other sessions at this step (autocommit write, COMMIT).
    committed: tuple[Row, ...] = ()

    @property
    def rejected(self) -> bool:
        return self.error is not None and self.error[0].startswith("23")


@dataclass(frozen=True)
class Actor:
    """One running handler: its own database session, on a host with a clock."""

    name: str
    job_id: str
    event: str
    host: str
    clock: Clock


class Who(Protocol):
    """The actor a step belongs to (a driver's own actor record)."""

    @property
    def name(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def host(self) -> str: ...


def _step(fields: dict[str, Any]) -> Step:
    """A :class:`Step` from every field's value, in field order. The generated ``__init__`` of a
    frozen dataclass sets each of its 19 fields through ``object.__setattr__``, and a run records
    a step per operation: taking the whole dict at once is a third of the cost, same record."""
    step = _new_object(Step)
    _set_attribute(step, "__dict__", fields)
    return step


_new_object, _set_attribute = object.__new__, object.__setattr__


def clock_step(index: int, who: Who, at_us: int, reading_us: int) -> Step:
    """A clock read by ``who`` at true time ``at_us``."""
    return _step({
        "index": index, "actor": who.name, "job_id": who.job_id, "event": who.event, "host": who.host,
        "kind": "clock", "op": _READ_CLOCK, "sent_us": at_us, "executed_us": at_us, "replied_us": at_us,
        "db_now_us": None, "clock_us": reading_us, "waited_us": 0, "blocked_by": (), "result": None,
        "error": None, "row_before": None, "row_after": None, "committed": (),
    })


_READ_CLOCK = ReadClock()  # a frozen record without fields: every clock step may share one


def error_step(index: int, who: Who, at_us: int, message: str) -> Step:
    """``who``'s handler ended by an exception it did not catch (``message`` says which)."""
    return _step({
        "index": index, "actor": who.name, "job_id": who.job_id, "event": who.event, "host": who.host,
        "kind": "error", "op": None, "sent_us": at_us, "executed_us": at_us, "replied_us": at_us,
        "db_now_us": None, "clock_us": None, "waited_us": 0, "blocked_by": (), "result": None,
        "error": ("", None, message), "row_before": None, "row_after": None, "committed": (),
    })


def db_step(
    index: int, who: Who, op: DbOp, *, sent_us: int, arrived_us: int, executed_us: int, replied_us: int,
    db_now_us: int, blocked_by: tuple[str, ...], outcome: Done, row_before: Row | None, row_after: Row | None,
    committed: tuple[Row, ...],
) -> Step:
    """A statement of ``who``'s: sent, arrived at the server, executed (after any lock wait), answered."""
    value, error = outcome.value, outcome.error
    return _step({
        "index": index, "actor": who.name, "job_id": getattr(op, "job_id", who.job_id), "event": who.event,
        "host": who.host, "kind": "db", "op": op, "sent_us": sent_us, "executed_us": executed_us,
        "replied_us": replied_us, "db_now_us": db_now_us, "clock_us": None, "waited_us": executed_us - arrived_us,
        "blocked_by": blocked_by, "result": None if value is None else tuple(v if v is None else dict(v) for v in value) if op.__class__ is Rpc else dict(value),
        "error": None if error is None else (error.sqlstate, error.constraint, error.message),
        "row_before": row_before, "row_after": row_after, "committed": committed,
    })


@dataclass(frozen=True)
class Attempt:
    """One run of one attempt on one worker (a stall re-run is a second run of the attempt)."""

    job_id: str
    number: int
    run: int
    worker: str
    start_us: int
    end_us: int | None
    outcome: str  # 'completed', 'failed', 'stalled'


@dataclass(frozen=True)
class JobTruth:
    """What really happened to one job, in true time."""

    job_id: str
    created_us: int
    max_attempts: int
    attempts: tuple[Attempt, ...]
    #: (true time, state) for every state the job entered: waiting, delayed, active, failed,
    #: completed, removed.
    transitions: tuple[tuple[int, str], ...]
    outcome: str  # 'completed', 'failed', 'removed'
    outcome_us: int

    @property
    def first_start_us(self) -> int | None:
        return min((a.start_us for a in self.attempts), default=None)

    @property
    def attempts_started(self) -> int:
        """Distinct attempt numbers that started (a stall re-run does not add one)."""
        return len({a.number for a in self.attempts})


@dataclass(frozen=True)
class RunRecord:
    """Everything the invariants judge: history, final rows, ground truth, the clock bound."""

    steps: tuple[Step, ...]
    rows: dict[str, Row] = field(hash=False)
    truth: dict[str, JobTruth] = field(hash=False)
    tolerance_us: int
    end_us: int
    #: What the table's columns and statuses mean to the invariants (the scenario's mapping).
    lifecycle: Lifecycle = DEFAULT_LIFECYCLE

    # Derived views that several invariants read: worked out once per record, on first use
    # (``cached_property`` keeps them in the instance's ``__dict__``, outside the fields: they
    # take no part in equality, hashing or ``dataclasses`` functions).

    @cached_property
    def versions(self) -> dict[str, list[tuple[Step, Row]]]:
        """The row versions that became visible, with the step that made each visible, by job
        (jobs in :func:`job_order`)."""
        out: dict[str, list[tuple[Step, Row]]] = {}
        for step in self.steps:
            for row in step.committed:
                out.setdefault(row["job_id"], []).append((step, row))
        return dict(sorted(out.items(), key=_by_job_order))

    @cached_property
    def truths(self) -> list[tuple[str, JobTruth]]:
        """Every job's ground truth, jobs in :func:`job_order`."""
        return sorted(self.truth.items(), key=_by_job_order)


def job_order(job: str) -> tuple[int, str]:
    """job-2 before job-10, whatever order a dict (or a JSON file) kept them in."""
    digits = "".join(filter(str.isdigit, job))
    return (int(digits) if digits else -1, job)


def _by_job_order(item: tuple[str, Any]) -> tuple[int, str]:
    return job_order(item[0])


class RowVisibility:
    """What each session sees and which row versions become visible to others, as a driver
    learns it from the answers (for a step's ``row_before``, ``row_after`` and ``committed``):
    an autocommit write is visible at once; a transaction's writes at its COMMIT, unless it
    saw an error (PostgreSQL then rolls back)."""

    def __init__(self) -> None:
        self.committed: dict[str, Row] = {}
        self.pending: dict[str, dict[str, Row]] = {}
        self.in_tx: set[str] = set()
        self.failed_tx: set[str] = set()

    def visible(self, session: str, job_id: str) -> Row | None:
        pending = self.pending.get(session)
        row = pending.get(job_id) if pending else None
        return row if row is not None else self.committed.get(job_id)

    def track(self, session: str, op: DbOp, outcome: Done) -> tuple[Row, ...]:
        pending = self.pending.get(session)
        if pending is None:
            pending = self.pending[session] = {}
        if isinstance(op, Begin):
            pending.clear()
            self.in_tx.add(session)
            return ()
        if isinstance(op, (Commit, Rollback)):
            self.in_tx.discard(session)
            rows = tuple(pending.values()) if isinstance(op, Commit) and session not in self.failed_tx else ()
            pending.clear()
            self.failed_tx.discard(session)
            for row in rows:
                self.committed[row["job_id"]] = row
            return rows
        if outcome.error is not None:
            if session in self.in_tx:
                self.failed_tx.add(session)
            return ()
        if outcome.value is not None and isinstance(op, (Insert, Update)):
            row = dict(outcome.value)
            if session in self.in_tx:
                pending[row["job_id"]] = row
                return ()
            self.committed[row["job_id"]] = row
            return (row,)
        if isinstance(op, Rpc):  # its writes, as one transaction of its own or the caller's
            written = {
                dict(value)["job_id"]: dict(value)
                for statement, value in zip(op.body, outcome.value, strict=True)
                if value is not None and isinstance(statement, (Insert, Update))
            }
            if session in self.in_tx:
                pending.update(written)
                return ()
            self.committed.update(written)
            return tuple(written.values())
        return ()

    def end(self, session: str) -> None:
        self.pending.pop(session, None)
        self.in_tx.discard(session)
        self.failed_tx.discard(session)
