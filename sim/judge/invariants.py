"""The checkers: pure functions from a :class:`~sim.record.history.RunRecord` (history, final rows,
ground truth) to violations. No SimPy, no backend: testable with hand-written histories.

Each invariant has a stable ID used in output, result files, reports and scenario expectations.
``no-rejected-writes`` counts every rejected statement; every other invariant reports at most
one violation per job (its first), so counts read as "jobs affected".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sim.record.clocks import EPOCH_US
from sim.record.history import JobTruth, RunRecord, Step
from tracker.ops import Row, describe, format_timestamp


@dataclass(frozen=True)
class Violation:
    invariant: str
    job: str
    detail: str
    at_us: int | None = None  # true time when it happened (None: judged at the end)
    step: int | None = None  # the step that caused it, when one did

    def line(self) -> str:
        return f"{self.invariant}: {self.job}: {self.detail}"


def _ms(us: int) -> str:
    return f"{us / 1000:.3f} ms"


def _ts(us: int | None) -> str:
    return "NULL" if us is None else format_timestamp(us)


def _job_order(job: str) -> tuple[int, str]:
    """job-2 before job-10, whatever order a dict (or a JSON file) kept them in."""
    digits = "".join(ch for ch in job if ch.isdigit())
    return (int(digits) if digits else -1, job)


def _truths(record: RunRecord) -> list[tuple[str, JobTruth]]:
    return sorted(record.truth.items(), key=lambda item: _job_order(item[0]))


def _versions(record: RunRecord) -> dict[str, list[tuple[Step, Row]]]:
    out: dict[str, list[tuple[Step, Row]]] = {}
    for step in record.steps:
        for row in step.committed:
            out.setdefault(row["job_id"], []).append((step, row))
    return dict(sorted(out.items(), key=lambda item: _job_order(item[0])))


# --- the invariants ----------------------------------------------------------------------------


def no_rejected_writes(record: RunRecord) -> Iterator[Violation]:
    for step in record.steps:
        if step.kind == "db" and step.rejected and step.error is not None:
            row = step.row_before or {}
            assert step.op is not None
            yield Violation(
                "no-rejected-writes",
                step.job_id,
                f"{step.actor} {describe(step.op)} rejected by {step.error[1]} at {_ms(step.executed_us)}"
                f" (row had status={row.get('status')}, started_at={_ts(row.get('started_at'))},"
                f" completed_at={_ts(row.get('completed_at'))})",
                step.executed_us,
                step.index,
            )


def ordered_timestamps(record: RunRecord) -> Iterator[Violation]:
    for job, versions in _versions(record).items():
        for step, row in versions:
            created, started = row["created_at"], row["started_at"]
            pairs = [("created_at", created, "started_at", started)]
            for later in ("completed_at", "failed_at"):
                earlier = "started_at" if started is not None else "created_at"
                pairs.append((earlier, row[earlier], later, row[later]))
            pairs.append(("created_at", created, "cancelled_at", row["cancelled_at"]))
            bad = [(a, va, b, vb) for a, va, b, vb in pairs if va is not None and vb is not None and vb < va]
            if bad:
                a, va, b, vb = bad[0]
                yield Violation(
                    "ordered-timestamps",
                    job,
                    f"committed by {step.actor} at {_ms(step.executed_us)}: {b}={_ts(vb)} is before {a}={_ts(va)}",
                    step.executed_us,
                    step.index,
                )
                break


EXPECTED_STATUS = {"completed": ("completed",), "failed": ("failed",), "removed": ("pending", "waiting", "delayed")}


def terminal_status(record: RunRecord) -> Iterator[Violation]:
    for job, truth in _truths(record):
        row = record.rows.get(job)
        if row is None:
            yield Violation("terminal-status", job, f"no row, but the job {truth.outcome}")
            continue
        allowed = EXPECTED_STATUS[truth.outcome]
        if row["status"] not in allowed:
            yield Violation(
                "terminal-status",
                job,
                f"final status is {row['status']!r} but the job {truth.outcome} at {_ms(truth.outcome_us)}"
                f" (expected {' or '.join(repr(a) for a in allowed)})",
            )
        elif truth.outcome == "removed" and not row["cancelled"]:
            yield Violation("terminal-status", job, f"the job was removed at {_ms(truth.outcome_us)} but cancelled is false")


#: Which true state explains a row status.
_STATE_OF = {"pending": "waiting", "waiting": "waiting", "delayed": "delayed", "active": "active", "completed": "completed", "failed": "failed"}


def _attempt_times(truth: JobTruth, state: str, attempt: object) -> list[int]:
    """True times of ``state`` for attempt number ``attempt`` (the row's ``attempts`` column)."""
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        return []
    if state == "active":
        return [a.start_us for a in truth.attempts if a.number == attempt]
    if state == "failed" or (state == "delayed" and attempt > 0):
        times = [a.end_us for a in truth.attempts if a.number == attempt and a.outcome == "failed" and a.end_us is not None]
        last = max((a.number for a in truth.attempts), default=0)
        if truth.outcome == "failed" and attempt == last and not times:  # failed by the stall checker
            times = [truth.outcome_us]
        return times
    if state == "completed" and truth.outcome == "completed":
        return [truth.outcome_us]
    if state in ("waiting", "delayed"):
        # Before attempt n+1 started (and after attempt n did): the waits between the two.
        after = min((a.start_us for a in truth.attempts if a.number == attempt), default=None) if attempt else None
        before = min((a.start_us for a in truth.attempts if a.number == attempt + 1), default=None)
        if attempt and after is None:
            return []
        return [t for t, s in truth.transitions if s == state
                and (after is None or t >= after) and (before is None or t <= before)]
    return []


def _explain(truth: JobTruth, status: str, attempt: object, at_us: int) -> int | None:
    """The true time of the state change a row version reports.

    The row's ``attempts`` says which attempt its status is about; when it names a real attempt
    that was in that state, that attempt's time is the answer. Otherwise (a strategy that keeps
    ``attempts`` wrong): the latest entry into that state up to ``at_us``, or for a row written
    ahead of the queue, the first one after.
    """
    state = _STATE_OF.get(status)
    times = _attempt_times(truth, state or "", attempt) or [t for t, s in truth.transitions if s == state]
    if not times:
        return None
    before = [t for t in times if t <= at_us]
    return max(before) if before else min(times)


def monotonic_status(record: RunRecord) -> Iterator[Violation]:
    for job, versions in _versions(record).items():
        truth = record.truth.get(job)
        if truth is None:
            continue
        previous: tuple[str, int] | None = None
        for step, row in versions:
            when = _explain(truth, row["status"], row["attempts"], step.executed_us)
            if when is None:
                continue
            if previous is not None and row["status"] != previous[0] and when < previous[1]:
                yield Violation(
                    "monotonic-status",
                    job,
                    f"{step.actor} moved status {previous[0]!r} -> {row['status']!r} at {_ms(step.executed_us)}"
                    f" (reports the state of {_ms(when)}, the row already showed {_ms(previous[1])})",
                    step.executed_us,
                    step.index,
                )
                break
            previous = (row["status"], when)


def first_start_kept(record: RunRecord) -> Iterator[Violation]:
    for job, versions in _versions(record).items():
        first: int | None = None
        for step, row in versions:
            if first is None:
                first = row["started_at"]
            elif row["started_at"] != first:
                yield Violation(
                    "first-start-kept",
                    job,
                    f"{step.actor} changed started_at {_ts(first)} -> {_ts(row['started_at'])} at {_ms(step.executed_us)}",
                    step.executed_us,
                    step.index,
                )
                break


def faithful_timestamps(record: RunRecord) -> Iterator[Violation]:
    tol = record.tolerance_us
    for job, truth in _truths(record):
        row = record.rows.get(job)
        if row is None:
            continue
        expected: list[tuple[str, list[int] | None]] = []
        if truth.first_start_us is not None:
            expected.append(("started_at", [truth.first_start_us]))
        if truth.outcome == "completed":
            expected.append(("completed_at", [truth.outcome_us]))
        failures = [a.end_us for a in truth.attempts if a.outcome == "failed" and a.end_us is not None]
        if truth.outcome == "failed":
            failures.append(truth.outcome_us)
        if failures and (truth.outcome == "failed" or row["failed_at"] is not None):
            expected.append(("failed_at", failures))
        if truth.outcome == "removed":
            expected.append(("cancelled_at", [truth.outcome_us]))
        problems = []
        for column, true_times in expected:
            assert true_times is not None
            value = row[column]
            if value is None:
                problems.append(f"{column} is NULL")
                continue
            error = min((value - (EPOCH_US + t) for t in true_times), key=abs)
            if abs(error) > tol:
                problems.append(f"{column} off by {error / 1000:+.3f} ms")
        if problems:
            yield Violation("faithful-timestamps", job, "; ".join(problems) + f" (tolerance {tol / 1000:.3f} ms)")


def accurate_attempts(record: RunRecord) -> Iterator[Violation]:
    for job, truth in _truths(record):
        row = record.rows.get(job)
        if row is None:
            continue
        if row["attempts"] != truth.attempts_started:
            yield Violation(
                "accurate-attempts", job, f"attempts is {row['attempts']} but {truth.attempts_started} attempt(s) started"
            )


@dataclass(frozen=True)
class Invariant:
    id: str
    summary: str
    check: Callable[[RunRecord], Iterator[Violation]]


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("no-rejected-writes", "no tracker write was rejected by a constraint (the seed's symptom)", no_rejected_writes),
    Invariant("ordered-timestamps", "every committed row version has created <= started <= completed/failed", ordered_timestamps),
    Invariant("terminal-status", "once handlers settle, status is the job's real outcome", terminal_status),
    Invariant("monotonic-status", "status never moves backwards (completed -> active is a regression)", monotonic_status),
    Invariant("first-start-kept", "started_at, once set, is never overwritten", first_start_kept),
    Invariant("faithful-timestamps", "recorded times are within tolerance of the true times", faithful_timestamps),
    Invariant("accurate-attempts", "attempts equals the attempts really started", accurate_attempts),
)
INVARIANT_IDS = tuple(i.id for i in INVARIANTS)


def judge(record: RunRecord) -> list[Violation]:
    """Every violation of every invariant, in invariant order then history order."""
    return [v for inv in INVARIANTS for v in inv.check(record)]
