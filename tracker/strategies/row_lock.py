"""``row-lock``: the seed's handlers wrapped in a transaction that locks the row first.

Stands for the common "just lock it" fix: keep the fixed delays, then
``BEGIN; SELECT ... FOR UPDATE``, decide in application code from the locked row, ``UPDATE``,
``COMMIT``. Handlers of one job are serialized by the lock, the decision sees the latest row,
and times come from the queue's record of the attempt (``processedOn`` / ``finishedOn``), taken
on the worker's clock and written as they are: the lock orders the handlers, not the clocks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tracker.ops import (
    Begin,
    Coalesce,
    Col,
    Commit,
    Cond,
    Greatest,
    Handler,
    Row,
    Rpc,
    Select,
    Sleep,
    Update,
    eq,
    is_in,
    le,
    lt,
    not_in,
)
from tracker.strategies import HandlerContext, JobView, Strategy

OUTCOMES = ("completed", "failed")


def _locked_write(job: JobView, decide: Any) -> Handler:
    yield Begin()
    row = yield Select(job.id, for_update=True)
    if row is not None:
        values = decide(row)
        if values:
            yield Update(job.id, values)
    yield Commit()


def mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.active_delay_ms)

    def decide(row: Row) -> dict[str, Any]:
        if row["status"] in OUTCOMES or row["attempts"] >= job.attempt:
            return {}  # this attempt (or a later one) is already recorded: nothing newer to say
        values: dict[str, Any] = {"status": "active", "attempts": job.attempt}
        if row["started_at"] is None:
            values["started_at"] = job.processed_on_us
        return values

    yield from _locked_write(job, decide)


def mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.completed_delay_ms)

    def decide(row: Row) -> dict[str, Any]:
        return {
            "status": "completed",
            "attempts": max(row["attempts"], job.attempt),
            "started_at": row["started_at"] or job.processed_on_us,
            "completed_at": job.finished_on_us,
        }

    yield from _locked_write(job, decide)


def mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.failed_delay_ms)

    def decide(row: Row) -> dict[str, Any]:
        if row["status"] in OUTCOMES or row["attempts"] > job.attempt:
            return {}
        return {
            "status": "delayed" if job.will_retry else "failed",
            "attempts": job.attempt,
            "started_at": row["started_at"] or job.processed_on_us,
            "failed_at": job.finished_on_us,
            "error_message": job.failed_reason,
        }

    yield from _locked_write(job, decide)


def update_job_progress(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.progress_delay_ms)

    def decide(row: Row) -> dict[str, Any]:
        if row["status"] in OUTCOMES:
            return {}
        return {"progress": job.progress}

    yield from _locked_write(job, decide)


def mark_job_removed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.removed_delay_ms)

    def decide(row: Row) -> dict[str, Any]:
        if row["status"] not in ("pending", "waiting", "delayed") or row["cancelled"]:
            return {}
        return {"cancelled": True, "cancelled_at": job.removed_on_us}

    yield from _locked_write(job, decide)


STRATEGY = Strategy(
    name="row-lock",
    summary="BEGIN; SELECT ... FOR UPDATE; decide in code; UPDATE; COMMIT (worker clocks as taken)",
    on_active=mark_job_active,
    on_progress=update_job_progress,
    on_completed=mark_job_completed,
    on_failed=mark_job_failed,
    on_removed=mark_job_removed,
    job_view="snapshot",  # what it was written to read: the job at event time
)


# --- the same decisions in a server-side function (supabase ``rpc()``) -------------------------
#
# Over PostgREST (``network.client = "http"``) ``BEGIN``/``COMMIT`` reach nothing, so the lock of
# ``SELECT ... FOR UPDATE`` ends with its own statement and the decision above races. What a
# supabase user writes instead is a function: the locked read and the guarded write run at the
# server in one round trip, in one transaction. Its decision is the guard (the body has no code).


def _locked_call(name: str, job: JobView, values: dict[str, Any], guard: tuple[Cond, ...]) -> Handler:
    yield Rpc(name, (Select(job.id, for_update=True), Update(job.id, values, guard)))


def _started(job: JobView) -> Any:
    return Coalesce(Col("started_at"), job.processed_on_us)


def call_mark_job_active(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.active_delay_ms)
    values = {"status": "active", "attempts": job.attempt, "started_at": _started(job)}
    yield from _locked_call("mark_job_active", job, values, (not_in("status", OUTCOMES), lt("attempts", job.attempt)))


def call_mark_job_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.completed_delay_ms)
    values = {
        "status": "completed", "attempts": Greatest(Col("attempts"), job.attempt),
        "started_at": _started(job), "completed_at": job.finished_on_us,
    }
    yield from _locked_call("mark_job_completed", job, values, ())


def call_mark_job_failed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.failed_delay_ms)
    values = {
        "status": "delayed" if job.will_retry else "failed", "attempts": job.attempt, "started_at": _started(job),
        "failed_at": job.finished_on_us, "error_message": job.failed_reason,
    }
    yield from _locked_call("mark_job_failed", job, values, (not_in("status", OUTCOMES), le("attempts", job.attempt)))


def call_update_job_progress(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.progress_delay_ms)
    yield from _locked_call("update_job_progress", job, {"progress": job.progress}, (not_in("status", OUTCOMES),))


def call_mark_job_removed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(ctx.removed_delay_ms)
    values = {"cancelled": True, "cancelled_at": job.removed_on_us}
    guard = (is_in("status", ("pending", "waiting", "delayed")), eq("cancelled", False))
    yield from _locked_call("mark_job_removed", job, values, guard)


#: ``row-lock``'s decisions as server-side functions (not a built-in: named in ``[expect]`` as
#: ``"tracker.strategies.row_lock:RPC"``).
RPC = replace(
    STRATEGY,
    name="row-lock-rpc",
    summary="row-lock's locked read and decision as one server-side function call (supabase rpc())",
    on_active=call_mark_job_active,
    on_progress=call_update_job_progress,
    on_completed=call_mark_job_completed,
    on_failed=call_mark_job_failed,
    on_removed=call_mark_job_removed,
)
