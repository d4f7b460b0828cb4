"""``naive``: the seed's ``job-status-tracker.ts`` before the T044.14 fix.

Stands for: listeners on BullMQ's worker events that wait a fixed delay (500 ms on 'active',
300 ms on 'completed'), read the row, take ``new Date()`` on the worker, and write the row in a
separate UPDATE. ``markJobActive`` sets ``started_at`` when it is empty *or* on the second attempt
(``isRetry && currentAttempt === 2``). Nothing guards the status, so a late 'active' handler can
regress a completed row, and its ``started_at`` can land after ``completed_at``: the CHECK
``job_status_timestamps_check`` rejects that write (the seed's symptom).
"""

from __future__ import annotations

from dataclasses import replace

from tracker.ops import Handler, ReadClock, Select, Sleep, Update
from tracker.strategies import HandlerContext, JobView, Strategy


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.active_delay_ms)
    existing = yield Select(job.id)
    is_retry = job.attempts_made > 0
    current_attempt = job.attempts_made + 1
    should_set_started_at = existing is None or existing["started_at"] is None or (
        is_retry and current_attempt == 2
    )
    values = {"status": "active", "attempts": current_attempt}
    if should_set_started_at:
        values["started_at"] = yield ReadClock()
    yield Update(job.id, values)


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.completed_delay_ms)
    yield Select(job.id)
    completed_at = yield ReadClock()
    yield Update(job.id, {"status": "completed", "completed_at": completed_at})


def mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.failed_delay_ms)
    yield Select(job.id)
    failed_at = yield ReadClock()
    yield Update(
        job.id,
        {
            "status": "failed",
            "failed_at": failed_at,
            "error_message": job.failed_reason,
            "attempts": job.attempts_made,
        },
    )


def update_job_progress(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.progress_delay_ms)
    yield Update(job.id, {"progress": job.progress})


def mark_job_cancelled(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.removed_delay_ms)
    cancelled_at = yield ReadClock()
    yield Update(job.id, {"cancelled": True, "cancelled_at": cancelled_at})


STRATEGY = Strategy(
    name="naive",
    summary="the seed before its fix: delayed read-then-write handlers, worker clock, no guards",
    on_active=mark_job_active,
    on_progress=update_job_progress,
    on_completed=mark_job_completed,
    on_failed=mark_job_failed,
    on_removed=mark_job_cancelled,
    job_view="snapshot",  # what it was written to read: the job at event time
)

#: The same handlers reading the worker's live ``Job``, as the seed's TypeScript listeners did: after
#: its 500 ms delay, 'active' reads ``attemptsMade`` of an attempt that has already finished. Not a
#: built-in (their results stay as they were); ``scenarios/live-job.toml`` names it.
LIVE = replace(
    STRATEGY, name="naive-live", summary="naive reading the worker's live Job after its delays (as the seed's code did)",
    job_view="live",
)
