"""Upsert strategies: no producer-side INSERT; every listener writes its row with
``INSERT ... ON CONFLICT (job_id) DO UPDATE``, so whichever event's statement arrives first creates
the row (the supabase-js ``.upsert()`` habit). Neither is a built-in (built-in results stay as they
were); ``scenarios/upsert-rows.toml`` names both.

* ``NAIVE`` (``naive-upsert``): after the seed's fixed delays, the proposed row is the event's, and
  a conflict overwrites the row
  with it (``SET status = EXCLUDED.status, ...``): the last statement to arrive wins, so a late
  'active' moves a completed row back.
* ``GUARDED`` (``guarded-upsert``): the proposed row is the event's; a conflict applies ``atomic``'s
  transitions to the existing row (its SET expressions read the existing row, ``EXCLUDED`` the
  proposed one), and progress is guarded by ``conflict_where``. Order-independent, as ``atomic``.

Times on a row created by a listener: ``created_at`` is the job's own ``timestamp`` (when the
producer added it), and every other time is clamped in Python to not precede it, since the
proposed row's CHECKs are evaluated before the conflict is.
"""

from __future__ import annotations

from typing import Any

from tracker.ops import Excluded, Handler, Insert, Sleep, ge, not_in
from tracker.strategies import HandlerContext, JobView, Strategy, atomic


def _after_creation(job: JobView, us: int | None) -> int | None:
    return None if us is None else max(us, job.timestamp_us)


def _proposed(job: JobView, values: dict[str, Any]) -> dict[str, Any]:
    """The row this event would create: the job's identity, creation time and first start."""
    row: dict[str, Any] = {"max_attempts": job.max_attempts, "created_at": job.timestamp_us,
                           "attempts": job.attempt}
    if job.attempt == 1 and job.processed_on_us is not None:
        row["started_at"] = _after_creation(job, job.processed_on_us)
    row.update(values)
    return row


def _overwrite(row: dict[str, Any]) -> dict[str, Any]:
    """``SET c = EXCLUDED.c`` for every column the event names except the creation time."""
    return {c: Excluded(c) for c in row if c != "created_at"}


def _naive(values_of: Any, delay: str) -> Any:
    """After the seed's fixed delay (``ctx.<event>_delay_ms``), upsert the event's row."""
    def handler(job: JobView, ctx: HandlerContext) -> Handler:
        yield Sleep(getattr(ctx, delay))
        row = _proposed(job, values_of(job))
        yield Insert(job.id, row, on_conflict_update=_overwrite(row))

    return handler


NAIVE = Strategy(
    name="naive-upsert",
    summary="every listener upserts the event's row; a conflict overwrites it (the last statement wins)",
    on_created=None,
    on_active=_naive(lambda job: {"status": "active"}, "active_delay_ms"),
    on_progress=_naive(lambda job: {"progress": job.progress}, "progress_delay_ms"),
    on_completed=_naive(
        lambda job: {"status": "completed", "completed_at": _after_creation(job, job.finished_on_us)},
        "completed_delay_ms",
    ),
    on_failed=_naive(lambda job: {
        "status": "delayed" if job.will_retry else "failed", "failed_at": _after_creation(job, job.finished_on_us),
        "error_message": job.failed_reason,
    }, "failed_delay_ms"),
    on_removed=_naive(
        lambda job: {"cancelled": True, "cancelled_at": _after_creation(job, job.removed_on_us)}, "removed_delay_ms"
    ),
    job_view="snapshot",
)


def _guarded(values_of: Any, transition: Any, guard: Any = None) -> Any:
    """The event's row if there is none, else ``atomic``'s UPDATE of the existing row."""
    def handler(job: JobView, ctx: HandlerContext) -> Handler:
        update = next(transition(job, ctx))  # atomic's one statement: its SET and guard
        where = update.where if guard is None else guard(job)
        yield Insert(job.id, _proposed(job, values_of(job)), on_conflict_update=update.set, conflict_where=where)

    return handler


GUARDED = Strategy(
    name="guarded-upsert",
    summary="every listener upserts; a conflict applies atomic's guarded transitions to the existing row",
    on_created=None,
    on_active=_guarded(lambda job: {"status": "active"}, atomic.mark_job_active),
    on_progress=_guarded(
        lambda job: {"progress": job.progress}, atomic.update_job_progress,
        lambda job: (not_in("status", atomic.OUTCOMES), ge("attempts", job.attempt - 1)),
    ),
    on_completed=_guarded(
        lambda job: {"status": "completed", "completed_at": _after_creation(job, job.finished_on_us)},
        atomic.mark_job_completed,
    ),
    on_failed=_guarded(
        lambda job: {"status": "delayed" if job.will_retry else "failed",
                     "failed_at": _after_creation(job, job.finished_on_us), "error_message": job.failed_reason},
        atomic.mark_job_failed,
    ),
    on_removed=_guarded(
        lambda job: {"cancelled": True, "cancelled_at": _after_creation(job, job.removed_on_us)},
        atomic.mark_job_removed,
    ),
    job_view="snapshot",
)
