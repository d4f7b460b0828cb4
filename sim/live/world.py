"""One live run: a scenario's workload on a real BullMQ queue, the strategy's handlers on a real
PostgreSQL, and the run turned into the same :class:`~sim.record.history.RunRecord` a simulated
run gives.

* **The queue.** The ``bullmq`` package (BullMQ's own Lua scripts) on a real Redis, under a key
  prefix of this run's own, with an owner marker (``sim.live.leftovers``); every key under it is
  deleted afterwards, nothing else is touched.
* **The workload.** A producer adds ``job.count`` jobs with the scenario's gaps (awaiting the
  strategy's ``on_created`` insert first, as the application does), with ``attempts``,
  ``backoff`` and ``delay`` as job options, and removes some of them later (``[cancel]``). One
  ``Worker`` per worker host with the scenario's concurrency, lock duration, stalled interval and
  max stalled count runs them: a duration is an ``asyncio.sleep``, a failure a raise, a stall a
  job whose lock is no longer renewed (the worker "freezes"). Every random choice comes from the
  simulator's :class:`~sim.engine.world.Draws` in the same order, so a seed gives the same
  durations, failures, stalls and cancellations live and simulated.
* **The handlers.** Attached to the worker's events with ``worker.on(...)`` as an application
  attaches them; a listener starts the handler as a task and returns (the emitter does not await
  it). ``progress`` is emitted after ``job.updateProgress`` as Node's worker does (the Python port
  emits none); ``removed`` by the producer after ``queue.remove`` succeeded.
* **The driver.** :class:`LiveDriver` steps handlers through ``sim.engine.interpreter``: ``Sleep``
  sleeps, ``ReadClock`` reads this host's clock plus the host's injected offset and drift (the
  scenario's ``[clocks]``, drawn as in simulation), statements go to PostgreSQL (``now()`` is the
  database host's clock when the statement or transaction is sent).
* **The truth** is what BullMQ recorded: the events stream (entries stamped by Redis's clock, in
  order), and each job's hash (``timestamp``, ``processedOn``, ``finishedOn``, ``atm``, ``ats``).

Time: every instant is microseconds since the run began, and every clock reading is
``EPOCH_US + t + offset + drift``, exactly as in simulation, so a live record reads (and is judged)
like a simulated one. This module reads the wall clock (marked): that is what live means.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim.engine import interpreter, limits
from sim.engine.scenario import Scenario
from sim.engine.world import Draws, handler_context
from sim.live.leftovers import OWNER_SUFFIX, owner_marker
from sim.live.postgres import AsyncTracker
from sim.live.stop import STOP, HandlerInterrupted
from sim.record.clocks import Clock
from sim.record.history import Actor, Attempt, JobTruth, RowVisibility, RunRecord, Step, clock_step, db_step, error_step
from tracker.ops import (
    Begin,
    Commit,
    DbOp,
    Insert,
    Parallel,
    ReadClock,
    Rollback,
    Rpc,
    Select,
    Sleep,
    TrackerError,
    Update,
)
from tracker.strategies import HandlerContext, HandlerFn, JobView, Strategy

QUEUE = "jobs"
_runs = itertools.count(1)


class LiveRunError(Exception):
    """A live run could not finish (a server went away, the queue never settled): one line."""


def us(ms: float) -> int:
    return round(ms * 1000)


class Timebase:
    """Microseconds since the run began, from the wall clock (this host's, as Redis's is)."""

    def __init__(self) -> None:
        self.start_us = time.time_ns() // 1000  # wall-clock ok: a live run's own time

    def now(self) -> int:
        return time.time_ns() // 1000 - self.start_us  # wall-clock ok: a live run's own time

    def of_ms(self, wall_ms: int | str | None) -> int | None:
        """A BullMQ millisecond timestamp as run time."""
        return None if wall_ms in (None, "", 0, "0") else int(wall_ms) * 1000 - self.start_us  # type: ignore[arg-type]


def statement_kind(op: DbOp) -> str:
    """A round trip's kind for calibration: select, select-for-update, insert, update, begin, commit."""
    if isinstance(op, Select):
        return "select-for-update" if op.for_update else "select"
    return {Insert: "insert", Update: "update", Begin: "begin", Commit: "commit", Rollback: "rollback", Rpc: "rpc"}[type(op)]


@dataclass
class Measured:
    """What the live world really did, for calibration: per-kind round trips (us), how long after
    a state change its listener started (us, per event), attempt durations (us), and how late
    BullMQ moved a delayed job (retry backoff, ``opts.delay``) to wait after it was due (us)."""

    round_trips: dict[str, list[int]] = field(default_factory=dict)
    listener_delays: dict[str, list[int]] = field(default_factory=dict)
    durations: list[int] = field(default_factory=list)
    promotion_delays: list[int] = field(default_factory=list)


class LiveDriver:
    """Interprets handlers as asyncio tasks against a real database."""

    def __init__(self, db: AsyncTracker, db_clock: Clock, timebase: Timebase, measured: Measured) -> None:
        self.db = db
        self.db_clock = db_clock
        self.time = timebase
        self.measured = measured
        self.steps: list[Step] = []
        self.crashes: list[str] = []
        #: Why the run cannot be judged (a handler crashed or reached a limit), as in the SimPy driver.
        self.failure: str | None = None
        self.ops_per_handler = limits.current().ops_per_handler
        self.spawned: list[tuple[Actor, int]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.lost: BaseException | None = None
        self._rows = RowVisibility()
        #: Names the sessions of ``Parallel`` statements, as the SimPy driver does.
        self._statements = interpreter.Statements()

    def spawn(self, actor: Actor, fn: HandlerFn, view: JobView, ctx: HandlerContext) -> asyncio.Task[None]:
        """Start a handler now without waiting for it (as Node's EventEmitter calls a listener)."""
        self.spawned.append((actor, self.time.now()))
        task = asyncio.get_running_loop().create_task(self._run(actor, fn, view, ctx))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait until every handler (and every handler they caused) has finished."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def abandon(self) -> None:
        """Cancel the handlers still running (the run is being abandoned) and wait for them to end,
        so that none is left using a connection or the loop."""
        while self.tasks:
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _run(self, actor: Actor, fn: HandlerFn, view: JobView, ctx: HandlerContext) -> None:
        send: Any = None
        throw: BaseException | None = None
        ops = 0
        gen: types.GeneratorType | interpreter.Crashed | None = None
        try:
            while True:
                if STOP.requested:  # Ctrl-C or SIGTERM: no handler code runs any more
                    return
                # The handler's own code runs here; a stop breaks into it (sim.live.stop).
                STOP.stepping = True
                try:
                    if gen is None:
                        gen = interpreter.start(fn, view, ctx)
                    step = gen if isinstance(gen, interpreter.Crashed) else interpreter.advance(gen, send, throw)
                finally:
                    STOP.stepping = False
                if not isinstance(step, interpreter.Yielded):
                    if isinstance(step, (interpreter.Unhandled, interpreter.Crashed)):
                        self.steps.append(error_step(len(self.steps), actor, self.time.now(), step.message))
                    if isinstance(step, interpreter.Crashed):
                        self.crashes.append(f"{actor.name}: {step.summary} ({step.where})")
                        self.failure = self.failure or f"{actor.name} {step.message}"
                    return
                ops += 1
                if ops > self.ops_per_handler:
                    assert not isinstance(gen, interpreter.Crashed)
                    message = interpreter.stop_runaway(actor.name, gen, self.ops_per_handler)
                    self.failure = self.failure or message
                    return
                op = step.op
                send, throw = None, None
                if isinstance(op, Sleep):
                    if op.ms > 0:
                        await asyncio.sleep(op.ms / 1000)
                elif isinstance(op, ReadClock):
                    at = self.time.now()
                    send = actor.clock.read(at)
                    self.steps.append(clock_step(len(self.steps), actor, at, send))
                elif op.__class__ is Parallel:
                    answer = await self._parallel(actor, op)  # type: ignore[arg-type]
                    if isinstance(answer, TrackerError):
                        throw = answer
                    else:
                        send = answer
                else:
                    outcome = await self._db(actor, op)  # type: ignore[arg-type]
                    if outcome.error is not None:
                        throw = outcome.error
                    else:
                        send = outcome.value
        except HandlerInterrupted:  # Ctrl-C or SIGTERM while the handler's code ran: the batch stops
            return
        except Exception as exc:  # the database went away: the run cannot be judged
            self.lost = self.lost or exc
        finally:
            try:
                await self.db.end_session(actor.name)
            except Exception as exc:  # same: remembered, the run reports it
                self.lost = self.lost or exc
            self._rows.end(actor.name)

    async def _parallel(self, actor: Actor, op: Parallel) -> Any:
        """``Promise.all``: each statement a task on a session (a connection) of its own, named as
        in the SimPy driver; the answers once all are back, or the first refusal to come back.
        The other statements run on to their end (and :meth:`settle` waits for them)."""
        tasks = []
        for session, statement in zip(self._statements.sessions(actor.name, len(op.ops)), op.ops, strict=True):
            branch = Actor(session, actor.job_id, actor.event, actor.host, actor.clock)
            task = asyncio.get_running_loop().create_task(self._branch(branch, statement))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            tasks.append(task)
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done and task.result().error is not None:
                    return task.result().error
        return tuple(task.result().value for task in tasks)

    async def _branch(self, actor: Actor, op: DbOp) -> Any:
        """One statement of a ``Parallel``, on its own session, ended (committed) when it is back."""
        try:
            return await self._db(actor, op)
        finally:
            await self.db.end_session(actor.name)
            self._rows.end(actor.name)

    async def _db(self, actor: Actor, op: DbOp) -> Any:
        sent = self.time.now()
        db_now = self.db_clock.read(sent)
        before = self._rows.visible(actor.name, getattr(op, "job_id", actor.job_id))
        outcome, blocked_by = await self.db.execute(actor.name, op, db_now)
        replied = self.time.now()
        # The server ran it somewhere between: the midpoint is the best single guess. A statement
        # that waited for a lock counts its wait from its sending (the round trip is ~1 ms).
        executed = (sent + replied) // 2
        arrived = sent if blocked_by else executed
        self.measured.round_trips.setdefault(statement_kind(op), []).append(replied - sent)
        committed = self._rows.track(actor.name, op, outcome)
        job_id = getattr(op, "job_id", actor.job_id)
        self.steps.append(
            db_step(
                len(self.steps), actor, op, sent_us=sent, arrived_us=arrived, executed_us=executed, replied_us=replied,
                db_now_us=db_now, blocked_by=blocked_by, outcome=outcome, row_before=before,
                row_after=self._rows.visible(actor.name, job_id), committed=committed,
            )
        )
        return outcome


class JobFailed(Exception):
    """How a live attempt fails: the processor raises, as an application's would."""


@dataclass
class _Job:
    index: int
    id: str
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    hosts: list[str] = field(default_factory=list)  # the worker of each 'active', in order
    events: dict[str, int] = field(default_factory=dict)
    timestamp_ms: int = 0  # BullMQ's job.timestamp (set when the job was added)


class LiveWorld:
    """One live run of a scenario and a strategy on a Redis and a PostgreSQL."""

    def __init__(self, scenario: Scenario, strategy: Strategy, seed: int, redis_url: str, db: AsyncTracker) -> None:
        self.scenario = scenario
        self.strategy = strategy
        self.seed = seed
        self.redis_url = redis_url
        self.db = db
        self.draws = Draws(seed)
        s = scenario
        self.hosts = ["api", "db"] + [f"worker-{i + 1}" for i in range(s["workers.count"])]
        self.clocks: dict[str, Clock] = {}
        for host in self.hosts:
            offset_ms, drift = self.draws.clock(host, s["clocks.max_offset_ms"], s["clocks.max_drift_ppm"])
            self.clocks[host] = Clock(host, us(offset_ms), drift, 1 if host == "db" else 1000)
        self.contexts = {host: handler_context(s, host) for host in self.hosts}
        self.prefix = f"racetrack-live-{os.getpid()}-{next(_runs)}-{secrets.token_hex(4)}"
        self.measured = Measured()
        #: Where the events stream and a job's hash disagree (the truth would be in doubt).
        self.truth_mismatches: list[str] = []
        self.jobs: dict[str, _Job] = {}
        self.time: Timebase | None = None
        self.driver: LiveDriver | None = None

    # -- running -------------------------------------------------------------------------------

    async def run(self, deadline_s: float) -> RunRecord:
        """Run until every job has settled and every handler finished; clean up the queue's keys."""
        from bullmq import Queue, Worker

        s = self.scenario
        self.time = timebase = Timebase()
        self.driver = driver = LiveDriver(self.db, self.clocks["db"], timebase, self.measured)
        opts = {"connection": self.redis_url, "prefix": self.prefix}
        queue = Queue(QUEUE, opts)
        workers: list[Any] = []
        try:
            # Before any job: a killed run's keys are then provably racetrack's (`racetrack clean`).
            await queue.client.set(f"{self.prefix}{OWNER_SUFFIX}", owner_marker())
            for number, host in enumerate(self.hosts[2:]):
                worker = Worker(
                    QUEUE, self._processor(host, self._worker_at(workers, number)),
                    {
                        **opts, "concurrency": s["workers.concurrency"],
                        "lockDuration": max(1, round(s["workers.lock_duration_ms"])),
                        "stalledInterval": max(1, round(s["workers.stalled_interval_ms"])),
                        "maxStalledCount": s["workers.max_stalled_count"],
                        "drainDelay": 1, "name": host,
                    },
                )
                self._listen(worker, host)
                workers.append(worker)
            try:
                await asyncio.wait_for(self._produce_and_settle(queue), deadline_s)
            except TimeoutError:
                unsettled = sorted(j for j, job in self.jobs.items() if not job.settled.is_set())
                raise LiveRunError(
                    f"the live run did not settle within {deadline_s:g} s (jobs still open: {', '.join(unsettled) or 'none'})"
                ) from None
            for worker in workers:
                await worker.close()
            workers.clear()
            if driver.lost is not None:
                raise LiveRunError(str(driver.lost))
            end = timebase.now()
            truth = await self._truth(queue.client)
            rows = await self.db.rows()
        finally:
            await driver.abandon()  # none when the run ended normally; an interrupted run's handlers
            for worker in workers:
                await worker.close(force=True)
            await self._remove_keys(queue)
        slack = us(s["invariants.timestamp_slack_ms"])
        tolerance = slack + max(c.error_bound_us(end) for c in self.clocks.values())
        self._measure_listener_delays(truth)
        order = {j: i for i, j in enumerate(sorted(rows, key=lambda j: self.jobs[j].index if j in self.jobs else 0))}
        return RunRecord(
            steps=tuple(driver.steps),
            rows={j: rows[j] for j in sorted(rows, key=order.__getitem__)},
            truth=truth,
            tolerance_us=tolerance,
            end_us=end,
            lifecycle=self.scenario.lifecycle,
        )

    @staticmethod
    def _worker_at(workers: list[Any], number: int) -> Callable[[], Any]:
        return lambda: workers[number]

    async def _produce_and_settle(self, queue: Any) -> None:
        assert self.driver is not None
        s = self.scenario
        adds: list[asyncio.Task[None]] = []
        for index in range(s["job.count"]):
            if index:
                await asyncio.sleep(self.draws.interarrival_ms(s.dist("job.interarrival")) / 1000)
            adds.append(asyncio.get_running_loop().create_task(self._add(queue, index)))
        await asyncio.gather(*adds)
        for job in list(self.jobs.values()):
            await job.settled.wait()
        await self.driver.settle()

    async def _add(self, queue: Any, index: int) -> None:
        assert self.driver is not None and self.time is not None
        s = self.scenario
        delay_ms = s["job.delay_ms"]
        job = self.jobs[f"job-{index + 1}"] = _Job(index, f"job-{index + 1}")
        view = JobView(
            id=job.id, attempt=0, attempts_made=0, attempts_started=0, max_attempts=s["job.attempts"],
            timestamp_us=self.clocks["api"].read(self.time.now()), delayed=delay_ms > 0,
        )
        created = self._emit("created", job, "api", view)
        if created is not None:
            await created  # the application awaits its insert before adding the job
        backoff: dict[str, Any] = {}
        if s["backoff.type"] != "none":
            backoff = {"backoff": {"type": s["backoff.type"], "delay": round(s["backoff.delay_ms"])}}
            if s["backoff.jitter"] > 0:
                backoff["backoff"]["jitter"] = s["backoff.jitter"]
        added = await queue.add(
            "job", {"index": index},
            {"jobId": job.id, "attempts": s["job.attempts"], "delay": round(delay_ms), **backoff},
        )
        job.timestamp_ms = int(added.timestamp)
        cancel = self.draws.job_chance(index, "cancel", s["cancel.probability"])
        after = self.draws.job_ms(index, "cancel_after", s.dist("cancel.after"))
        if cancel:
            await asyncio.sleep(after / 1000)
            await self._remove(queue, job)

    async def _remove(self, queue: Any, job: _Job) -> None:
        """Remove a job that is still waiting or delayed (BullMQ refuses a locked one)."""
        assert self.time is not None
        if await queue.getJobState(job.id) not in ("waiting", "delayed", "prioritized"):
            return
        try:
            removed = await queue.remove(job.id)
        except Exception:  # the job was taken (locked) between the two calls
            return
        if not removed:
            return
        job.settled.set()
        fetched = await queue.getJob(job.id)
        made = int(getattr(fetched, "attemptsMade", 0) or 0)
        view = JobView(
            id=job.id, attempt=made, attempts_made=made, attempts_started=made,
            max_attempts=self.scenario["job.attempts"],
            timestamp_us=self.clocks["api"].read(self.time.of_ms(job.timestamp_ms) or 0),
            delayed=self.scenario["job.delay_ms"] > 0, removed_on_us=self.clocks["api"].read(self.time.now()),
        )
        self._emit("removed", job, "api", view)

    def _processor(self, host: str, worker_of: Callable[[], Any]) -> Callable[..., Any]:
        s = self.scenario

        async def process(bull_job: Any, token: str) -> str:
            job = self.jobs[bull_job.id]
            draws, index = self.draws, job.index
            duration_ms = draws.job_ms(index, "duration", s.dist("job.duration"))
            fails = draws.job_chance(index, "fail", s["job.fail_probability"])
            stalls = draws.job_chance(index, "stall", s["stalls.probability"])
            if stalls:  # freeze: stop renewing the lock, let the stall checker take the job back
                draws.job_uniform(index, "stall_detect", 0.0, s["workers.stalled_interval_ms"])
                worker_of().lockManager.untrack_job(bull_job.id)
                frozen_ms = s["workers.lock_duration_ms"] + 2 * s["workers.stalled_interval_ms"] + duration_ms
                await asyncio.sleep(frozen_ms / 1000)
                return "late"  # its lock is gone: BullMQ refuses this finish
            updates = s["job.progress_updates"]
            started = self.time.now() if self.time else 0
            for k in range(1, updates + 1):
                await asyncio.sleep(duration_ms / (updates + 1) / 1000)
                progress = {"percent": round(100 * k / (updates + 1))}
                await bull_job.updateProgress(progress)
                worker_of().emit("progress", bull_job, progress)  # as Node's worker does
            await asyncio.sleep(duration_ms / (updates + 1) / 1000)
            if self.time:
                self.measured.durations.append(self.time.now() - started)
            if fails:
                if s["backoff.jitter"] > 0:
                    draws.job_uniform(index, "jitter", 0.0, 1.0)  # BullMQ draws the jitter; keep the stream aligned
                raise JobFailed(f"attempt {bull_job.attemptsMade + 1} failed")
            return "done"

        return process

    # -- listeners (what an application attaches) ------------------------------------------------

    def _listen(self, worker: Any, host: str) -> None:
        worker.on("active", lambda job, prev=None: self._on_active(host, job))
        worker.on("progress", lambda job, progress: self._on_progress(host, job, progress))
        worker.on("completed", lambda job, result=None: self._on_completed(host, job))
        worker.on("failed", lambda job, err=None: self._on_failed(host, job, err))
        worker.on("stalled", lambda job_id, prev=None: self._on_stalled(host, job_id))
        worker.on("error", lambda *args: None)  # a refused late finish: nothing for the tracker

    def _view(self, host: str, bull_job: Any, attempt: int, **extra: Any) -> JobView:
        assert self.time is not None
        clock, api = self.clocks[host], self.clocks["api"]
        processed = self.time.of_ms(getattr(bull_job, "processedOn", None))
        extra.setdefault("processed_on_us", None if processed is None else clock.read(processed))
        return JobView(
            id=bull_job.id, attempt=attempt, attempts_made=int(bull_job.attemptsMade or 0),
            attempts_started=int(getattr(bull_job, "attemptsStarted", 0) or 0),
            max_attempts=int(bull_job.opts.get("attempts", 1)),
            timestamp_us=api.read(self.time.of_ms(bull_job.timestamp) or 0),
            delayed=self.scenario["job.delay_ms"] > 0, **extra,
        )

    def _on_active(self, host: str, bull_job: Any) -> None:
        job = self.jobs[bull_job.id]
        job.hosts.append(host)
        self._emit("active", job, host, self._view(host, bull_job, int(bull_job.attemptsMade or 0) + 1))

    def _on_progress(self, host: str, bull_job: Any, progress: Any) -> None:
        job = self.jobs[bull_job.id]
        self._emit("progress", job, host, self._view(host, bull_job, int(bull_job.attemptsMade or 0) + 1, progress=progress))

    def _finished_on(self, host: str, bull_job: Any) -> int:
        assert self.time is not None
        at = self.time.of_ms(getattr(bull_job, "finishedOn", None))
        return self.clocks[host].read(at if at is not None else self.time.now())

    def _on_completed(self, host: str, bull_job: Any) -> None:
        job = self.jobs[bull_job.id]
        job.settled.set()
        view = self._view(host, bull_job, int(bull_job.attemptsMade or 0), finished_on_us=self._finished_on(host, bull_job))
        self._emit("completed", job, host, view)

    def _on_failed(self, host: str, bull_job: Any, err: Any) -> None:
        job = self.jobs[bull_job.id]
        made = int(bull_job.attemptsMade or 0)
        from bullmq import UnrecoverableError  # a deferred failure (stalled too often) is not retried

        will_retry = made < int(bull_job.opts.get("attempts", 1)) and not isinstance(err, UnrecoverableError)
        if not will_retry:
            job.settled.set()
        view = self._view(
            host, bull_job, made, finished_on_us=self._finished_on(host, bull_job),
            failed_reason=str(err), will_retry=will_retry,
        )
        self._emit("failed", job, host, view)

    def _on_stalled(self, host: str, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or self.time is None:
            return
        made = job.events.get("completed", 0) + job.events.get("failed", 0)
        view = JobView(
            id=job.id, attempt=made + 1, attempts_made=made, attempts_started=made + 1,
            max_attempts=self.scenario["job.attempts"],
            timestamp_us=self.clocks["api"].read(self.time.of_ms(job.timestamp_ms) or 0),
            delayed=self.scenario["job.delay_ms"] > 0,
        )
        self._emit("stalled", job, host, view)

    def _emit(self, event: str, job: _Job, host: str, view: JobView) -> asyncio.Task[None] | None:
        assert self.driver is not None
        handler = self.strategy.handler(event)
        job.events[event] = job.events.get(event, 0) + 1
        if handler is None:
            return None
        actor = Actor(f"{job.id}.{event}#{job.events[event]}", job.id, event, host, self.clocks[host])
        return self.driver.spawn(actor, handler, view, self.contexts[host])

    # -- the truth BullMQ recorded -------------------------------------------------------------------

    async def _truth(self, client: Any) -> dict[str, JobTruth]:
        assert self.time is not None
        entries = await client.xrange(f"{self.prefix}:{QUEUE}:events")
        self.measured.promotion_delays.extend(promotion_delays(entries))
        truth = truth_from_events(entries, self.time.start_us, {j: job.hosts for j, job in self.jobs.items()}, self.scenario["job.attempts"])
        for job_id, jt in truth.items():
            fields = await client.hgetall(f"{self.prefix}:{QUEUE}:{job_id}")
            if not fields:
                continue  # a removed job's hash is gone; its events remain
            made = sum(1 for a in jt.attempts if a.outcome != "stalled")
            if int(fields.get("atm", 0)) != made:  # the stream and the job's own record must agree
                self.truth_mismatches.append(f"{job_id}: BullMQ's attemptsMade is {fields.get('atm')}, the events show {made}")
        return truth

    def _measure_listener_delays(self, truth: dict[str, JobTruth]) -> None:
        """How long after each state change its listener started (the k-th 'active' of a job
        against its k-th start, a final 'completed' against the completion)."""
        assert self.driver is not None
        seen: dict[tuple[str, str], int] = {}
        for actor, at in self.driver.spawned:
            key = (actor.job_id, actor.event)
            k = seen[key] = seen.get(key, 0) + 1
            jt = truth.get(actor.job_id)
            if jt is None:
                continue
            times = {
                "active": [a.start_us for a in jt.attempts],
                "completed": [jt.outcome_us] if jt.outcome == "completed" else [],
                "failed": [a.end_us for a in jt.attempts if a.outcome == "failed" and a.end_us is not None],
            }.get(actor.event, [])
            if k <= len(times):
                self.measured.listener_delays.setdefault(actor.event, []).append(at - times[k - 1])

    async def _remove_keys(self, queue: Any) -> None:
        """Delete every key under this run's prefix (and only those), then close the queue."""
        client = queue.client
        try:
            await queue.obliterate(force=True)
        except Exception:  # obliterate refuses in some states; the scan below removes what is left
            pass
        try:
            async for key in client.scan_iter(match=f"{self.prefix}:*", count=500):
                await client.delete(key)
        finally:
            await queue.close()


def promotion_delays(entries: list[tuple[str, dict[str, str]]]) -> list[int]:
    """For every delayed job that went to wait: how long after it was due (the 'delayed' entry's
    ``delay`` field) the 'waiting' entry came, in us."""
    due: dict[str, int] = {}
    out = []
    for entry_id, fields in entries:
        job, event = fields.get("jobId"), fields.get("event")
        if event == "delayed" and job and fields.get("delay"):
            due[job] = int(fields["delay"])
        elif event == "waiting" and job in due and fields.get("prev") == "delayed":
            out.append((int(str(entry_id).split("-")[0]) - due.pop(job)) * 1000)
    return out


def truth_from_events(
    entries: list[tuple[str, dict[str, str]]], start_us: int, hosts: dict[str, list[str]], max_attempts: int
) -> dict[str, JobTruth]:
    """Per job, what BullMQ's events stream says happened, in run time (us since ``start_us``).

    A retried failure shows as 'delayed' (backoff) or 'waiting' (none) while the job is active; a
    stall as 'waiting' (prev 'active') directly followed by 'stalled' (one script writes both); the
    final failure as 'failed' (past ``maxStalledCount`` BullMQ fails the job when a worker next
    takes it: an 'active' and at once a 'failed').
    """
    state: dict[str, str] = {}
    created: dict[str, int] = {}
    transitions: dict[str, list[tuple[int, str]]] = {}
    attempts: dict[str, list[Attempt]] = {}
    open_run: dict[str, tuple[int, int, int]] = {}  # job -> (number, run, start)
    made: dict[str, int] = {}
    runs: dict[str, int] = {}
    outcome: dict[str, tuple[str, int]] = {}

    def end(job: str, at: int, how: str) -> None:
        if job in open_run:
            number, run, start = open_run.pop(job)
            worker = hosts.get(job, [])[run - 1] if run <= len(hosts.get(job, [])) else "worker-?"
            attempts.setdefault(job, []).append(Attempt(job, number, run, worker, start, at, how))
            if how != "stalled":
                made[job] = made.get(job, 0) + 1

    for position, (entry_id, fields) in enumerate(entries):
        job = fields.get("jobId")
        event = fields.get("event")
        if not job or not event:
            continue
        at = int(str(entry_id).split("-")[0]) * 1000 - start_us
        moves = transitions.setdefault(job, [])
        was = state.get(job)
        following = entries[position + 1][1] if position + 1 < len(entries) else {}
        if event == "added":
            created[job] = at
        elif event == "waiting" and was == "active" and following.get("event") == "stalled" and following.get("jobId") == job:
            # The stall checker's script writes 'waiting' (prev 'active') and then 'stalled': not a failure.
            end(job, at, "stalled")
            moves.append((at, "waiting"))
            state[job] = "stalled"
        elif event == "stalled":
            state[job] = "waiting"
        elif event in ("waiting", "delayed"):
            if was == "active":  # a failed attempt that will be retried
                end(job, at, "failed")
                moves.append((at, "failed"))
            moves.append((at, event))
            state[job] = event
        elif event == "active":
            runs[job] = runs.get(job, 0) + 1
            open_run[job] = (made.get(job, 0) + 1, runs[job], at)
            moves.append((at, "active"))
            state[job] = "active"
        elif event in ("completed", "failed"):
            end(job, at, event)
            moves.append((at, event))
            state[job] = event
            outcome[job] = (event, at)
        elif event == "removed":
            moves.append((at, "removed"))
            state[job] = "removed"
            outcome[job] = ("removed", at)
    truth = {}
    for job in sorted(created, key=lambda j: created[j]):
        how, at = outcome.get(job, ("", 0))
        truth[job] = JobTruth(
            job_id=job, created_us=created[job], max_attempts=max_attempts,
            attempts=tuple(sorted(attempts.get(job, []), key=lambda a: (a.start_us, a.run))),
            transitions=tuple(transitions.get(job, [])), outcome=how, outcome_us=at,
        )
    return truth
