"""The world: a BullMQ-like queue in SimPy, whose events start a strategy's handlers.

What it models (``shared/notes/queue-semantics.md`` has the sources):

* a producer adds jobs over time: it awaits the strategy's ``on_created`` (the row insert), then
  adds the job, waiting or delayed (``opts.delay``);
* workers (hosts with their own clocks) each run ``concurrency`` jobs at once, FIFO;
* an attempt takes a drawn duration and fails with a probability; a failed attempt is retried
  while ``attemptsMade < attempts``, after ``round(2^(n-1) * delay)`` (exponential), ``delay``
  (fixed) or at once (none), with jitter uniform in ``[max*(1-jitter), max)``;
* a stall: the worker freezes past its lock; the checker notices within one stalled interval,
  moves the job back to wait ('stalled') and another run of the *same* attempt starts, while the
  frozen run still holds its slot; its late finish is refused (lost lock) and emits nothing;
  past ``maxStalledCount`` stalls the job fails;
* the producer may remove a waiting or delayed job ('removed'); an active job cannot be removed,
  unless ``cancel.active = "abort"``: then the worker aborts it (its processor sees the abort
  signal and throws an unrecoverable error): the attempt ends at once, 'failed' with
  :data:`ABORT_REASON`, no retry;
* 'active', 'progress', 'completed', 'failed', 'removed', 'stalled' start handlers *without*
  awaiting them (Node's EventEmitter), after the state change;
* every timestamp a handler gets is read from its host's clock at the moment it was taken.

The world records the ground truth (:class:`~sim.record.history.JobTruth`). Every random decision goes
through :class:`Draws`, keyed by job and attempt, so that two strategies run with one seed see
the same world, and a search (Hypothesis) can substitute its own choices.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import simpy

from sim.engine import interpreter
from sim.engine.distributions import Dist, SignedRange
from sim.engine.driver import Actor, Driver
from sim.engine.limits import DEFAULT_LIMITS, Limits
from sim.engine.network import NETWORK_KEYS, NetworkDriver, latency_dist
from sim.engine.ordered import ActorSpec, Case, latencies_of
from sim.engine.scenario import Scenario
from sim.record.clocks import Clock
from sim.record.history import Attempt, JobTruth, RunRecord
from tracker.backend import TrackerBackend
from tracker.ops import DbOp
from tracker.strategies import EVENTS, HandlerContext, JobView, LiveJob, Strategy


def handler_context(scenario: Scenario, host: str) -> HandlerContext:
    """The integration's fixed settings a handler on ``host`` gets (the ``[handlers]`` table)."""
    s = scenario
    return HandlerContext(
        host=host,
        active_delay_ms=s["handlers.active_delay_ms"],
        completed_delay_ms=s["handlers.completed_delay_ms"],
        failed_delay_ms=s["handlers.failed_delay_ms"],
        progress_delay_ms=s["handlers.progress_delay_ms"],
        removed_delay_ms=s["handlers.removed_delay_ms"],
    )


def us(ms: float) -> int:
    return round(ms * 1000)


class Draws:
    """Every random choice of a run, named. Subclass to choose otherwise (e.g. Hypothesis).

    ``job`` streams are per job (arrivals and attempts of job 3 do not depend on job 2's); each
    actor (one handler invocation) has its own network stream, one latency per direction per
    operation, so one strategy's extra statements do not shift another actor's latencies, and
    every strategy run with one seed sees the same world.
    """

    def __init__(self, seed: int | str) -> None:
        self.seed = seed
        self._jobs: dict[int, random.Random] = {}
        self._actors: dict[str, random.Random] = {}
        self.clocks = random.Random(f"racetrack:{seed}:clocks")
        self.arrivals = random.Random(f"racetrack:{seed}:arrivals")

    def _job(self, job: int) -> random.Random:
        rng = self._jobs.get(job)
        if rng is None:
            rng = self._jobs[job] = random.Random(f"racetrack:{self.seed}:job:{job}")
        return rng

    def interarrival_ms(self, dist: Dist) -> float:
        return dist.sample(self.arrivals)

    def job_ms(self, job: int, what: str, dist: Dist) -> float:
        """A duration for a job: 'duration' (per attempt run), 'cancel_after'."""
        return dist.sample(self._job(job))

    def job_chance(self, job: int, what: str, p: float) -> bool:
        """'fail', 'stall', 'cancel'."""
        draw = self._job(job).random()  # drawn even when p is 0 or 1: streams stay aligned
        return draw < p

    def job_uniform(self, job: int, what: str, lo: float, hi: float) -> float:
        """'jitter', 'stall_detect'."""
        return self._job(job).uniform(lo, hi)

    def clock(self, host: str, max_offset_ms: float, max_drift_ppm: float) -> tuple[float, float]:
        """(offset in ms, drift in ppm) for a host."""
        return (
            self.clocks.uniform(-max_offset_ms, max_offset_ms),
            self.clocks.uniform(-max_drift_ppm, max_drift_ppm),
        )

    def host_clock(self, host: str, offset: SignedRange, drift: SignedRange) -> tuple[float, float]:
        """(offset in ms, drift in ppm) for a host whose scenario names its ranges; the same
        stream, one draw each, as :meth:`clock`."""
        return offset.sample(self.clocks), drift.sample(self.clocks)

    def clock_step(self, host: str, at: Dist, by: SignedRange) -> tuple[float, float]:
        """(when in ms of true time, how far in ms) a host's clock is stepped: its own stream, so
        a step leaves every other draw as it was."""
        rng = random.Random(f"racetrack:{self.seed}:clock-step:{host}")
        return at.sample(rng), by.sample(rng)

    def pause_ms(self, actor: str, p: float, pause: Dist) -> float:
        """A heavy-tail pause added to one direction of an actor's operation (0: none); a stream
        of its own, so the latencies themselves are drawn as without pauses."""
        rng = self._actors.get(f"pause:{actor}")
        if rng is None:
            rng = self._actors[f"pause:{actor}"] = random.Random(f"racetrack:{self.seed}:pause:{actor}")
        hit = rng.random() < p
        length = pause.sample(rng)  # drawn either way: the stream stays aligned
        return length if hit else 0.0

    def stream_delivery(self, job: int, event: str, miss: float, delay: Dist | None) -> tuple[bool, float]:
        """(missed, delay in ms) of one event through QueueEvents; a stream per job of its own."""
        rng = self._jobs.get(-1 - job)  # negative keys: the job's QueueEvents stream, apart from its world draws
        if rng is None:
            rng = self._jobs[-1 - job] = random.Random(f"racetrack:{self.seed}:queue-events:{job}")
        missed = rng.random() < miss
        return missed, delay.sample(rng) if delay is not None else 0.0

    def worker_crash(self, job: int, run: int, p: float, after: Dist | None, duration_us: int) -> int | None:
        """When (us after run ``run`` of ``job`` starts) its worker process dies, or None: a stream
        per job of its own, so a crash leaves every other draw of the job as it was."""
        rng = self._jobs.get(-1_000_000 - job)  # apart from the job's world and QueueEvents streams
        if rng is None:
            rng = self._jobs[-1_000_000 - job] = random.Random(f"racetrack:{self.seed}:worker-crash:{job}")
        hit = rng.random() < p
        at = us(after.sample(rng)) if after is not None else round(rng.random() * duration_us)
        return at if hit else None

    def job_class(self, job: int, shares: list[tuple[str, float]]) -> str:
        """The class of a job (``job.classes``): its own stream, so a job's other draws stay."""
        draw = random.Random(f"racetrack:{self.seed}:job-class:{job}").random()
        for name, share in shares:
            if draw < share:
                return name
            draw -= share
        return shares[-1][0]

    def one_way_us_of(self, rtt: Dist) -> Callable[[str], int]:
        """The plain driver's latency function: ``actor -> us(one_way_ms(actor, rtt))``.

        A subclass that chooses latencies itself (overrides :meth:`one_way_ms`, as the Hypothesis
        search does) is asked through it; this class's own draw is made in one call per direction
        instead of three (a lambda, ``one_way_ms``, ``us``), drawing the same value."""
        if type(self).one_way_ms is not Draws.one_way_ms:
            return lambda actor: us(self.one_way_ms(actor, rtt))
        streams, seed, sample = self._actors, self.seed, rtt.sample
        if rtt.kind == "lognormal":  # Dist.sample's own arithmetic, without its call and tests
            median, sigma, exp = rtt.a, rtt.sigma, math.exp

            def lognormal_us(actor: str) -> int:
                rng = streams.get(actor)
                if rng is None:
                    rng = streams[actor] = random.Random(f"racetrack:{seed}:net:{actor}")
                return round(median * exp(sigma * rng.gauss(0.0, 1.0)) / 2 * 1000)

            return lognormal_us

        def one_way_us(actor: str) -> int:
            rng = streams.get(actor)
            if rng is None:
                rng = streams[actor] = random.Random(f"racetrack:{seed}:net:{actor}")
            return round(sample(rng) / 2 * 1000)

        return one_way_us

    def one_way_ms(self, actor: str, rtt: Dist) -> float:
        rng = self._actors.get(actor)
        if rng is None:
            rng = self._actors[actor] = random.Random(f"racetrack:{self.seed}:net:{actor}")
        return rtt.sample(rng) / 2


#: Events a worker emits with its own Job instance of the attempt (handlers may read it live).
INSTANCE_EVENTS = ("active", "progress", "completed", "failed")


def _finished_changes(job: _Job, fails: bool, number: int, finished_on: int) -> tuple[tuple[str, Any], ...]:
    """What BullMQ's ``moveToCompleted``/``moveToFailed`` set on the instance as the attempt ends:
    ``attemptsMade + 1``; ``failedReason``; ``finishedOn`` only when the job is finished."""
    changes: list[tuple[str, Any]] = [("attempts_made", job.attempts_made)]
    if fails:
        changes.append(("failed_reason", f"attempt {number} failed"))
    if not fails or job.attempts_made >= job.max_attempts:
        changes.append(("finished_on_us", finished_on))
    return tuple(changes)


def clock_group(host: str) -> str:
    """The scenario's ``[clocks.<group>]`` a host takes its clock from."""
    return host if host in ("db", "api") else "workers"


def host_clock(scenario: Scenario, draws: Draws, host: str) -> Clock:
    """A host's clock: ``[clocks.<group>]`` ranges where the scenario sets them, else the
    symmetric ``clocks.max_*`` draw (the draw every scenario made before groups existed)."""
    s, group = scenario, clock_group(host)
    offset, drift = s[f"clocks.{group}.offset"], s[f"clocks.{group}.drift"]
    if offset is None and drift is None:
        offset_ms, drift_ppm = draws.clock(host, s["clocks.max_offset_ms"], s["clocks.max_drift_ppm"])
    else:
        max_offset, max_drift = s["clocks.max_offset_ms"], s["clocks.max_drift_ppm"]
        offset_ms, drift_ppm = draws.host_clock(
            host, offset or SignedRange("ms", -max_offset, max_offset), drift or SignedRange("ppm", -max_drift, max_drift)
        )
    clock = Clock(host, us(offset_ms), drift_ppm, 1 if host == "db" else 1000)
    step = s[f"clocks.{group}.step"]
    if step is not None:
        at_ms, by_ms = draws.clock_step(host, s.dist(f"clocks.{group}.step_at"), step)
        clock = replace(clock, step_at_us=us(at_ms), step_us=us(by_ms))
    return clock


def network_driver(
    env: simpy.Environment, s: Scenario, backend: TrackerBackend, db_clock: Clock, draws: Draws, limits: Limits
) -> NetworkDriver:
    """The driver of a scenario that sets ``network`` keys beyond ``db_rtt`` (``sim.engine.network``)."""
    http = s["network.client"] == "http"
    http_rtt = s["network.http_rtt"] or s.dist("network.db_rtt")
    p, pause = s["network.pause_probability"], s["network.pause"]

    def one_way(actor: Actor, op: DbOp) -> int:
        ms = draws.one_way_ms(actor.name, latency_dist(s.values, clock_group(actor.host), op))
        if http:
            ms += draws.one_way_ms(f"{actor.name}@http", http_rtt)
        if pause is not None:
            ms += draws.pause_ms(actor.name, p, pause)
        return us(ms)

    return NetworkDriver(env, backend, db_clock, one_way, limits.ops_per_handler, s["network.pool_size"], http)


@dataclass(frozen=True)
class Spawned:
    """A handler the world started: who, with what view and settings, when (for replays)."""

    actor: Actor
    view: JobView
    ctx: HandlerContext
    at_us: int
    #: The job's run (activation) when it was started: whose Job instance a live view reads.
    run: int = 0


@dataclass
class _Job:
    index: int
    id: str
    max_attempts: int
    delayed: bool
    timestamp_us: int = 0
    created_us: int = 0
    state: str = "new"
    attempts_made: int = 0
    attempts_started: int = 0
    runs: int = 0
    current_run: int = 0
    stalled_count: int = 0
    processed_on_us: int | None = None  # BullMQ's processedOn: the last activation, kept on the job
    events: dict[str, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    transitions: list[tuple[int, str]] = field(default_factory=list)
    outcome: str = ""
    outcome_us: int = 0
    #: With ``cancel.active = "abort"``: triggered when the producer cancels the running attempt.
    abort: simpy.Event | None = None


#: The failed reason of an attempt aborted by a cancel (what the processor throws on the signal).
ABORT_REASON = "job cancelled while active (aborted)"


class World:
    """One run: a scenario, a strategy, a backend and a seed."""

    @property
    def now(self) -> int:
        """True simulated time in microseconds (every delay we schedule is whole microseconds)."""
        return int(self.env.now)

    def __init__(
        self,
        scenario: Scenario,
        strategy: Strategy,
        backend: TrackerBackend,
        seed: int | str,
        draws: Draws | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.scenario = scenario
        self.limits = limits
        self.strategy = strategy
        self.backend = backend
        self.draws = draws or Draws(seed)
        self.env = simpy.Environment()
        s = scenario
        hosts = ["api", "db"] + [f"worker-{i + 1}" for i in range(s["workers.count"])]
        self.clocks: dict[str, Clock] = {}
        for host in hosts:
            self.clocks[host] = host_clock(s, self.draws, host)
        rtt = s.dist("network.db_rtt")
        self.driver = Driver(
            self.env, backend, self.clocks["db"], self.draws.one_way_us_of(rtt), limits.ops_per_handler
        ) if not any(s[key] is not None for key in NETWORK_KEYS) else network_driver(self.env, s, backend, self.clocks["db"], self.draws, limits)
        self.queue: simpy.Store = simpy.Store(self.env)
        self.jobs: list[_Job] = []
        self.spawned: list[Spawned] = []
        #: The strategy's handler for each event, looked up once (not by ``getattr`` per event).
        self._handlers = {event: strategy.handler(event) for event in EVENTS}
        #: Each job's class (``job.classes``), and the scenario each class sees.
        self._job_classes: dict[int, str] = {}
        #: QueueEvents: when the stream delivered its last event, and the events it never delivered.
        self._stream_at = 0
        self.missed_events: list[str] = []
        #: Each activation's changes after its events, by (job, run): what a LiveJob reads.
        self._instances: dict[tuple[str, int], list[tuple[int, tuple[tuple[str, Any], ...]]]] = {}
        self._class_scenarios: dict[str, Scenario] = {}
        #: ``workers.crash_probability``: the slot running each job's attempt (to stop it), what
        #: that attempt is (run, number, start, frozen), and each process death (when, which worker).
        self._running: dict[str, tuple[simpy.Process, str]] = {}
        self._attempt_of: dict[str, tuple[int, int, int, bool]] = {}
        self.crashed: list[tuple[int, str]] = []
        self._contexts = {host: handler_context(s, host) for host in hosts}

    # -- running -------------------------------------------------------------------------------

    def run(self) -> RunRecord:
        """Simulate until every job is settled and every handler has finished."""
        self.backend.reset()
        self.env.process(self._producer())
        for w in range(self.scenario["workers.count"]):
            for _ in range(self.scenario["workers.concurrency"]):
                self.env.process(self._slot(f"worker-{w + 1}"))
        self._run_within_limits()
        return self.record()

    def record(self) -> RunRecord:
        """What the run recorded so far (all of it, once :meth:`run` returned)."""
        for wait in self.driver.stuck():
            self.driver.crashes.append(f"deadlock: {wait} and nothing can release it")
        end = int(self.now)
        slack = us(self.scenario["invariants.timestamp_slack_ms"])
        tolerance = slack + max(c.error_bound_us(end) for c in self.clocks.values())
        truth = {
            j.id: JobTruth(
                job_id=j.id,
                created_us=j.created_us,
                max_attempts=j.max_attempts,
                attempts=tuple(sorted(j.attempts, key=lambda a: (a.start_us, a.run))),
                transitions=tuple(j.transitions),
                outcome=j.outcome,
                outcome_us=j.outcome_us,
            )
            for j in self.jobs
        }
        return RunRecord(
            steps=tuple(self.driver.steps),
            rows=self.backend.rows(),
            truth=truth,
            tolerance_us=tolerance,
            end_us=end,
            lifecycle=self.scenario.lifecycle,
        )

    def _run_within_limits(self) -> None:
        """``env.run()``, stopped at the simulated-time limit or when a handler ran away."""
        limit_us = self.limits.sim_seconds * 1_000_000
        env, driver = self.env, self.driver
        while True:
            at = env.peek()
            if at == math.inf:
                return
            if at > limit_us:
                stuck = ", ".join(f"{name} ({interpreter.suspended_at(gen)})" for name, gen in sorted(driver.live.items()))
                driver.failure = driver.failure or (
                    f"the run went past {self.limits.sim_seconds:g} simulated seconds (--max-sim-seconds)"
                    + (f"; still running: {stuck}" if stuck else "")
                )
                return
            if driver.failure is not None:
                return
            env.step()

    # -- the producer --------------------------------------------------------------------------

    def _producer(self) -> Generator[simpy.Event, Any, None]:
        s = self.scenario
        for index in range(s["job.count"]):
            if index:
                yield self.env.timeout(us(self.draws.interarrival_ms(s.dist("job.interarrival"))))
            self.env.process(self._add(index))

    def _add(self, index: int) -> Generator[simpy.Event, Any, None]:
        s = self._job_scenario(index)
        delay_ms = s["job.delay_ms"]
        job = _Job(index, f"job-{index + 1}", s["job.attempts"], delayed=delay_ms > 0)
        self.jobs.append(job)
        job.timestamp_us = self.clocks["api"].read(self.now)
        yield self._emit("created", job, "api", self._view(job, 0))  # the insert is awaited
        job.created_us = self.now
        if job.delayed:
            self._enter(job, "delayed")
            self.env.process(self._promote(job, us(delay_ms)))
        else:
            self._enter(job, "waiting")
            self.queue.put(job)
        cancel = self.draws.job_chance(index, "cancel", s["cancel.probability"])
        after = self.draws.job_ms(index, "cancel_after", s.dist("cancel.after"))
        if cancel:
            self.env.process(self._remove(job, us(after)))

    def _promote(self, job: _Job, delay: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(delay)
        if job.state == "delayed":
            self._enter(job, "waiting")
            self.queue.put(job)

    def _remove(self, job: _Job, after: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(after)
        if job.state == "active" and job.abort is not None and not job.abort.triggered:
            job.abort.succeed()  # cancel.active = "abort": the worker aborts the attempt
            return
        if job.state not in ("waiting", "delayed"):
            return  # BullMQ refuses to remove a locked (active) or finished job
        self._enter(job, "removed")
        self._settle(job, "removed")
        view = self._view(job, job.attempts_made, removed_on_us=self.clocks["api"].read(self.now))
        self._emit("removed", job, "api", view)

    # -- workers -------------------------------------------------------------------------------

    def _slot(self, worker: str) -> Generator[simpy.Event, Any, None]:
        while True:
            job = yield self.queue.get()
            if job.state == "waiting":
                try:
                    yield from self._attempt(job, worker)
                except simpy.Interrupt:
                    # The process died mid-attempt; this slot goes on as the restarted process's.
                    self._died_in_attempt(job, worker)
                finally:
                    self._running.pop(job.id, None)

    def _crash(self, worker: str, at: int) -> Generator[simpy.Event, Any, None]:
        """``worker``'s process dies at ``at``: every attempt it runs and every handler on its host
        stop where they are (their sessions end: PostgreSQL rolls back what a gone client left
        open). A process manager restarts it at once: its slots take jobs again, its jobs' locks
        expire as they would, and the stall checker re-queues them."""
        yield self.env.timeout(at - self.now)
        self.crashed.append((self.now, worker))
        for slot, on in list(self._running.values()):
            if on == worker:
                slot.interrupt("worker process died")
        self.driver.stop_host(worker, "stopped: its worker process died")

    def _died_in_attempt(self, job: _Job, worker: str) -> None:
        """What a dead process leaves of its attempt: a job still active, whose lock nobody
        renews; the stall checker notices it (as for a frozen worker) unless one already will."""
        run, number, start, frozen = self._attempt_of[job.id]
        job.abort = None
        job.attempts.append(Attempt(job.id, number, run, worker, start, self.now, "stalled"))
        if frozen or job.state != "active" or job.current_run != run:
            return
        lag = self.draws.job_uniform(job.index, "stall_detect", 0.0, self.scenario["workers.stalled_interval_ms"])
        detect = self.now + us(self.scenario["workers.lock_duration_ms"]) + us(lag)
        self.env.process(self._stall_checker(job, run, number, worker, detect))

    def _attempt(self, job: _Job, worker: str) -> Generator[simpy.Event, Any, None]:
        s, draws, clock = self._job_scenario(job.index), self.draws, self.clocks[worker]
        job.attempts_started += 1
        job.runs += 1
        run = job.current_run = job.runs
        number = job.attempts_made + 1
        start = self.now
        processed_on = job.processed_on_us = clock.read(start)
        changes = self._instances[(job.id, run)] = []  # this activation's Job instance, as it changes
        self._enter(job, "active")
        self._emit("active", job, worker, self._view(job, number, processed_on_us=processed_on))
        duration = us(draws.job_ms(job.index, "duration", s.dist("job.duration")))
        fails = draws.job_chance(job.index, "fail", s["job.fail_probability"])
        stalls = draws.job_chance(job.index, "stall", s["stalls.probability"])
        crash_p = self.scenario["workers.crash_probability"]
        if crash_p is not None:
            slot = self.env.active_process
            assert slot is not None
            self._running[job.id] = (slot, worker)
            self._attempt_of[job.id] = (run, number, start, stalls)
            after = draws.worker_crash(job.index, run, crash_p, self.scenario["workers.crash_after"], duration)
            if after is not None:
                self.env.process(self._crash(worker, start + after))
        if stalls:
            lag = draws.job_uniform(job.index, "stall_detect", 0.0, s["workers.stalled_interval_ms"])
            detect = start + us(s["workers.lock_duration_ms"]) + us(lag)
            self.env.process(self._stall_checker(job, run, number, worker, detect))
            # The frozen run holds its slot until after it was re-queued; its finish emits nothing.
            yield self.env.timeout(detect - start + duration)
            job.attempts.append(Attempt(job.id, number, run, worker, start, self.now, "stalled"))
            return
        if self.scenario["cancel.active"] == "abort":
            job.abort = self.env.event()
        updates = s["job.progress_updates"]
        for k in range(1, updates + 1):
            yield self._work(job, duration // (updates + 1))
            if job.abort is not None and job.abort.triggered:
                break
            progress = {"percent": round(100 * k / (updates + 1))}
            changes.append((self.now, (("progress", progress),)))
            self._emit("progress", job, worker, self._view(job, number, processed_on_us=processed_on, progress=progress))
        else:
            yield self._work(job, duration - updates * (duration // (updates + 1)))
        aborted = job.abort is not None and job.abort.triggered
        job.abort = None
        if aborted:
            self._aborted(job, worker, number, run, start)
            return
        end = self.now
        finished_on = clock.read(end)
        job.attempts_made += 1
        changes.append((end, _finished_changes(job, fails, number, finished_on)))
        if fails:
            job.attempts.append(Attempt(job.id, number, run, worker, start, end, "failed"))
            self._enter(job, "failed")
            will_retry = job.attempts_made < job.max_attempts
            if will_retry:
                self._retry(job)
            else:
                self._settle(job, "failed")
            view = self._view(
                job, number, processed_on_us=processed_on, finished_on_us=finished_on,
                failed_reason=f"attempt {number} failed", will_retry=will_retry,
            )
            self._emit("failed", job, worker, view)
        else:
            job.attempts.append(Attempt(job.id, number, run, worker, start, end, "completed"))
            self._enter(job, "completed")
            self._settle(job, "completed")
            self._emit("completed", job, worker, self._view(job, number, processed_on_us=processed_on, finished_on_us=finished_on))

    def _work(self, job: _Job, delay: int) -> simpy.Event:
        """The processor working for ``delay``; cut short when the attempt is aborted."""
        if job.abort is None:
            return self.env.timeout(delay)
        return self.env.any_of([self.env.timeout(delay), job.abort])

    def _aborted(self, job: _Job, worker: str, number: int, run: int, start: int) -> None:
        """The processor threw on the abort signal: the attempt fails now, for good."""
        end = self.now
        finished_on = self.clocks[worker].read(end)
        job.attempts_made += 1
        aborted = (("attempts_made", job.attempts_made), ("failed_reason", ABORT_REASON), ("finished_on_us", finished_on))
        self._instances[(job.id, run)].append((end, aborted))
        job.attempts.append(Attempt(job.id, number, run, worker, start, end, "failed"))
        self._enter(job, "failed")
        self._settle(job, "failed")
        view = self._view(
            job, number, processed_on_us=job.processed_on_us, finished_on_us=finished_on,
            failed_reason=ABORT_REASON, will_retry=False,
        )
        self._emit("failed", job, worker, view)

    def _retry(self, job: _Job) -> None:
        s = self.scenario
        kind, base = s["backoff.type"], s["backoff.delay_ms"]
        if kind == "none":
            self._enter(job, "waiting")
            self.queue.put(job)
            return
        wait = base if kind == "fixed" else float(round(2 ** (job.attempts_made - 1) * base))
        jitter = s["backoff.jitter"]
        if jitter > 0:
            wait = self.draws.job_uniform(job.index, "jitter", wait * (1 - jitter), wait)
        self._enter(job, "delayed")
        self.env.process(self._promote(job, us(wait)))

    def _stall_checker(self, job: _Job, run: int, number: int, worker: str, detect: int) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(detect - self.now)
        if job.state != "active" or job.current_run != run:
            return
        job.stalled_count += 1
        checker = worker  # the checker's clock: any worker's would do; this one is at hand
        if job.stalled_count > self.scenario["workers.max_stalled_count"]:
            job.attempts_made += 1
            self._enter(job, "failed")
            self._settle(job, "failed")
            view = self._view(
                job, number, finished_on_us=self.clocks[checker].read(self.now),
                failed_reason="job stalled more than allowable limit", will_retry=False,
            )
            self._emit("failed", job, checker, view)
            return
        self._enter(job, "waiting")
        self.queue.put(job)
        self._emit("stalled", job, checker, self._view(job, number))

    # -- QueueEvents ---------------------------------------------------------------------------

    def _through_stream(self, event: str, job: _Job, view: JobView) -> simpy.Event:
        """``event`` through the queue's event stream: delivered after a drawn delay, in stream
        order (never before an earlier event), or missed; the emitter does not wait for it."""
        s = self.scenario
        missed, delay_ms = self.draws.stream_delivery(job.index, event, s["listeners.miss_probability"] or 0.0, s["listeners.delay"])
        done = self.env.event()
        done.succeed()
        if missed:
            self.missed_events.append(f"{job.id}.{event}#{job.events[event]}")
            return done
        at = self._stream_at = max(self._stream_at, self.now + us(delay_ms))
        self.env.process(_queue_events_delivery(self, event, job, view, at))
        return done

    # -- bookkeeping ---------------------------------------------------------------------------

    def _job_scenario(self, index: int) -> Scenario:
        """The scenario as job ``index`` sees it: with its class's own job keys (``job.classes``),
        drawn once per job from a stream of its own; the scenario itself when it has no classes."""
        classes = self.scenario["job.classes"]
        if classes is None:
            return self.scenario
        chosen = self._job_classes.get(index)
        if chosen is None:
            name = self.draws.job_class(index, [(n, share) for n, share, _ in classes.classes])
            chosen = self._job_classes[index] = name
        if chosen not in self._class_scenarios:
            values = next(v for n, _, v in classes.classes if n == chosen)
            self._class_scenarios[chosen] = self.scenario.with_values(values)
        return self._class_scenarios[chosen]

    def _enter(self, job: _Job, state: str) -> None:
        job.state = state
        job.transitions.append((self.now, state))

    def _settle(self, job: _Job, outcome: str) -> None:
        job.outcome, job.outcome_us = outcome, self.now

    def _view(self, job: _Job, attempt: int, **extra: Any) -> JobView:
        extra.setdefault("processed_on_us", job.processed_on_us)
        return JobView(
            id=job.id,
            attempt=attempt,
            attempts_made=job.attempts_made,
            attempts_started=job.attempts_started,
            max_attempts=job.max_attempts,
            timestamp_us=job.timestamp_us,
            delayed=job.delayed,
            **extra,
        )

    def _emit(self, event: str, job: _Job, host: str, view: JobView) -> simpy.Event:
        """Start the strategy's handler for ``event`` now; returns its process (or a done event)."""
        handler = self._handlers[event]
        if handler is None:
            done = self.env.event()
            done.succeed()
            return done
        job.events[event] = job.events.get(event, 0) + 1
        if event != "created" and self.scenario["listeners.source"] == "queue-events":
            return self._through_stream(event, job, view)
        actor = Actor(f"{job.id}.{event}#{job.events[event]}", job.id, event, host, self.clocks[host])
        self.spawned.append(Spawned(actor, view, self._contexts[host], int(self.env.now), job.current_run))
        changes = self._instances.get((job.id, job.current_run)) if event in INSTANCE_EVENTS else None
        if changes is not None and self.strategy.job_view == "live":
            view = LiveJob(view, changes, int(self.env.now), lambda: int(self.env.now))
        return self.driver.spawn(actor, handler, view, self._contexts[host])


def _queue_events_delivery(world: World, event: str, job: _Job, view: JobView, at: int) -> Generator[simpy.Event, Any, None]:
    """A QueueEvents listener gets ``event`` at ``at``: its handler starts then, on the listening
    process's host (``api``), with the event's payload as it was (a snapshot, not a Job)."""
    yield world.env.timeout(at - world.now)
    handler = world.strategy.handler(event)
    assert handler is not None
    host = "api"
    actor = Actor(f"{job.id}.{event}#{job.events[event]}", job.id, event, host, world.clocks[host])
    world.spawned.append(Spawned(actor, view, world._contexts[host], int(world.env.now), job.current_run))
    world.driver.spawn(actor, handler, view, world._contexts[host])


def case_from_world(world: World, record: RunRecord, scenario: Scenario, seed: int) -> Case:
    """The forced-order :class:`~sim.engine.ordered.Case` of a finished run (its ``spawned`` actors)."""
    created: dict[str, str] = {}
    for sp in world.spawned:
        if sp.actor.event == "created":
            created.setdefault(sp.actor.job_id, sp.actor.name)
    actors = []
    for sp in world.spawned:
        a = sp.actor
        after = () if a.event == "created" or a.job_id not in created else (created[a.job_id],)
        actors.append(ActorSpec(a.name, a.job_id, a.event, a.host, sp.at_us, sp.view, sp.ctx, after, latencies_of(record, a.name)))
        if world.strategy.job_view == "live" and a.event in INSTANCE_EVENTS:
            later = tuple(c for c in world._instances.get((a.job_id, sp.run), ()) if c[0] > sp.at_us)
            actors[-1] = replace(actors[-1], job_changes=later)
    half = us(scenario.dist("network.db_rtt").typical / 2)
    spawned = {a.name for a in actors}
    branches = sorted({st.actor for st in record.steps if st.kind == "db"} - spawned)
    return Case(
        scenario=scenario.name,
        params=scenario.to_toml_table(),
        seed=seed,
        actors=tuple(actors),
        clocks=dict(world.clocks),
        truth=dict(record.truth),
        slack_us=us(scenario["invariants.timestamp_slack_ms"]),
        default_latency=(half, half),
        end_floor_us=record.end_us,
        lifecycle=scenario.lifecycle,
        branch_latencies={b: latencies_of(record, b) for b in branches},
        deaths=tuple(sorted(world.crashed)),
        queued={n: tuple(q) for n, q in sorted(world.driver.queued.items()) if any(q)},
    )
