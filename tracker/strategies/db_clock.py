"""``db-clock``: single guarded statements whose times are the database's ``now()``.

Stands for pg-boss's style (``UPDATE ... SET state='active', started_on=now() WHERE ...``): one
statement per event, status guarded, every timestamp from the one clock that also stamps
``created_at``, so the CHECK can never see clocks disagree. The price: ``now()`` is when the
statement reached the database, not when the event happened, so the recorded times lag the true
ones by the handler's network latency.
"""

from __future__ import annotations

from tracker.ops import Case, Coalesce, Col, DbNow, Greatest, Handler, Update, eq, lt, not_in
from tracker.strategies import HandlerContext, JobView, Strategy, atomic

OUTCOMES = ("completed", "failed")
FIRST_START = Coalesce(Col("started_at"), DbNow())


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            "status": Case((lt("attempts", job.attempt), eq("cancelled", False)), "active", Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": FIRST_START,
        },
        where=(not_in("status", OUTCOMES),),
    )


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            "status": "completed",
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": FIRST_START,
            "completed_at": DbNow(),
        },
    )


def mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            "status": Case((lt("attempts", job.attempt + 1),), "delayed" if job.will_retry else "failed", Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": FIRST_START,
            "failed_at": DbNow(),
            "error_message": job.failed_reason,
        },
        where=(not_in("status", OUTCOMES),),
    )


def mark_job_removed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            # BullMQ removes only a job that is not running: an 'active' here is stale (a stall).
            "status": Case((eq("status", "active"),), "waiting", Col("status")),
            "cancelled": True,
            "cancelled_at": Coalesce(Col("cancelled_at"), DbNow()),
        },
        # The removal is authoritative (a removed job never runs again): no guard on the status a
        # late handler of the previous attempt may still be changing, only on outcomes.
        where=(not_in("status", OUTCOMES),),
    )


STRATEGY = Strategy(
    name="db-clock",
    summary="single guarded UPDATEs stamped with the database's now(): one clock, but arrival time",
    on_active=mark_job_active,
    on_progress=atomic.update_job_progress,  # no time in it: the same statement
    on_completed=mark_job_completed,
    on_failed=mark_job_failed,
    on_removed=mark_job_removed,
    job_view="snapshot",  # what it was written to read: the job at event time
)
