"""``atomic``: one guarded, idempotent UPDATE per event, times from the queue's own record.

Stands for the design a careful engineer ships (the pg-boss / graphile-worker family of single
statement transitions): no fixed delays, no read-then-write, each event one statement that is
correct in whatever order the statements arrive:

* the status only moves forward: a write for attempt ``n`` changes the status only if the row has
  not seen a later attempt, and 'active' never overwrites an outcome of the same attempt;
* ``started_at`` is set once (``COALESCE``), only by attempt 1's events, from ``processedOn``;
* ``completed_at`` / ``failed_at`` come from the worker's record of the attempt's end
  (``finishedOn``);
* every time taken on another host is clamped with ``GREATEST`` to what the row already orders
  it after (``created_at`` is the database clock's), so clock offsets cannot break
  ``job_status_timestamps_check``; the error this leaves is bounded by the clocks' offset.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tracker.ops import Case, Coalesce, Col, Greatest, Handler, Least, Parallel, Update, eq, ge, lt, not_in
from tracker.strategies import HandlerContext, JobView, Strategy

OUTCOMES = ("completed", "failed")


def first_start(job: JobView) -> Any:
    """started_at: kept if set. Only attempt 1's events know when the job first started (the job
    record holds the current attempt's ``processedOn``), so later attempts leave it to them, even
    when their statements arrive first. Clamped between ``created_at`` and any end already
    recorded, so another host's clock cannot break the CHECK."""
    if job.attempt > 1 or job.processed_on_us is None:
        return Col("started_at")
    mine = Greatest(Col("created_at"), job.processed_on_us)
    return Coalesce(Col("started_at"), Least(mine, Col("completed_at"), Col("failed_at")))


def end_anchor(job: JobView) -> Any:
    """What an end time must not precede: the start, or the row's creation."""
    return Coalesce(first_start(job), Col("created_at"))


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    newer = (lt("attempts", job.attempt), not_in("status", OUTCOMES), eq("cancelled", False))
    yield Update(
        job.id,
        {
            # A newer attempt (a stall re-run keeps its number: nothing to change) that has not
            # finished or been removed: 'active'. No row guard: the start is a fact to record.
            "status": Case(newer, "active", Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
        },
    )


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(
        job.id,
        {
            "status": "completed",
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
            "completed_at": Greatest(job.finished_on_us, end_anchor(job)),
        },
    )


def mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    # Only an attempt at least as new as the row's, on a row without an outcome, may set the
    # status and the failure; an older attempt's late statement still records its start.
    current = (lt("attempts", job.attempt + 1), not_in("status", OUTCOMES))
    yield Update(
        job.id,
        {
            "status": Case(current, "delayed" if job.will_retry else "failed", Col("status")),
            "attempts": Greatest(Col("attempts"), job.attempt),
            "started_at": first_start(job),
            "failed_at": Case(current, Greatest(job.finished_on_us, end_anchor(job)), Col("failed_at")),
            "error_message": Case(current, job.failed_reason, Col("error_message")),
        },
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
    job_view="snapshot",  # what it was written to read: the job at event time
)


# --- 'completed' in two statements: awaited in turn, and sent at once (``Promise.all``) ---------
#
# The end time and the transition as two UPDATEs. The table's CHECK wants a completed row to have
# its ``completed_at``, so the time goes first. Awaited one after the other, the status always
# finds the time written: as clean as ``atomic``. Sent at once (``await Promise.all([...])``, each
# on a connection of its own) the two race: when the status reaches the server first,
# ``job_status_completed_check`` rejects it (no-rejected-writes) and the row never says completed
# (terminal-status). ``scenarios/promise-all.toml`` runs both.


def _completed_time(job: JobView) -> Update:
    return Update(job.id, {"completed_at": Greatest(job.finished_on_us, end_anchor(job))})


def _completed_status(job: JobView) -> Update:
    values = {"status": "completed", "attempts": Greatest(Col("attempts"), job.attempt), "started_at": first_start(job)}
    return Update(job.id, values)


def mark_job_completed_in_turn(job: JobView, ctx: HandlerContext) -> Handler:
    yield _completed_time(job)
    yield _completed_status(job)


def mark_job_completed_at_once(job: JobView, ctx: HandlerContext) -> Handler:
    yield Parallel(_completed_time(job), _completed_status(job))


#: ``atomic`` with 'completed' as two UPDATEs awaited in turn: the time, then the status. Not a
#: built-in.
SPLIT = replace(
    STRATEGY, name="atomic-split", summary="atomic, 'completed' as two UPDATEs awaited in turn: the time, then the status",
    on_completed=mark_job_completed_in_turn,
)

#: The same two UPDATEs sent at once (``Promise.all``). Not a built-in.
PARALLEL = replace(
    STRATEGY, name="atomic-parallel", summary="atomic-split with its two UPDATEs sent at once (Promise.all)",
    on_completed=mark_job_completed_at_once,
)
