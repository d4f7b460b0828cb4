"""``three-layer``: the seed's T044.14 "three-layer fix", as its completion report describes it.

Stands for the patched ``job-status-tracker.ts``:

1. ``markJobCompleted`` sets ``started_at = created_at + 1 ms`` (``created_at`` parsed by
   JavaScript's ``Date``, so cut to whole milliseconds) in a separate UPDATE when it is empty,
   then writes ``status='completed'`` and ``completed_at = new Date()``.
2. ``markJobActive`` sets ``started_at`` only when it is empty (the retry overwrite is gone), but
   still writes ``status='active'`` unconditionally.
3. Before setting ``started_at``, ``markJobActive`` re-reads ``completed_at`` and gives up when its
   new ``started_at`` would not be earlier (a check-then-act, not a guard).

The same fixed delays (500 ms / 300 ms) and worker clocks as ``naive``. Judged by the same
invariants as every other strategy: the report's test change ("accept either 'active' or
'completed' for fast jobs") is a status regression the invariants count.
"""

from __future__ import annotations

from tracker.ops import Handler, ReadClock, Select, Sleep, Update
from tracker.strategies import HandlerContext, JobView, Strategy, naive

MS = 1000


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.active_delay_ms)
    existing = yield Select(job.id)
    current_attempt = job.attempts_made + 1
    values = {"status": "active", "attempts": current_attempt}
    if existing is None or existing["started_at"] is None:  # layer 2
        started_at = yield ReadClock()
        final_check = yield Select(job.id)  # layer 3
        if final_check is not None and final_check["completed_at"] is not None:
            if started_at >= final_check["completed_at"]:
                return  # "Skipping started_at - would violate constraint"
        values["started_at"] = started_at
    yield Update(job.id, values)


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.completed_delay_ms)
    existing = yield Select(job.id)
    if existing is not None and existing["started_at"] is None:  # layer 1
        created_ms = existing["created_at"] // MS * MS  # new Date(iso) keeps milliseconds
        yield Update(job.id, {"started_at": created_ms + 1 * MS})
    completed_at = yield ReadClock()
    yield Update(job.id, {"status": "completed", "completed_at": completed_at})


STRATEGY = Strategy(
    name="three-layer",
    summary="the seed's T044.14 fix as reported: started_at=created_at+1ms, skip-if-later check",
    on_active=mark_job_active,
    on_progress=naive.update_job_progress,
    on_completed=mark_job_completed,
    on_failed=naive.mark_job_failed,
    on_removed=naive.mark_job_cancelled,
    job_view="snapshot",  # what it was written to read: the job at event time
)
