"""Live runs, one after another: open the servers once, run seeds ``seed, seed+1, ...`` until
``runs`` are done or ``time_s`` has passed, judge each run with the simulator's invariants, and
keep every finished run when interrupted.

A live result is a :class:`~sim.runs.runner.RunResult` (backend ``postgres``): its ``row()`` has
the columns of a sweep's result row; :func:`live_row` adds ``mode`` and ``seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim.engine.scenario import Scenario
from sim.judge.invariants import Judgement, judge
from sim.live.postgres import AsyncTracker, LiveDatabaseLost
from sim.live.redis_server import RedisUnavailable, check_redis, choose_redis
from sim.live.world import LiveRunError, LiveWorld, Measured
from sim.runs.runner import RunResult
from tracker.errors import UserError, redact
from tracker.pg_server import ServerUnavailable, choose_server, one_line
from tracker.strategies import Strategy


class LiveUnavailable(UserError):
    """Redis or PostgreSQL cannot be used (or the live extra is not installed): one line, exit 2."""


def require_live_packages() -> None:
    """Import ``bullmq`` or say in one line how to install it."""
    try:
        import bullmq  # noqa: F401
    except ImportError:
        raise LiveUnavailable("live mode needs the bullmq package: pip install 'racetrack[live]'") from None


@dataclass
class LiveRun:
    """One finished live run: the judged result, its wall seconds, what was measured."""

    result: RunResult
    seconds: float
    measured: Measured


@dataclass
class LiveBatch:
    """Every run that finished (an interrupted batch keeps these), and why it stopped early."""

    runs: list[LiveRun] = field(default_factory=list)
    interrupted: bool = False
    error: str = ""


def live_row(run: LiveRun) -> dict[str, Any]:
    """The sweep result row of a live run, with ``mode`` and ``seconds``."""
    return {**run.result.row(), "mode": "live", "seconds": round(run.seconds, 3)}


def run_deadline_s(scenario: Scenario) -> float:
    """How long one run may take before it is declared stuck: generous against the workload."""
    s = scenario
    per_job = (
        s.dist("job.duration").typical * 20 + s["handlers.active_delay_ms"] + s["handlers.completed_delay_ms"]
        + s["handlers.failed_delay_ms"] + s["job.delay_ms"] + s["cancel.after"].typical
        + s["workers.lock_duration_ms"] + 3 * s["workers.stalled_interval_ms"]
    )
    backoff = s["backoff.delay_ms"] * (2 ** max(0, s["job.attempts"] - 1)) if s["backoff.type"] != "none" else 0
    arrivals = s.dist("job.interarrival").typical * 10 * s["job.count"]
    return 60.0 + (arrivals + per_job * s["job.attempts"] + backoff + 2000 * s["job.attempts"]) / 1000


#: The scenario keys a live run reproduces on the real queue (docs/live.md says how). A scenario
#: that sets any other key (a world feature the live driver does not build yet) is refused, so
#: that a live verdict never silently answers for a different world than the simulated one.
LIVE_KEYS = frozenset({
    "description", "job.count", "job.interarrival", "job.duration", "job.fail_probability", "job.attempts",
    "job.delay_ms", "job.progress_updates", "backoff.type", "backoff.delay_ms", "backoff.jitter",
    "workers.count", "workers.concurrency", "workers.lock_duration_ms", "workers.stalled_interval_ms",
    "workers.max_stalled_count", "stalls.probability", "cancel.probability", "cancel.after",
    "handlers.active_delay_ms", "handlers.completed_delay_ms", "handlers.failed_delay_ms",
    "handlers.progress_delay_ms", "handlers.removed_delay_ms", "network.db_rtt", "clocks.max_offset_ms",
    "clocks.max_drift_ppm", "invariants.timestamp_slack_ms",
})


def require_live_world(scenario: Scenario) -> None:
    """Refuse, in one line, a scenario that sets keys live mode does not reproduce."""
    extra = sorted(k for k in scenario.to_toml_table() if k not in LIVE_KEYS)
    if extra:
        raise LiveUnavailable(
            f"{scenario.source}: live mode does not reproduce {', '.join(extra)} yet (docs/live.md lists what it "
            "reproduces); run this scenario simulated, or live without those keys"
        )


async def run_batch(
    scenario: Scenario, strategy: Strategy, *, runs: int, seed: int, redis_url: str | None = None,
    dsn: str | None = None, time_s: float | None = None, batch: LiveBatch | None = None,
    on_run: Callable[[LiveRun], None] | None = None,
) -> LiveBatch:
    """Run up to ``runs`` live runs (fewer if ``time_s`` runs out); results go into ``batch`` as
    they finish, so a caller that is interrupted still has them."""
    require_live_world(scenario)
    require_live_packages()
    from redis.exceptions import RedisError  # installed with bullmq

    batch = batch if batch is not None else LiveBatch()
    try:
        redis = choose_redis(redis_url)
        await check_redis(redis.url)
        server = choose_server(dsn)
    except (RedisUnavailable, ServerUnavailable) as exc:
        raise LiveUnavailable(str(exc)) from None
    db = AsyncTracker(server.dsn)
    try:
        await db.open()
    except ServerUnavailable as exc:
        raise LiveUnavailable(str(exc)) from None
    began = time.monotonic()  # wall-clock ok: --time bounds real work
    try:
        await db.warm(min(16, scenario["workers.count"] * scenario["workers.concurrency"] * 3 + 2))
        for i in range(runs):
            if time_s is not None and i and time.monotonic() - began >= time_s:  # wall-clock ok: --time
                break
            await db.reset()
            world = LiveWorld(scenario, strategy, seed + i, redis.url, db)
            started = time.monotonic()  # wall-clock ok: a live run's seconds
            try:
                record = await world.run(run_deadline_s(scenario))
            except (LiveRunError, LiveDatabaseLost) as exc:
                batch.error = redact(str(exc))
                break
            except (OSError, RedisError) as exc:  # Redis went away mid-run: the run cannot be judged
                batch.error = redact(f"the live run lost a server: {one_line(str(exc)) or type(exc).__name__}")
                break
            assert world.driver is not None
            if world.truth_mismatches:
                batch.error = f"seed {seed + i}: BullMQ's record contradicts itself: {world.truth_mismatches[0]}"
                break
            failure = world.driver.failure
            judgement = Judgement((), ()) if failure else judge(record)
            result = RunResult(
                scenario=scenario.name, strategy=strategy.name, backend="postgres", seed=seed + i,
                violations=judgement.violations, record=record, crashes=tuple(world.driver.crashes),
                params=scenario.to_toml_table(), unknown=judgement.unknown,
                error=f"strategy {strategy.name}: {failure}" if failure else "",
            )
            run = LiveRun(result, time.monotonic() - started, world.measured)  # wall-clock ok
            batch.runs.append(run)
            if on_run is not None:
                on_run(run)
    except asyncio.CancelledError:
        batch.interrupted = True
        raise
    finally:
        await db.close()
    return batch
