"""The contract between a driver and a tracker backend (the in-memory model or PostgreSQL).

A driver owns time and order; a backend only executes. The driver calls
:meth:`TrackerBackend.execute` at the instant a statement arrives at the server, with the
database clock's reading for ``now()``. The backend answers at once with :class:`Done` or, when
the statement must wait for a row lock, with :class:`Blocked` naming the sessions it waits for.
When one of those sessions ends its transaction the driver calls :meth:`TrackerBackend.resume`
and gets the same two kinds of answer. Nothing here knows about SimPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracker.ops import Begin, Commit, DbOp, Rollback, Row, Rpc, TrackerError


@dataclass(frozen=True)
class Done:
    """The statement finished: ``value`` as the handler receives it, or ``error``."""

    #: A row or ``None``; for an :class:`~tracker.ops.Rpc`, the tuple of its statements' answers.
    value: Any = None
    error: TrackerError | None = None


@dataclass(frozen=True)
class Blocked:
    """The statement waits on a row lock held by these sessions' open transactions."""

    blockers: tuple[str, ...]


Outcome = Done | Blocked


class TrackerBackend(Protocol):
    """What a driver needs from a backend. One instance serves one run at a time."""

    name: str

    def reset(self) -> None:
        """Start a run: an empty table, no sessions."""

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        """Run ``op`` for ``session`` (a connection of its own) at database time ``db_now_us``."""

    def resume(self, session: str) -> Outcome:
        """Continue the statement of ``session`` that answered :class:`Blocked`."""

    def end_session(self, session: str) -> None:
        """The actor is done: roll back anything it left open and release its connection."""

    def rows(self) -> dict[str, Row]:
        """Every committed row, by job id."""


@dataclass
class _RpcCall:
    rpc: Rpc
    db_now_us: int
    own_transaction: bool
    answers: list[Any] = field(default_factory=list)


class RpcCalls:
    """How a backend runs an :class:`~tracker.ops.Rpc` from its own statements, so that the model
    and PostgreSQL run a function's body alike: outside a transaction, ``BEGIN`` (its clock is the
    call's arrival), each statement in order, then ``COMMIT`` (``ROLLBACK`` after an error);
    inside one, the statements alone. The driver sees one operation: a body statement that waits
    for a lock makes the call answer :class:`Blocked`, and :meth:`resume` goes on from there."""

    def __init__(self) -> None:
        self._waiting: dict[str, _RpcCall] = {}

    def __contains__(self, session: str) -> bool:
        return session in self._waiting

    def execute(self, rpc: Rpc, db_now_us: int, in_transaction: bool, run: Callable[[DbOp], Outcome], session: str) -> Outcome:
        call = _RpcCall(rpc, db_now_us, not in_transaction)
        if call.own_transaction:
            run(Begin())
        return self._go(call, run(rpc.body[0]), run, session)

    def resume(self, session: str, resume: Callable[[], Outcome], run: Callable[[DbOp], Outcome]) -> Outcome:
        call = self._waiting.pop(session)
        return self._go(call, resume(), run, session)

    def end(self, session: str) -> None:
        self._waiting.pop(session, None)

    def _go(self, call: _RpcCall, outcome: Outcome, run: Callable[[DbOp], Outcome], session: str) -> Outcome:
        body = call.rpc.body
        while True:
            if isinstance(outcome, Blocked):
                self._waiting[session] = call
                return outcome
            if outcome.error is not None:
                if call.own_transaction:
                    run(Rollback())  # the function's transaction ends with its error
                return outcome
            call.answers.append(outcome.value)
            if len(call.answers) == len(body):
                if call.own_transaction:
                    ended = run(Commit())
                    if isinstance(ended, Done) and ended.error is not None:
                        return ended
                return Done(value=tuple(call.answers))
            outcome = run(body[len(call.answers)])
