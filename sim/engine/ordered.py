"""The forced-order driver (the design's *replay driver*): runs a case's handlers in an order of
database operations chosen by a scheduler, not by simulated latencies.

A :class:`Case` is what a run's handlers need to run again: every actor the world started (its
job view, settings, host, start time, and the actors it must wait for: the awaited insert), the
hosts' clocks and the ground truth. Exhaustive search, PCT and ``racetrack replay`` all run cases
here; only the scheduler differs.

How time passes in a forced order. Each actor has its own time: it starts at its spawn time,
``Sleep`` adds to it, a clock read reads its host's clock at it. The scheduler picks, among the
*ready* actors (started, not finished, not waiting on a lock, stopped at a database operation),
the one whose next operation reaches the server next. That operation arrives at
``max(previous arrival, actor time + request latency)``: forcing an operation after another one is
modelled as the network holding it back, so simulated time stays monotonic in schedule order and
every value a handler reads or writes is consistent with the order. The answer returns after the
reply latency. A statement that must wait for a row lock waits (it is not ready) until the holder
ends its transaction (or an error aborts it), then completes at that instant, as in the SimPy
driver.

Searches (not replays) may bound how far an operation can be held back: with ``window_us`` an
operation is never held back more than that long after the moment it could first have arrived
(its actor's time plus its request latency). Only the ready actors whose operation would arrive
before the earliest such deadline are offered to the scheduler, so the actor with the earliest
deadline is always among them, and one whose deadline has come is the only one offered (no
starvation: the bound is per operation, not per step). An actor others wait for (the awaited
insert: its end gates the job's own timeline, which the case fixes) is never held back behind an
operation that would naturally arrive after it. ``OrderedRun.max_hold_us`` is the longest
hold-back the run made.

Latencies are the actor's recorded ones (its k-th operation's request and reply one-way times),
so following a SimPy run's own arrival order reproduces that run value for value; an operation
that waited for a pool connection there waits as long here (:attr:`Case.queued`), and over HTTP
(``network.client = "http"``) ``Begin``/``Commit``/``Rollback`` reach nothing, as in the world. An operation
beyond the recorded ones (a forced order made a handler take a branch the SimPy run did not)
draws its latencies from the world's round-trip distribution (``network.db_rtt`` in the case's
parameters), continuing the actor's own seeded network stream: what the SimPy world would have
drawn had the actor sent it, the same in every run of the case. A case without that parameter
uses its default latency.

A ``Parallel`` makes each of its statements an actor of its own for the scheduler, named
``<actor>/<n>`` as in the SimPy driver, ready at once from the handler's time, with its recorded
latencies (:attr:`Case.branch_latencies`) or draws from its own network stream beyond them; the
handler is ready again once all of them are back (at the latest reply), or as soon as a refused one
is back (the first refused in the order chosen).

A worker process that dies (``workers.crash_*``) dies at its true instant, as in the SimPy world:
the case lists each death (when, which host). When the order reaches that instant (an operation
is forced to arrive at or after it, or nothing else can run), every handler on that host spawned
before it that has not finished stops there: its operation in flight never runs, a lock wait is
abandoned, its session ends (PostgreSQL rolls back what a gone client left open) and whoever waited
for its locks goes on at that instant. A handler whose next operation would reach the server only
at or after its host's death (or whose answer would come back then, or whose sleep ends then) is
not offered to the scheduler: it can only die.

The limits of :mod:`sim.engine.limits` hold here as in the SimPy world: a handler that yields
more than ``--max-ops`` operations is stopped, and when anything would happen past
``--max-sim-seconds`` of simulated time (an operation's arrival, the end of a sleep, the run's
end) the run ends there, unjudged, naming the limit and the handlers still running. A case read
from a trace knows the table it was found on (:attr:`Case.table`) and runs on no other.

Imports ``sim.record.history``, ``sim.record.clocks``, ``sim.engine.world`` (to read a finished world) and ``tracker``.
"""

from __future__ import annotations

import math
import random
import types
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sim.engine import interpreter, limits
from sim.engine.distributions import Dist, parse_dist
from sim.engine.limits import LimitExceeded, StrategyFailed, wall_clock_limit
from sim.judge.invariants import Violation, judge
from sim.record.clocks import Clock
from sim.record.history import JobTruth, RowVisibility, RunRecord, Step, clock_step, db_step, error_step
from tracker.backend import Blocked, Done, TrackerBackend
from tracker.errors import UserError
from tracker.lifecycle import DEFAULT_LIFECYCLE, Lifecycle
from tracker.ops import Begin, Commit, DbOp, Parallel, ReadClock, Rollback, Row, Sleep
from tracker.strategies import HandlerContext, JobChanges, JobView, LiveJob, Strategy
from tracker.table import Table

#: World keys a forced order cannot replay: a search or replay of a scenario that sets one is
#: refused, never run as if it were unset. (None today: process deaths are modelled, below.)
UNMODELLED_KEYS: tuple[str, ...] = ()


class UnmodelledWorld(UserError, ValueError):
    """A search or replay asked for a world the forced-order driver does not model."""


def require_modelled(params: dict[str, Any], source: str) -> None:
    """Refuse, in one line, a case whose parameters set a key of :data:`UNMODELLED_KEYS`."""
    keys = [k for k in UNMODELLED_KEYS if params.get(k) is not None]
    if keys:
        raise UnmodelledWorld(
            f"{source}: searches and replays do not model {', '.join(keys)} yet (a process death stops handlers at a "
            "true instant a forced order moves); run it with racetrack run, sweep or check"
        )


@dataclass(frozen=True)
class ActorSpec:
    """One handler to run: ``name`` is its session, ``after`` the actors that must finish first."""

    name: str
    job_id: str
    event: str
    host: str
    spawn_us: int
    view: JobView
    ctx: HandlerContext
    after: tuple[str, ...] = ()
    #: (request, reply) one-way latency in microseconds of its 1st, 2nd... database operation.
    latencies: tuple[tuple[int, int], ...] = ()
    #: The job instance's changes after the event, for a strategy that reads the live Job.
    job_changes: JobChanges = ()


@dataclass(frozen=True)
class Case:
    """Everything a forced-order run needs besides the strategy, the backend and the order."""

    scenario: str
    params: dict[str, Any] = field(hash=False)
    seed: int
    actors: tuple[ActorSpec, ...]
    clocks: dict[str, Clock] = field(hash=False)
    truth: dict[str, JobTruth] = field(hash=False)
    slack_us: int
    default_latency: tuple[int, int]
    #: The run ends no earlier than this (the world's own end: stalled runs, backoffs).
    end_floor_us: int = 0
    #: The scenario's column mapping and rules, which the record's judge reads.
    lifecycle: Lifecycle = DEFAULT_LIFECYCLE
    #: (request, reply) latencies of the ``Parallel`` statements the run sent, by branch session
    #: (``<actor>/<n>``): one operation each.
    branch_latencies: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict, hash=False)
    #: The worker processes that died, as (true time, host), in time order.
    deaths: tuple[tuple[int, str], ...] = ()
    #: With a client pool (``network.pool_size``): how long each session's 1st, 2nd... database
    #: operation waited for a connection in the recorded run (sessions that never waited: absent).
    queued: dict[str, tuple[int, ...]] = field(default_factory=dict, hash=False)
    #: The table the case must run on, when the case knows it (one read from a trace: the table
    #: the trace was found on); None: whatever table the caller opened the backend for (a case
    #: taken from a world, whose backend the search opened for the scenario's table).
    table: Table | None = field(default=None, hash=False, compare=False, repr=False)

    @property
    def rtt(self) -> Dist | None:
        """The world's database round-trip distribution (None: a case without one)."""
        table = self.params.get("network.db_rtt")
        try:
            return parse_dist(table) if table is not None else None
        except ValueError:
            return None

    def only_job(self, job_id: str) -> Case:
        """The same case with one job's actors and truth only (jobs' rows are independent)."""
        return replace(
            self,
            actors=tuple(a for a in self.actors if a.job_id == job_id),
            truth={k: v for k, v in self.truth.items() if k == job_id},
            branch_latencies={
                b: lat for b, lat in self.branch_latencies.items()
                if any(a.name == interpreter.actor_of(b) and a.job_id == job_id for a in self.actors)
            },
            queued={
                n: q for n, q in self.queued.items()
                if any(a.name == interpreter.actor_of(n) and a.job_id == job_id for a in self.actors)
            },
        )


class _PastTimeLimit(Exception):
    """Something in a forced-order run would happen past the simulated-time limit: the run ends."""


class WrongTable(UserError, ValueError):
    """A case that knows its table (one read from a trace) given a backend tracking another."""


def tracked_table(backend: TrackerBackend) -> Table | None:
    """The table ``backend`` tracks, when it says: the model's ``table``, the server's ``spec``,
    the differential backend's model's (None: a backend that does not say)."""
    for candidate in (backend, getattr(backend, "memory", None)):
        for attribute in ("table", "spec"):
            table = getattr(candidate, attribute, None)
            if isinstance(table, Table):
                return table
    return None


def require_table(case: Case, backend: TrackerBackend) -> None:
    """Refuse, in one line, to run ``case`` on a backend tracking another table than the case's:
    its verdicts would be another table's (a CHECK the case's table lacks rejects a write the
    case committed), yet a replay would call them the trace's."""
    if case.table is None:
        return
    tracked = tracked_table(backend)
    if tracked is None or tracked is case.table or tracked == case.table:
        return
    raise WrongTable(
        f"the trace was found on table {case.table.name} ({case.table.source or 'its own SQL'}) but the backend tracks "
        f"table {tracked.name} ({tracked.source or 'other SQL'}); it runs only on the table it was found on"
    )


class Scheduler(Protocol):
    """Chooses which ready actor's next database operation runs; ``position`` counts the
    operations already scheduled."""

    def choose(self, ready: tuple[str, ...], position: int) -> str: ...


class FirstReady:
    """The ready actor that comes first in the case (spawn order)."""

    def choose(self, ready: tuple[str, ...], position: int) -> str:
        return ready[0]


class FollowPrefix:
    """Follow ``prefix`` while it lasts, then the first ready actor (exhaustive search)."""

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = prefix

    def choose(self, ready: tuple[str, ...], position: int) -> str:
        if position < len(self.prefix):
            return self.prefix[position]
        return ready[0]


class FollowSchedule:
    """Replay: take the schedule's entries in order, skipping an entry whose actor cannot run
    now (finished, waiting on a lock, or absent under another strategy); once it is used up,
    the ready actor whose name comes earliest in the schedule (then in the case) runs.

    ``skipped`` counts skipped entries and ``extra`` operations beyond the schedule: both 0
    when the replay followed the schedule exactly.
    """

    def __init__(self, schedule: list[str]) -> None:
        self.schedule = schedule
        self.next = 0
        self.skipped = 0
        self.extra = 0
        self._rank: dict[str, int] = {}
        for i, name in enumerate(schedule):
            self._rank.setdefault(name, i)

    def choose(self, ready: tuple[str, ...], position: int) -> str:
        while self.next < len(self.schedule):
            name = self.schedule[self.next]
            self.next += 1
            if name in ready:
                return name
            self.skipped += 1
        self.extra += 1
        return min(ready, key=lambda n: (self._rank.get(n, math.inf), ready.index(n)))


@dataclass(frozen=True)
class OrderedRun:
    """A forced-order run: its record, the order it took and the choices it had."""

    record: RunRecord
    schedule: tuple[str, ...]
    #: The ready actors at each scheduled operation (the choice points).
    choices: tuple[tuple[str, ...], ...]
    crashes: tuple[str, ...] = ()
    #: Why the run cannot be judged (a handler crashed or reached a limit).
    failure: str | None = None
    #: The longest any operation was held back after it could first have arrived (microseconds).
    max_hold_us: int = 0

    @property
    def ops(self) -> int:
        return len(self.schedule)

    def violations(self) -> list[Violation]:
        return list(judge(self.record).violations)


@dataclass
class _Live:
    spec: ActorSpec
    clock: Clock
    gen: types.GeneratorType | interpreter.Crashed | None = None
    state: str = "new"  # new, ready, blocked, done
    local_us: int = 0
    pending: DbOp | None = None
    done_ops: int = 0
    yielded: int = 0
    #: While blocked: (op, sent, arrival, db_now, row before, blockers so far, reply latency)
    blocked: tuple[DbOp, int, int, int, Row | None, tuple[str, ...], int] | None = None
    #: Latencies drawn for operations beyond the recorded ones, and the stream they come from.
    drawn: list[tuple[int, int]] = field(default_factory=list)
    network: random.Random | None = None
    #: A ``Parallel`` statement's actor: the handler that sent it, and its place in the answer.
    branch_of: tuple[_Live, int] | None = None
    #: A handler waiting for its ``Parallel``: [answers, statements not back, latest reply].
    gathering: list[Any] | None = None
    #: When it started: a handler's spawn time, a ``Parallel`` statement's sending.
    started_us: int = 0


class _Run:
    """The state of one forced-order run."""

    def __init__(
        self, case: Case, strategy: Strategy, backend: TrackerBackend, scheduler: Scheduler, window_us: int | None
    ) -> None:
        self.case, self.backend, self.scheduler = case, backend, scheduler
        self.window_us = window_us
        self.urgent = {d for a in case.actors for d in a.after}
        self.live: dict[str, _Live] = {}
        for spec in case.actors:
            if strategy.handler(spec.event) is not None:
                self.live[spec.name] = _Live(spec, case.clocks[spec.host], started_us=spec.spawn_us)
        self.strategy = strategy
        self.now = 0
        self.steps: list[Step] = []
        self.schedule: list[str] = []
        self.choices: list[tuple[str, ...]] = []
        self.crashes: list[str] = []
        self.waiters: dict[str, list[str]] = {}
        self.vis = RowVisibility()
        self.ops_per_handler = limits.current().ops_per_handler
        #: The simulated-time limit (--max-sim-seconds), as the SimPy world applies it.
        self.sim_seconds = limits.current().sim_seconds
        self.limit_us = self.sim_seconds * 1_000_000
        #: Why the run cannot be judged (a handler crashed or reached a limit), as in the SimPy driver.
        self.failure: str | None = None
        self.max_hold_us = 0
        self.rtt = case.rtt
        #: Deaths not yet reached, earliest first.
        self.deaths = sorted(case.deaths)
        #: ``network.client = "http"``: BEGIN/COMMIT/ROLLBACK reach nothing (PostgREST), as in the world.
        self.http = case.params.get("network.client") == "http"
        #: Names the sessions of ``Parallel`` statements, as the SimPy driver does.
        self.statements = interpreter.Statements()

    def run(self) -> OrderedRun:
        self.backend.reset()
        try:
            self._loop()
        except _PastTimeLimit:
            # As the SimPy world does (World._run_within_limits): the run ends there, unjudged.
            stuck = ", ".join(
                f"{name} ({interpreter.suspended_at(a.gen)})" for name, a in sorted(self.live.items())
                if a.state != "done" and isinstance(a.gen, types.GeneratorType) and a.gen.gi_frame is not None
            )
            self.failure = self.failure or (
                f"the run went past {self.sim_seconds:g} simulated seconds (--max-sim-seconds)"
                + (f"; still running: {stuck}" if stuck else "")
            )
            for a in self.live.values():
                if a.state != "done":
                    interpreter.stop(a.gen)
            return OrderedRun(
                self._record(self.now), tuple(self.schedule), tuple(self.choices), tuple(self.crashes), self.failure,
                self.max_hold_us,
            )
        for a in list(self.live.values()):
            if a.state != "done":  # waiting for a lock nobody will release: a deadlock
                self._error(a, "deadlock: waiting for a row lock that is never released")
                self._finish(a)
        end = max([self.now, self.case.end_floor_us] + [a.local_us for a in self.live.values()])
        if end > self.limit_us:  # the world's own end (a backoff, a late reply) is past the limit
            self.failure = self.failure or f"the run went past {self.sim_seconds:g} simulated seconds (--max-sim-seconds)"
        return OrderedRun(
            self._record(end), tuple(self.schedule), tuple(self.choices), tuple(self.crashes), self.failure, self.max_hold_us
        )

    def _within_limit(self, at_us: float) -> None:
        """Something happens at ``at_us``: past the simulated-time limit, the run ends (a handler
        that sleeps forever is stopped here, as the SimPy world stops it)."""
        if at_us > self.limit_us:
            raise _PastTimeLimit

    def _loop(self) -> None:
        while True:
            while self.deaths and self.deaths[0][0] <= self.now:  # time passed a death (a lock released late)
                self._die(*self.deaths.pop(0))
            self._start_ready()
            ready = tuple(n for n, a in self.live.items() if a.state == "ready")
            if not ready:
                if self.deaths:  # what is left waits for, or can only die at, the next death
                    self._die(*self.deaths.pop(0))
                    continue
                break
            if self.window_us is not None:
                ready = self._offered(ready)
            name = self.scheduler.choose(ready, len(self.schedule))
            if name not in ready:
                raise ValueError(f"scheduler chose {name!r}, which is not ready ({', '.join(ready)})")
            chosen = self.live[name]
            arrival = max(self.now, self._natural(chosen))
            while self.deaths and self.deaths[0][0] <= arrival:  # the order passes a death: it happens first
                self._die(*self.deaths.pop(0))
            self._within_limit(arrival)
            self.schedule.append(name)
            self.choices.append(ready)
            self._execute(self.live[name])

    def _record(self, end: int) -> RunRecord:
        tolerance = self.case.slack_us + max(c.error_bound_us(end) for c in self.case.clocks.values())
        # In time order (clock reads were taken eagerly), as the SimPy driver lists them.
        steps = sorted(self.steps, key=lambda st: (st.executed_us, st.index))
        return RunRecord(
            steps=tuple(replace(st, index=i) for i, st in enumerate(steps)),
            rows=self.backend.rows(),
            truth=dict(self.case.truth),
            tolerance_us=tolerance,
            end_us=end,
            lifecycle=self.case.lifecycle,
        )

    def _offered(self, ready: tuple[str, ...]) -> tuple[str, ...]:
        """The ready actors a search may pick (see the module docstring)."""
        assert self.window_us is not None
        # When each operation could first have arrived: held back from then, not from "now".
        natural = {n: self._natural(self.live[n]) for n in ready}
        horizon = min(natural.values()) + self.window_us
        urgent = [max(self.now, natural[n]) for n in ready if n in self.urgent]
        if urgent:
            horizon = min(horizon, min(urgent))
        offered = tuple(n for n in ready if max(self.now, natural[n]) <= horizon)
        # Time moved past a deadline without a choice (a lock released late): earliest first.
        return offered or (min(ready, key=lambda n: (natural[n], ready.index(n))),)

    # -- actors --------------------------------------------------------------------------------

    def _start_ready(self) -> None:
        started = True
        while started:
            started = False
            for a in list(self.live.values()):  # a handler's first Parallel adds actors
                if a.state == "new" and all(
                    self.live[d].state == "done" for d in a.spec.after if d in self.live
                ):
                    handler = self.strategy.handler(a.spec.event)
                    assert handler is not None
                    a.gen = interpreter.start(handler, self._job_view(a), a.spec.ctx)
                    a.local_us = a.spec.spawn_us
                    a.state = "ready"
                    self._advance(a, None, None)
                    started = True

    def _job_view(self, a: _Live) -> JobView:
        """The handler's job: live (read at the actor's own time) when its strategy reads it so."""
        if self.strategy.job_view != "live" or not a.spec.job_changes:
            return a.spec.view
        return LiveJob(a.spec.view, a.spec.job_changes, a.spec.spawn_us, lambda: a.local_us)

    def _advance(self, a: _Live, send: Any, throw: BaseException | None) -> None:
        """Run the handler up to its next database operation (or its end)."""
        assert a.gen is not None
        while True:
            step = a.gen if isinstance(a.gen, interpreter.Crashed) else interpreter.advance(a.gen, send, throw)
            if not isinstance(step, interpreter.Yielded):
                self._ended(a, step)
                return
            a.yielded += 1
            if a.yielded > self.ops_per_handler:
                assert not isinstance(a.gen, interpreter.Crashed)
                message = interpreter.stop_runaway(a.spec.name, a.gen, self.ops_per_handler)
                self.failure = self.failure or message
                self._error(a, f"stopped: {self.failure}")
                self._finish(a)
                return
            op = step.op
            send, throw = None, None
            if isinstance(op, Sleep):
                a.local_us += max(0, round(op.ms * 1000))
                if self._dies_by(a, a.local_us):
                    return
                self._within_limit(a.local_us)
            elif isinstance(op, ReadClock):
                send = a.clock.read(a.local_us)
                self.steps.append(clock_step(len(self.steps), a.spec, a.local_us, send))
            elif self.http and isinstance(op, (Begin, Commit, Rollback)):
                continue  # nothing is sent: it answers None at once
            elif op.__class__ is Parallel:
                if not op.ops:  # type: ignore[union-attr]
                    send = ()
                    continue
                self._fork(a, op)  # type: ignore[arg-type]
                return
            else:
                a.pending = op  # type: ignore[assignment]
                a.state = "ready"
                self._dies_by(a, self._natural(a))
                return

    def _death_of(self, a: _Live) -> int | None:
        """When ``a``'s process dies (the next death of its host after it was spawned), if it does."""
        for at, host in self.deaths:
            if host == a.spec.host and a.spec.spawn_us < at:
                return at
        return None

    def _dies_by(self, a: _Live, at_us: int) -> bool:
        """``a`` would go on only at ``at_us``: if its process is dead by then, it waits to die."""
        death = self._death_of(a)
        if death is None or at_us < death:
            return False
        a.state = "dying"
        return True

    def _die(self, at_us: int, host: str) -> None:
        """``host``'s process dies at ``at_us``: every handler on it spawned before then that has
        not finished stops there, as :meth:`sim.engine.driver.Driver.stop_host` stops them."""
        self.now = max(self.now, at_us)
        # In the order their processes started, as the SimPy driver stops them.
        victims = [
            a for a in sorted(self.live.values(), key=lambda a: (a.started_us, a.branch_of is not None))
            if a.spec.host == host and a.spec.spawn_us < at_us and a.state != "done"
        ]
        names = {a.spec.name for a in victims}
        for waiting in self.waiters.values():  # their lock waits are abandoned: nobody wakes them
            waiting[:] = [w for w in waiting if w not in names]
        for a in victims:
            a.state = "dying"
        for a in victims:
            interpreter.stop(a.gen)
            a.local_us, a.gathering = at_us, None
            self._error(a, "stopped: its worker process died")
            self._finish(a)

    def _fork(self, a: _Live, op: Parallel) -> None:
        """``a`` sent ``op``: each statement becomes a ready actor of its own; ``a`` waits."""
        a.state, a.pending = "parallel", None
        a.gathering = [[None] * len(op.ops), len(op.ops), a.local_us]
        sessions = self.statements.sessions(a.spec.name, len(op.ops))
        for i, (name, statement) in enumerate(zip(sessions, op.ops, strict=True)):
            spec = replace(a.spec, name=name, after=(), latencies=self.case.branch_latencies.get(name, ()), job_changes=())
            b = self.live[name] = _Live(
                spec, a.clock, state="ready", local_us=a.local_us, pending=statement, branch_of=(a, i), started_us=a.local_us
            )
            self._dies_by(b, self._natural(b))

    def _branch_back(self, b: _Live, outcome: Done | Exception) -> None:
        """A ``Parallel`` statement's answer is back (``outcome``: its answer, or the exception
        the table refused it with): its session ends; its handler goes on once all are back, or
        at once when it was refused."""
        assert b.branch_of is not None
        parent, i = b.branch_of
        self._finish(b)
        gathering = parent.gathering
        if parent.state != "parallel" or gathering is None:
            return  # the handler was refused by another statement already, or stopped
        refused = isinstance(outcome, Exception)
        if refused or outcome.error is not None:  # type: ignore[union-attr]
            parent.gathering, parent.state, parent.local_us = None, "ready", b.local_us
            if refused:
                assert parent.gen is not None and not isinstance(parent.gen, interpreter.Crashed)
                self._ended(parent, interpreter.refused(parent.gen, outcome))  # type: ignore[arg-type]
            else:
                self._advance(parent, None, outcome.error)  # type: ignore[union-attr]
            return
        gathering[0][i] = outcome.value  # type: ignore[union-attr]
        gathering[1] -= 1
        gathering[2] = max(gathering[2], b.local_us)
        if not gathering[1]:
            parent.gathering, parent.state, parent.local_us = None, "ready", gathering[2]
            self._advance(parent, tuple(gathering[0]), None)

    def _ended(self, a: _Live, step: interpreter.Outcome) -> None:
        if isinstance(step, (interpreter.Unhandled, interpreter.Crashed)):
            self._error(a, step.message)
        if isinstance(step, interpreter.Crashed):
            self.crashes.append(f"{a.spec.name}: {step.summary} ({step.where})")
            self.failure = self.failure or f"{a.spec.name} {step.message}"
        self._finish(a)

    def _finish(self, a: _Live) -> None:
        a.state = "done"
        a.pending = None
        self.backend.end_session(a.spec.name)
        self.vis.end(a.spec.name)
        if self.waiters.get(a.spec.name):
            self._wake(a.spec.name, a.local_us)

    def _queued(self, a: _Live) -> int:
        """How long ``a``'s next operation waited for a pool connection in the recorded run (0
        beyond the recorded operations, or without a pool)."""
        waits = self.case.queued.get(a.spec.name, ())
        return waits[a.done_ops] if a.done_ops < len(waits) else 0

    def _natural(self, a: _Live) -> int:
        """When ``a``'s next operation could first reach the server: its time, its recorded wait
        for a connection, its request latency."""
        return a.local_us + self._queued(a) + self._latency(a)[0]

    def _latency(self, a: _Live) -> tuple[int, int]:
        k = a.done_ops
        if k < len(a.spec.latencies):
            return a.spec.latencies[k]
        if self.rtt is None:
            return self.case.default_latency
        if a.network is None:
            # The world's stream for this actor (Draws.one_way_ms), past the draws it recorded.
            a.network = random.Random(f"racetrack:{self.case.seed}:net:{a.spec.name}")
            for _ in range(2 * len(a.spec.latencies)):
                self.rtt.sample(a.network)
        while len(a.drawn) <= k - len(a.spec.latencies):
            request = round(self.rtt.sample(a.network) / 2 * 1000)
            reply = round(self.rtt.sample(a.network) / 2 * 1000)
            a.drawn.append((request, reply))
        return a.drawn[k - len(a.spec.latencies)]

    # -- database operations -------------------------------------------------------------------

    def _execute(self, a: _Live) -> None:
        op = a.pending
        assert op is not None
        request, reply = self._latency(a)
        sent = a.local_us + self._queued(a)
        arrival = self.now = max(self.now, sent + request)
        self.max_hold_us = max(self.max_hold_us, arrival - sent - request)
        db_now = self.case.clocks["db"].read(arrival)
        job_id = getattr(op, "job_id", a.spec.job_id)
        before = self.vis.visible(a.spec.name, job_id)
        try:
            outcome = self.backend.execute(a.spec.name, op, db_now)
        except (ValueError, TypeError) as exc:  # an operation the table cannot take at all
            if a.branch_of is not None:
                self._branch_back(a, exc)
                return
            assert a.gen is not None and not isinstance(a.gen, interpreter.Crashed)
            self._ended(a, interpreter.refused(a.gen, exc))
            return
        if isinstance(outcome, Blocked):
            a.state = "blocked"
            a.blocked = (op, sent, arrival, db_now, before, outcome.blockers, reply)
            self.waiters.setdefault(outcome.blockers[0], []).append(a.spec.name)
            return
        self._complete(a, op, sent, arrival, db_now, before, (), reply, outcome)

    def _complete(
        self, a: _Live, op: DbOp, sent: int, arrival: int, db_now: int, before: Row | None,
        blocked_by: tuple[str, ...], reply: int, outcome: Done,
    ) -> None:
        executed = self.now
        committed = self.vis.track(a.spec.name, op, outcome)
        s = a.spec
        self.steps.append(
            db_step(
                len(self.steps), s, op, sent_us=sent, arrived_us=arrival, executed_us=executed,
                replied_us=executed + reply, db_now_us=db_now, blocked_by=blocked_by, outcome=outcome,
                row_before=before, row_after=self.vis.visible(s.name, getattr(op, "job_id", s.job_id)),
                committed=committed,
            )
        )
        a.done_ops += 1
        a.local_us = executed + reply
        a.pending, a.blocked, a.state = None, None, "ready"
        if self._dies_by(a, a.local_us):  # its answer comes back after its process died
            if (isinstance(op, (Commit, Rollback)) or outcome.error is not None) and self.waiters.get(s.name):
                self._wake(s.name, executed)
            return
        # An error aborts a transaction and releases its locks at once (as the SimPy driver does).
        if (isinstance(op, (Commit, Rollback)) or outcome.error is not None) and self.waiters.get(s.name):
            self._wake(s.name, executed)
        if a.branch_of is not None:
            self._branch_back(a, outcome)
        elif outcome.error is not None:
            self._advance(a, None, outcome.error)
        else:
            self._advance(a, outcome.value, None)

    def _wake(self, session: str, at_us: int) -> None:
        """``session`` ended its transaction at ``at_us``: its waiters try again, in order."""
        self.now = max(self.now, at_us)
        for name in self.waiters.pop(session, []):
            w = self.live[name]
            assert w.blocked is not None
            if self._dies_by(w, self.now):  # its process died while it waited: the wait was abandoned
                continue
            op, sent, arrival, db_now, before, blockers, reply = w.blocked
            outcome = self.backend.resume(name)
            if isinstance(outcome, Blocked):
                new = blockers + tuple(b for b in outcome.blockers if b not in blockers)
                w.blocked = (op, sent, arrival, db_now, before, new, reply)
                self.waiters.setdefault(outcome.blockers[0], []).append(name)
            else:
                self._complete(w, op, sent, arrival, db_now, before, blockers, reply, outcome)

    def _error(self, a: _Live, message: str) -> None:
        self.steps.append(error_step(len(self.steps), a.spec, a.local_us, message))


def run_ordered(
    case: Case, strategy: Strategy, backend: TrackerBackend, scheduler: Scheduler, window_us: int | None = None
) -> OrderedRun:
    """Run ``case``'s handlers (``strategy``'s) in the order ``scheduler`` chooses; with
    ``window_us``, among the actors a search may pick (module docstring). A handler that crashes
    or reaches a limit raises :class:`StrategyFailed` (one line: the handler, its file and line)."""
    require_table(case, backend)
    run = _Run(case, strategy, backend, scheduler, window_us)
    try:
        with wall_clock_limit(limits.current().wall_seconds, f"a forced-order run of {case.scenario} with {strategy.name}"):
            done = run.run()
    except LimitExceeded as exc:
        where = interpreter.user_frame(exc)
        raise StrategyFailed(f"strategy {strategy.name}: {exc}" + (f"; it was running {where}" if where else "")) from None
    if done.failure:
        raise StrategyFailed(f"strategy {strategy.name}: {done.failure} (the run was not judged)")
    return done


# --- cases from finished SimPy runs ------------------------------------------------------------


def latencies_of(record: RunRecord, actor: str) -> tuple[tuple[int, int], ...]:
    """An actor's recorded (request, reply) one-way latencies, per database operation."""
    return tuple(
        (s.executed_us - s.waited_us - s.sent_us, s.replied_us - s.executed_us)
        for s in record.steps
        if s.kind == "db" and s.actor == actor
    )


def schedule_of(record: RunRecord) -> tuple[str, ...]:
    """The order in which a run's database operations reached the server (one actor name per
    operation): arrival time, ties in the order they executed."""
    db = [s for s in record.steps if s.kind == "db"]
    return tuple(s.actor for s in sorted(db, key=lambda s: (s.executed_us - s.waited_us, s.index)))
