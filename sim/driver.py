"""The SimPy driver: runs strategy handlers in simulated time against a tracker backend.

A handler yields operations; the driver gives them meaning. ``Sleep`` waits; ``ReadClock`` reads
the host's clock; a database operation travels to the server (one-way latency, drawn per
operation), executes there atomically at its arrival instant (or waits for a row lock and resumes
when the blocker's transaction ends), and its answer travels back. Every operation is recorded
as a :class:`~sim.history.Step`.

The driver knows nothing about queues or jobs' lifecycles (that is ``sim.world``) and nothing
about SQL (that is the backend).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from sim.clocks import Clock
from sim.history import RowVisibility, Step
from tracker.backend import Blocked, Done, TrackerBackend
from tracker.ops import (
    DB_OPS,
    Commit,
    DbOp,
    Handler,
    ReadClock,
    Rollback,
    Sleep,
    TrackerError,
)


@dataclass(frozen=True)
class Actor:
    """One running handler: its own database session, on a host with a clock."""

    name: str
    job_id: str
    event: str
    host: str
    clock: Clock


class HandlerCrashed(Exception):
    """A handler raised something other than a tracker error: a bug in strategy code."""


class Driver:
    """Interprets handlers for one run. ``one_way_us(actor)`` draws one direction's latency."""

    @property
    def now(self) -> int:
        """True simulated time in microseconds (every delay we schedule is whole microseconds)."""
        return int(self.env.now)

    def __init__(
        self,
        env: simpy.Environment,
        backend: TrackerBackend,
        db_clock: Clock,
        one_way_us: Callable[[str], int],
    ) -> None:
        self.env = env
        self.backend = backend
        self.db_clock = db_clock
        self.one_way_us = one_way_us
        self.steps: list[Step] = []
        self.crashes: list[str] = []
        self.running = 0
        self._rows = RowVisibility()
        self._waiters: dict[str, list[tuple[str, simpy.Event]]] = {}

    # -- public --------------------------------------------------------------------------------

    def spawn(self, actor: Actor, handler: Handler) -> simpy.Process:
        """Start a handler now without waiting for it (Node's EventEmitter does not await)."""
        return self.env.process(self._run(actor, handler))

    # -- the interpreter -----------------------------------------------------------------------

    def _run(self, actor: Actor, handler: Handler) -> Generator[simpy.Event, Any, None]:
        self.running += 1
        send: Any = None
        throw: BaseException | None = None
        discarded = False
        try:
            while True:
                try:
                    op = handler.throw(throw) if throw is not None else handler.send(send)
                except StopIteration:
                    break
                except TrackerError as exc:
                    self._record_error(actor, f"unhandled {exc.sqlstate}: {exc.message}")
                    break
                except Exception as exc:  # strategy code bug: recorded, the run goes on
                    message = f"{type(exc).__name__}: {exc}"
                    self._record_error(actor, f"handler crashed: {message}")
                    self.crashes.append(f"{actor.name}: {message}")
                    break
                send, throw = None, None
                if isinstance(op, Sleep):
                    if op.ms > 0:
                        yield self.env.timeout(round(op.ms * 1000))
                elif isinstance(op, ReadClock):
                    send = actor.clock.read(self.now)
                    self._record_clock(actor, send)
                elif isinstance(op, DB_OPS):
                    outcome = yield from self._db(actor, op)
                    if outcome.error is not None:
                        throw = outcome.error
                    else:
                        send = outcome.value
                else:
                    throw = TypeError(f"handler yielded {op!r}, which is not a tracker operation")
        except GeneratorExit:
            discarded = True  # the run is over and SimPy drops a process stuck in a lock wait
            raise
        finally:
            self.running -= 1
            if not discarded:
                self.backend.end_session(actor.name)  # a pool would roll back what was left open
                self._rows.end(actor.name)
                self._wake(actor.name)

    def _db(self, actor: Actor, op: DbOp) -> Generator[simpy.Event, Any, Done]:
        sent = self.now
        yield self.env.timeout(self.one_way_us(actor.name))
        arrived = self.now
        db_now = self.db_clock.read(arrived)
        before = self._rows.visible(actor.name, getattr(op, "job_id", actor.job_id))
        outcome = self.backend.execute(actor.name, op, db_now)  # type: ignore[arg-type]
        blocked_by: tuple[str, ...] = ()
        while isinstance(outcome, Blocked):
            blocked_by += tuple(b for b in outcome.blockers if b not in blocked_by)
            event = self.env.event()
            for blocker in outcome.blockers[:1]:
                self._waiters.setdefault(blocker, []).append((actor.name, event))
            outcome = yield event
        executed = self.now
        replied = executed + self.one_way_us(actor.name)
        committed = self._rows.track(actor.name, op, outcome)
        if isinstance(op, (Commit, Rollback)) or outcome.error is not None:
            self._wake(actor.name)  # an error aborts a transaction and releases its locks at once
        self.steps.append(
            Step(
                index=len(self.steps),
                actor=actor.name,
                job_id=getattr(op, "job_id", actor.job_id),
                event=actor.event,
                host=actor.host,
                kind="db",
                op=op,
                sent_us=sent,
                executed_us=executed,
                replied_us=replied,
                db_now_us=db_now,
                waited_us=executed - arrived,
                blocked_by=blocked_by,
                result=None if outcome.value is None else dict(outcome.value),
                error=(outcome.error.sqlstate, outcome.error.constraint, outcome.error.message)
                if outcome.error
                else None,
                row_before=before,
                row_after=self._rows.visible(actor.name, getattr(op, "job_id", actor.job_id)),
                committed=committed,
            )
        )
        yield self.env.timeout(replied - executed)
        return outcome

    def stuck(self) -> list[str]:
        """Sessions still waiting for a lock once nothing else can happen: a deadlock (PostgreSQL
        would abort one of them after ``deadlock_timeout``; the model reports it instead)."""
        return sorted(f"{waiter} waits for {blocker}" for blocker, waiters in self._waiters.items() for waiter, _ in waiters)

    # -- lock waits ----------------------------------------------------------------------------

    def _wake(self, session: str) -> None:
        """``session`` ended a transaction: statements waiting for it try again, in order."""
        for waiter, event in self._waiters.pop(session, []):
            outcome = self.backend.resume(waiter)
            if isinstance(outcome, Blocked):
                self._waiters.setdefault(outcome.blockers[0], []).append((waiter, event))
            else:
                event.succeed(outcome)

    # -- recording -----------------------------------------------------------------------------

    def _record_clock(self, actor: Actor, reading: int) -> None:
        now = self.now
        self.steps.append(
            Step(len(self.steps), actor.name, actor.job_id, actor.event, actor.host, "clock", ReadClock(), now, now, now, clock_us=reading)
        )

    def _record_error(self, actor: Actor, message: str) -> None:
        now = self.now
        self.steps.append(
            Step(len(self.steps), actor.name, actor.job_id, actor.event, actor.host, "error", None, now, now, now, error=("", None, message))
        )
