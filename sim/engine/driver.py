"""The SimPy driver: runs strategy handlers in simulated time against a tracker backend.

A handler yields operations (stepped by :mod:`sim.engine.interpreter`); the driver gives them
time. ``Sleep`` waits; ``ReadClock`` reads
the host's clock; a database operation travels to the server (one-way latency, drawn per
operation), executes there atomically at its arrival instant (or waits for a row lock and resumes
when the blocker's transaction ends), and its answer travels back. Every operation is recorded
as a :class:`~sim.record.history.Step`. A ``Parallel`` sends each of its statements at once on a
session of its own, named ``<actor>/<n>`` (the handler's n-th such statement), as a process of
its own: the handler waits for all of them, or for the first refusal to come back.

The driver knows nothing about queues or jobs' lifecycles (that is ``sim.engine.world``) and nothing
about SQL (that is the backend).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import Any

import simpy

from sim.engine import interpreter
from sim.record.clocks import Clock
from sim.record.history import Actor, RowVisibility, Step, clock_step, db_step, error_step
from tracker.backend import Blocked, Done, TrackerBackend
from tracker.ops import Commit, DbOp, Parallel, ReadClock, Rollback, Sleep, TrackerError
from tracker.strategies import HandlerContext, HandlerFn, JobView


class _Refused(Exception):
    """The backend cannot execute an operation at all (not a constraint: a bug in the handler)."""

    def __init__(self, cause: Exception) -> None:
        self.cause = cause


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
        ops_per_handler: int = 10_000,
    ) -> None:
        self.env = env
        self.backend = backend
        self.db_clock = db_clock
        self.one_way_us = one_way_us
        self.steps: list[Step] = []
        self.crashes: list[str] = []
        self.running = 0
        self.ops_per_handler = ops_per_handler
        #: The generators still running, by actor (to say where a failure run stopped).
        self.live: dict[str, types.GeneratorType] = {}
        #: Why the run cannot be judged (the first handler that crashed or reached a limit): it
        #: ends as an error row, not as a verdict on the strategy.
        self.failure: str | None = None
        self._rows = RowVisibility()
        self._waiters: dict[str, list[tuple[str, simpy.Event]]] = {}
        #: The running handlers' processes, by actor (host, process, start, a ``Parallel``
        #: statement's?): what :meth:`stop_host` stops.
        self._processes: dict[str, tuple[str, simpy.Process, int, bool]] = {}
        #: Names the sessions of ``Parallel`` statements.
        self._statements = interpreter.Statements()
        #: With a client pool (:class:`~sim.engine.network.NetworkDriver`): per session, how long
        #: each database operation that ran waited for a connection.
        self.queued: dict[str, list[int]] = {}

    # -- public --------------------------------------------------------------------------------

    def spawn(self, actor: Actor, fn: HandlerFn, view: JobView, ctx: HandlerContext) -> simpy.Process:
        """Start a handler now without waiting for it (Node's EventEmitter does not await)."""
        return self.env.process(self._run(actor, interpreter.start(fn, view, ctx)))

    def stop_host(self, host: str, why: str) -> None:
        """The process on ``host`` died: its handlers stop where they are (an operation not yet at
        the server never runs; a lock wait is abandoned), and their sessions end."""
        # In the order they started; at one instant, handlers before Parallel statements (the
        # forced-order driver stops them in the same order).
        running = sorted(enumerate(self._processes.values()), key=lambda e: (e[1][2], e[1][3], e[0]))
        for _, (on, process, _, _) in running:
            if on == host:
                process.interrupt(why)

    # -- the interpreter -----------------------------------------------------------------------

    def _run(self, actor: Actor, gen: types.GeneratorType | interpreter.Crashed) -> Generator[simpy.Event, Any, None]:
        self.running += 1
        send: Any = None
        throw: BaseException | None = None
        discarded = False
        ops = 0
        if not isinstance(gen, interpreter.Crashed):
            self.live[actor.name] = gen
        process = self.env.active_process
        assert process is not None
        self._processes[actor.name] = (actor.host, process, int(self.env.now), False)
        crashed = gen if isinstance(gen, interpreter.Crashed) else None  # tested once, not per operation
        try:
            while True:
                step = crashed if crashed is not None else interpreter.advance(gen, send, throw)  # type: ignore[arg-type]
                if not isinstance(step, interpreter.Yielded):
                    self._ended(actor, step)
                    break
                ops += 1
                if ops > self.ops_per_handler:
                    assert not isinstance(gen, interpreter.Crashed)
                    message = interpreter.stop_runaway(actor.name, gen, self.ops_per_handler)
                    self.failure = self.failure or message
                    self.steps.append(error_step(len(self.steps), actor, self.now, f"stopped: {self.failure}"))
                    break
                op = step.op
                send, throw = None, None
                if isinstance(op, Sleep):
                    if op.ms > 0:
                        yield self.env.timeout(round(op.ms * 1000))
                elif isinstance(op, ReadClock):
                    now = int(self.env.now)
                    send = actor.clock.read(now)
                    self.steps.append(clock_step(len(self.steps), actor, now, send))
                elif op.__class__ is Parallel:
                    answer = yield from self._parallel(actor, op)  # type: ignore[arg-type]
                    if isinstance(answer, _Refused):
                        assert not isinstance(gen, interpreter.Crashed)
                        self._ended(actor, interpreter.refused(gen, answer.cause))
                        break
                    if isinstance(answer, TrackerError):
                        throw = answer
                    else:
                        send = answer
                else:
                    try:
                        outcome = yield from self._db(actor, op)  # type: ignore[arg-type]
                    except _Refused as refused:
                        assert not isinstance(gen, interpreter.Crashed)
                        self._ended(actor, interpreter.refused(gen, refused.cause))
                        break
                    if outcome.error is not None:
                        throw = outcome.error
                    else:
                        send = outcome.value
        except simpy.Interrupt as stop:
            self._stopped(actor, str(stop.cause))
            interpreter.stop(gen)
        except GeneratorExit:
            discarded = True  # the run is over and SimPy drops a process stuck in a lock wait
            raise
        finally:
            self.running -= 1
            self.live.pop(actor.name, None)
            self._processes.pop(actor.name, None)
            if not discarded:
                self._end_session(actor.name)

    def _parallel(self, actor: Actor, op: Parallel) -> Generator[simpy.Event, Any, Any]:
        """Send ``op``'s statements at once, each on a branch session of its own; the tuple of
        their answers once all are back, or the first refusal (a :class:`TrackerError`, or a
        :class:`_Refused`) as soon as it is back. The other branches run on to their end."""
        if not op.ops:
            return ()
        done = self.env.event()
        answers: list[Any] = [None] * len(op.ops)
        left = [len(op.ops)]
        sessions = self._statements.sessions(actor.name, len(op.ops))
        for i, (session, statement) in enumerate(zip(sessions, op.ops, strict=True)):
            branch = Actor(session, actor.job_id, actor.event, actor.host, actor.clock)
            self.env.process(self._branch(branch, statement, i, answers, left, done))
        return (yield done)

    def _branch(
        self, actor: Actor, op: DbOp, i: int, answers: list[Any], left: list[int], done: simpy.Event
    ) -> Generator[simpy.Event, Any, None]:
        """One statement of a ``Parallel``, on its own session, ended (committed) when it is back."""
        process = self.env.active_process
        assert process is not None
        self._processes[actor.name] = (actor.host, process, int(self.env.now), True)
        discarded = False
        try:
            try:
                outcome = yield from self._db(actor, op)
            except _Refused as refused:
                if not done.triggered:
                    done.succeed(refused)
                return
            if outcome.error is not None:
                if not done.triggered:
                    done.succeed(outcome.error)
                return
            answers[i] = outcome.value
            left[0] -= 1
            if not left[0] and not done.triggered:
                done.succeed(tuple(answers))
        except simpy.Interrupt as stop:
            self._stopped(actor, str(stop.cause))
        except GeneratorExit:
            discarded = True
            raise
        finally:
            self._processes.pop(actor.name, None)
            if not discarded:
                self._end_session(actor.name)

    def _stopped(self, actor: Actor, why: str) -> None:
        """``actor``'s process was stopped (:meth:`stop_host`): recorded; a lock wait it abandoned
        wakes nobody."""
        self.steps.append(error_step(len(self.steps), actor, self.now, why))
        for waiting in self._waiters.values():
            waiting[:] = [w for w in waiting if w[0] != actor.name]

    def _end_session(self, session: str) -> None:
        """A handler's (or a ``Parallel`` statement's) session is over: it ends (a pool would roll
        back what was left open) and whoever waited for its locks goes on."""
        self.backend.end_session(session)
        self._rows.end(session)
        self._wake(session)

    def _ended(self, actor: Actor, step: interpreter.Outcome) -> None:
        if isinstance(step, (interpreter.Unhandled, interpreter.Crashed)):
            self.steps.append(error_step(len(self.steps), actor, self.now, step.message))
        if isinstance(step, interpreter.Crashed):
            self.crashes.append(f"{actor.name}: {step.summary} ({step.where})")
            self.failure = self.failure or f"{actor.name} {step.message}"

    def _db(self, actor: Actor, op: DbOp) -> Generator[simpy.Event, Any, Done]:
        env, rows, name = self.env, self._rows, actor.name
        sent = int(env.now)
        yield env.timeout(self.one_way_us(name))
        arrived = int(env.now)
        db_now = self.db_clock.read(arrived)
        job_id = getattr(op, "job_id", actor.job_id)
        before = rows.visible(name, job_id)
        try:
            outcome = self.backend.execute(name, op, db_now)
        except (ValueError, TypeError) as exc:  # an operation the table cannot take at all
            raise _Refused(exc) from None
        blocked_by: tuple[str, ...] = ()
        while isinstance(outcome, Blocked):
            blocked_by += tuple(b for b in outcome.blockers if b not in blocked_by)
            event = env.event()
            for blocker in outcome.blockers[:1]:
                self._waiters.setdefault(blocker, []).append((name, event))
            outcome = yield event
        executed = int(env.now)
        replied = executed + self.one_way_us(name)
        committed = rows.track(name, op, outcome)
        if outcome.error is not None or isinstance(op, (Commit, Rollback)):
            self._wake(name)  # an error aborts a transaction and releases its locks at once
        steps = self.steps
        steps.append(
            db_step(
                len(steps), actor, op, sent_us=sent, arrived_us=arrived, executed_us=executed, replied_us=replied,
                db_now_us=db_now, blocked_by=blocked_by, outcome=outcome, row_before=before,
                row_after=rows.visible(name, job_id), committed=committed,
            )
        )
        yield env.timeout(replied - executed)
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
