"""What the live driver costs: statements per second it sustains against the same statements sent
by a bare asyncio psycopg loop on the same server, printed as a ratio (aim: >= 0.7).

Both sides run ``SESSIONS`` concurrent sessions, each sending ``PER_SESSION`` autocommit UPDATEs of
its own row (the shape a strategy's handler writes, built by the same ``Compiler``). The live side
runs them as a strategy handler: stepped by the one interpreter, each answer recorded as a step.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python benchmarks/live_overhead.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sim.live.postgres import AsyncTracker  # noqa: E402
from sim.live.world import Actor, LiveDriver, Measured, Timebase  # noqa: E402
from sim.record.clocks import Clock  # noqa: E402
from tracker.ops import Insert, Update  # noqa: E402
from tracker.pg_server import choose_server  # noqa: E402
from tracker.postgres import CLOCK_SETTING, SET_CLOCK, micros_to_text  # noqa: E402
from tracker.strategies import HandlerContext, JobView  # noqa: E402

SESSIONS = 8
PER_SESSION = 400


def writes(job: JobView, ctx: HandlerContext):
    for n in range(PER_SESSION):
        yield Update(job.id, {"progress": {"n": n}})


async def main() -> None:
    dsn = choose_server(None).dsn
    db = AsyncTracker(dsn, prefix="racetrack_bench")
    await db.open()
    try:
        await db.warm(SESSIONS)
        clock = Clock("db", 0, 0.0, 1)
        for i in range(SESSIONS):
            await db.execute("setup", Insert(f"job-{i}", {"status": "active"}), clock.read(0))
        await db.end_session("setup")
        assert db.compiler is not None

        # The bare loop: the same statement text, straight on pooled connections.
        conns = [db._idle[i] for i in range(SESSIONS)]  # the tracker's own pooled connections

        async def bare(conn, job_id: str) -> None:
            for n in range(PER_SESSION):
                query, params, clock_text = db.compiler.statement(Update(job_id, {"progress": {"n": n}}), micros_to_text(clock.read(0)))
                async with conn.cursor(binary=True) as cur:
                    if clock_text is not None:
                        await cur.execute(SET_CLOCK, [CLOCK_SETTING, clock_text])
                    await cur.execute(query, params)
                    await cur.fetchone()

        best_bare = best_live = 0.0
        for _ in range(3):
            started = time.perf_counter()  # wall-clock ok: a benchmark
            await asyncio.gather(*(bare(conns[i], f"job-{i}") for i in range(SESSIONS)))
            best_bare = max(best_bare, SESSIONS * PER_SESSION / (time.perf_counter() - started))  # wall-clock ok

            driver = LiveDriver(db, clock, Timebase(), Measured())
            started = time.perf_counter()  # wall-clock ok: a benchmark
            for i in range(SESSIONS):
                view = JobView(id=f"job-{i}", attempt=1, attempts_made=0, attempts_started=1, max_attempts=1, timestamp_us=0)
                driver.spawn(Actor(f"bench-{i}", f"job-{i}", "progress", "worker-1", clock), writes, view, HandlerContext("worker-1"))
            await driver.settle()
            best_live = max(best_live, SESSIONS * PER_SESSION / (time.perf_counter() - started))  # wall-clock ok
            assert len(driver.steps) == SESSIONS * PER_SESSION and driver.lost is None
        print(f"bare asyncio psycopg loop: {best_bare:10,.0f} statements/s ({SESSIONS} sessions x {PER_SESSION})")
        print(f"live driver:               {best_live:10,.0f} statements/s")
        print(f"ratio live/bare:           {best_live / best_bare:10.2f}  (aim >= 0.7)")
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main())
