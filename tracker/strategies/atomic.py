"""``atomic``: one guarded, idempotent UPDATE per event, times from the queue's own record.

Stands for the design a careful engineer ships (the pg-boss / graphile-worker family of single
statement transitions): no fixed delays, no read-then-write, each event one statement that is
correct in whatever order the statements arrive:

* the status only moves forward: a write for attempt ``n`` changes the status only if the row has
  not seen a later attempt, and 'active' never overwrites an outcome of the same attempt;
* ``started_at`` is set once (``COALESCE``) from ``job.processedOn`` of the first run;
* ``completed_at`` / ``failed_at`` come from the worker's record of the attempt's end
  (``finishedOn``);
* every time taken on another host is clamped with ``GREATEST`` to what the row already orders
  it after (``created_at`` is the database clock's), so clock offsets cannot break
  ``job_status_timestamps_check``; the error this leaves is bounded by the clocks' offset.
"""

from __future__ import annotations

from typing import Any

from tracker.ops import Case, Coalesce, Col, Greatest, Handler, Update, eq, ge, lt, not_in
from tracker.strategies import HandlerContext, JobView, Strategy

OUTCOMES = ("completed", "failed")


def first_start(job: JobView) -> Any:
    """started_at: kept if set, else this run's start, never before the row's creation."""
    return Coalesce(Col("started_at"), Greatest(Col("created_at"), job.processed_on_us))


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            # A newer attempt, or the same one not yet finished (a stall re-run): 'active'.
            "status": Case((lt("attempts", job.attempt), eq("cancelled", False)), "active", Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
        },
        where=(not_in("status", OUTCOMES),),
    )


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            "status": "completed",
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
            "completed_at": Greatest(job.finished_on_us, first_start(job)),
        },
    )


def mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    next_status = "delayed" if job.will_retry else "failed"
    yield Update(
        job.id,
        {
            # Only an attempt at least as new as the row's may set the status.
            "status": Case((lt("attempts", job.attempt + 1),), next_status, Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
            "failed_at": Greatest(job.finished_on_us, first_start(job)),
            "error_message": job.failed_reason,
        },
        where=(not_in("status", OUTCOMES),),
    )


def update_job_progress(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {"progress": job.progress},
        where=(not_in("status", OUTCOMES), ge("attempts", job.attempt - 1)),
    )


def mark_job_removed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            # BullMQ removes only a job that is not running: an 'active' here is stale (a stall).
            "status": Case((eq("status", "active"),), "waiting", Col("status")),
            "cancelled": True,
            "cancelled_at": Coalesce(Col("cancelled_at"), Greatest(Col("created_at"), job.removed_on_us)),
        },
        # The removal is authoritative (a removed job never runs again): no guard on the status a
        # late handler of the previous attempt may still be changing, only on outcomes.
        where=(not_in("status", OUTCOMES),),
    )


STRATEGY = Strategy(
    name="atomic",
    summary="one guarded idempotent UPDATE per event; times from the job record, clamped by GREATEST",
    on_active=mark_job_active,
    on_progress=update_job_progress,
    on_completed=mark_job_completed,
    on_failed=mark_job_failed,
    on_removed=mark_job_removed,
)
