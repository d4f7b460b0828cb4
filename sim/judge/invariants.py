"""The checkers: pure functions from a :class:`~sim.record.history.RunRecord` (history, final rows,
ground truth) to violations. No SimPy, no backend: testable with hand-written histories.

Each invariant has a stable ID used in output, result files, reports and scenario expectations.
No checker names a column or a status: each reads them through the record's
:class:`~tracker.lifecycle.Lifecycle` (the scenario's column mapping; the seed's ``job_status`` by
default). A scenario may switch invariants off and add row invariants of its own (``row:<name>``,
SQL boolean expressions translated like CHECKs, judged on every committed row version).
``no-rejected-writes`` counts every rejected statement; every other invariant reports at most
one violation per job (its first), so counts read as "jobs affected".

Each checker's docstring is its precise rule and names the facts its violations carry;
``docs/invariants.md`` is generated from them (``python -m sim.judge.invariants > docs/invariants.md``).
:func:`judge` runs every checker check-safe: one that raises makes its invariant unknown.

May import: ``sim.judge.violation``, ``sim.record``, ``tracker.ops``, ``tracker.lifecycle``,
``tracker.table`` (evaluating row invariants). No SimPy, no backend.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from sim.judge.catalog import INVARIANT_IDS, SUMMARIES
from sim.judge.violation import Violation
from sim.record.clocks import EPOCH_US
from sim.record.history import JobTruth, RunRecord
from tracker.lifecycle import Lifecycle, RowInvariant
from tracker.ops import Row, describe, format_timestamp
from tracker.table import evaluate

#: PostgreSQL's verdicts on the row invariants, per committed row version: (step index, position
#: in the step's ``committed``) -> one verdict per row invariant, in the lifecycle's order.
RowVerdicts = Mapping[tuple[int, int], tuple[bool | None, ...]]


def _get(row: Row, column: str | None) -> Any:
    """A mapped column's value; None when the table has no such column."""
    return None if column is None else row[column]


# --- the invariants ----------------------------------------------------------------------------


def no_rejected_writes(record: RunRecord) -> Iterator[Violation]:
    """Every statement the database rejected (SQLSTATE class 23: a CHECK, NOT NULL or unique
    constraint) is a violation: this invariant counts every rejected statement, not one per job.

    Facts: the ``actor``, the ``operation``, the ``constraint`` that rejected it, and the row it
    met (``row_status``, ``row_started_at``, ``row_completed_at``).
    """
    lc = record.lifecycle
    status, started, completed = lc.status, lc.started_at or "", lc.completed_at or ""
    for step in record.steps:
        if step.kind == "db" and step.rejected and step.error is not None:
            row = step.row_before or {}
            assert step.op is not None
            facts = {"actor": step.actor, "operation": describe(step.op), "constraint": step.error[1],
                     "row_status": row.get(status), "row_started_at": row.get(started),
                     "row_completed_at": row.get(completed)}
            yield Violation("no-rejected-writes", step.job_id, step.executed_us, step.index, facts)


def ordered_timestamps(record: RunRecord) -> Iterator[Violation]:
    """Every committed row version has ``created_at <= started_at <= completed_at/failed_at``.
    It also checks ``completed_at``/``failed_at`` against ``created_at`` when there is no
    ``started_at`` (the table's CHECK cannot see that case) and ``cancelled_at >= created_at``.

    Facts: the ``actor`` that committed the version, and the first pair out of order: the
    ``earlier`` column and its ``earlier_value``, the ``later`` column and its ``later_value``.
    """
    lc = record.lifecycle
    created_col, started_col = lc.column("created_at"), lc.column("started_at")
    completed_col, failed_col, cancelled_col = lc.column("completed_at"), lc.column("failed_at"), lc.column("cancelled_at")
    for job, versions in record.versions.items():
        for step, row in versions:
            created, started = _get(row, created_col), _get(row, started_col)
            # completed_at / failed_at are checked against started_at, or created_at without one
            earlier, before = (started_col, started) if started is not None else (created_col, created)
            bad = _first_out_of_order((
                (created_col, created, started_col, started),
                (earlier, before, completed_col, _get(row, completed_col)),
                (earlier, before, failed_col, _get(row, failed_col)),
                (created_col, created, cancelled_col, _get(row, cancelled_col)),
            ))
            if bad is not None:
                a, va, b, vb = bad
                facts = {"actor": step.actor, "earlier": a, "earlier_value": va, "later": b, "later_value": vb}
                yield Violation("ordered-timestamps", job, step.executed_us, step.index, facts)
                break


def _first_out_of_order(pairs: tuple[tuple[str | None, Any, str | None, Any], ...]) -> tuple[str | None, Any, str | None, Any] | None:
    """The first (earlier column, its value, later column, its value) whose later value is
    smaller, both set; None when all are in order."""
    for pair in pairs:
        va, vb = pair[1], pair[3]
        if va is not None and vb is not None and vb < va:
            return pair
    return None


def terminal_status(record: RunRecord) -> Iterator[Violation]:
    """Once the handlers settle, the final row's status is the job's real outcome: a
    ``completed`` status for a completed job, a ``failed`` one for a failed one, a ``removed``
    one for a removed one (the seed's table: a removed job keeps a waiting status, ``pending``,
    ``waiting`` or ``delayed``, with ``cancelled`` true; a table without a ``cancelled`` column
    is judged on the status alone). A job with no row at all violates it.

    Facts: the final row's ``status`` and ``cancelled`` (both None when there is no row), the
    job's true ``outcome`` and its time ``outcome_us``, and the ``expected`` statuses.
    """
    lc = record.lifecycle
    cancelled = lc.column("cancelled")
    for job, truth in record.truths:
        row = record.rows.get(job)
        allowed = lc.statuses(truth.outcome)
        flag = None if row is None else _get(row, cancelled)
        facts = {"status": None if row is None else row[lc.status], "cancelled": flag,
                 "outcome": truth.outcome, "outcome_us": truth.outcome_us, "expected": list(allowed)}
        if row is None or row[lc.status] not in allowed or (truth.outcome == "removed" and cancelled is not None and not flag):
            yield Violation("terminal-status", job, facts=facts)


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


def _explain(truth: JobTruth, state: str | None, attempt: object, at_us: int) -> int | None:
    """The true time of the state change a row version reports.

    The row's ``attempts`` says which attempt its status is about; when it names a real attempt
    that was in that state, that attempt's time is the answer. Otherwise (a strategy that keeps
    ``attempts`` wrong): the latest entry into that state up to ``at_us``, or for a row written
    ahead of the queue, the first one after.
    """
    times = _attempt_times(truth, state or "", attempt) or [t for t, s in truth.transitions if s == state]
    if not times:
        return None
    before = [t for t in times if t <= at_us]
    return max(before) if before else min(times)


def monotonic_status(record: RunRecord) -> Iterator[Violation]:
    """Status never moves backwards (``completed -> active`` is a regression). Each committed
    status reports a true state change: the one of the attempt named by the row's ``attempts``
    when it names a real attempt in that state, else the latest entry into that state before the
    write. A regression is a new status whose reported change is older than the one the row
    already showed. (A first version judged by time alone; Hypothesis found it calling a late
    attempt-1 ``active`` landing after attempt 2 started a regression of attempt 2.)

    Facts: the ``actor``, the move ``from_status`` -> ``to_status``, the true time of the change
    the new status reports (``reports_us``) and of the one the row already showed (``showed_us``).
    """
    lc = record.lifecycle
    state_of, attempts = lc.state_of(), lc.column("attempts")
    for job, versions in record.versions.items():
        truth = record.truth.get(job)
        if truth is None:
            continue
        previous: tuple[str, int] | None = None
        for step, row in versions:
            status = row[lc.status]
            when = _explain(truth, state_of.get(status), _get(row, attempts), step.executed_us)
            if when is None:
                continue
            if previous is not None and status != previous[0] and when < previous[1]:
                facts = {"actor": step.actor, "from_status": previous[0], "to_status": status,
                         "reports_us": when, "showed_us": previous[1]}
                yield Violation("monotonic-status", job, step.executed_us, step.index, facts)
                break
            previous = (status, when)


def first_start_kept(record: RunRecord) -> Iterator[Violation]:
    """``started_at``, once a committed row version has it, is never overwritten (not even by
    NULL).

    Facts: the ``actor`` that changed it, the ``first`` value and the value it wrote (``now``),
    and the ``column`` when the table's is not called ``started_at``.
    """
    column = record.lifecycle.column("started_at")
    if column is None:
        return
    for job, versions in record.versions.items():
        first: int | None = None
        for step, row in versions:
            if first is None:
                first = row[column]
            elif row[column] != first:
                facts = {"actor": step.actor, "first": first, "now": row[column]}
                if column != "started_at":
                    facts["column"] = column
                yield Violation("first-start-kept", job, step.executed_us, step.index, facts)
                break


def faithful_timestamps(record: RunRecord) -> Iterator[Violation]:
    """The final row's times are within tolerance of the true times: ``started_at`` of the first
    attempt's start, ``completed_at`` of the completion, ``failed_at`` of a failure (any failed
    attempt, when the row has one), ``cancelled_at`` of the removal. The tolerance is
    ``invariants.timestamp_slack_ms`` plus the largest error any host clock of the run can have
    (offset + drift over the run + resolution): a strategy is not blamed for its clocks, only for
    recording the wrong moment.

    Facts: the ``tolerance_us`` and, per column out of tolerance (``columns``), the ``recorded``
    time (None: NULL), the ``true_us`` times it may report and the ``error_us`` to the nearest.
    """
    tol = record.tolerance_us
    lc = record.lifecycle
    started, completed, failed, cancelled = (lc.column(r) for r in ("started_at", "completed_at", "failed_at", "cancelled_at"))
    for job, truth in record.truths:
        row = record.rows.get(job)
        if row is None:
            continue
        expected: list[tuple[str | None, list[int] | None]] = []
        if truth.first_start_us is not None:
            expected.append((started, [truth.first_start_us]))
        if truth.outcome == "completed":
            expected.append((completed, [truth.outcome_us]))
        failures = [a.end_us for a in truth.attempts if a.outcome == "failed" and a.end_us is not None]
        if truth.outcome == "failed":
            failures.append(truth.outcome_us)
        if failures and failed is not None and (truth.outcome == "failed" or row[failed] is not None):
            expected.append((failed, failures))
        if truth.outcome == "removed":
            expected.append((cancelled, [truth.outcome_us]))
        problems = []
        for column, true_times in expected:
            if column is None:  # the table keeps no such time
                continue
            assert true_times is not None
            value = row[column]
            error = None if value is None else min((value - (EPOCH_US + t) for t in true_times), key=abs)
            if error is None or abs(error) > tol:
                problems.append({"column": column, "recorded": value, "true_us": list(true_times), "error_us": error})
        if problems:
            yield Violation("faithful-timestamps", job, facts={"tolerance_us": tol, "columns": problems})


def accurate_attempts(record: RunRecord) -> Iterator[Violation]:
    """The final row's ``attempts`` equals the attempts really started: distinct attempt
    numbers (a stall re-run is the same attempt).

    Facts: the ``recorded`` attempts and the number ``started``.
    """
    column = record.lifecycle.column("attempts")
    if column is None:
        return
    for job, truth in record.truths:
        row = record.rows.get(job)
        if row is None:
            continue
        if row[column] != truth.attempts_started:
            facts = {"recorded": row[column], "started": truth.attempts_started}
            yield Violation("accurate-attempts", job, facts=facts)


def _shown(value: Any, stamp: bool) -> Any:
    return format_timestamp(value) if stamp and isinstance(value, int) and not isinstance(value, bool) else value


def row_invariant(record: RunRecord, rule: RowInvariant, position: int, verdicts: RowVerdicts | None = None) -> Iterator[Violation]:
    """A scenario's own rule (``[invariants.rows]``, ID ``row:<name>``): every committed row
    version satisfies its SQL boolean expression. Like a CHECK, a version violates it only when
    the expression is false (NULL passes). The memory backend evaluates the translation; the
    PostgreSQL backends let the server evaluate the expression on the same row versions
    (``verdicts``). At most one violation per job (its first).

    Facts: the ``actor`` that committed the version, the rule's ``sql``, and the ``values`` of
    the columns it reads in that version.
    """
    for job, versions in record.versions.items():
        for step, row in versions:
            if verdicts is not None:
                place = next(i for i, r in enumerate(step.committed) if r is row)
                verdict = verdicts[(step.index, place)][position]
            else:
                verdict = evaluate(rule.expr, row, step.db_now_us or 0)
            if verdict is False:
                values = {c: _shown(row[c], c in rule.stamps) for c in rule.reads}
                facts = {"actor": step.actor, "sql": rule.sql, "values": values}
                yield Violation(rule.id, job, step.executed_us, step.index, facts)
                break


@dataclass(frozen=True)
class Invariant:
    id: str
    summary: str
    check: Callable[[RunRecord], Iterator[Violation]]


_CHECKERS: dict[str, Callable[[RunRecord], Iterator[Violation]]] = {
    "no-rejected-writes": no_rejected_writes,
    "ordered-timestamps": ordered_timestamps,
    "terminal-status": terminal_status,
    "monotonic-status": monotonic_status,
    "first-start-kept": first_start_kept,
    "faithful-timestamps": faithful_timestamps,
    "accurate-attempts": accurate_attempts,
}
INVARIANTS: tuple[Invariant, ...] = tuple(Invariant(id, summary, _CHECKERS[id]) for id, summary in SUMMARIES.items())


class UnknownInvariant(ValueError):
    """An invariant ID that is not one of :data:`INVARIANT_IDS`; ``str()`` is the one line."""


def require_known(ids: Iterable[str], where: str) -> None:
    """Raise :class:`UnknownInvariant` (``<where>: unknown invariant 'x' (known: ...)``) for the
    first of ``ids`` that names no invariant (``row:<name>`` is left to the scenario that
    declares its row invariants)."""
    for i in ids:
        if i not in INVARIANT_IDS and not i.startswith("row:"):  # a row invariant is the scenario's to name
            raise UnknownInvariant(f"{where}: unknown invariant {i!r} (known: {', '.join(INVARIANT_IDS)})")


@dataclass(frozen=True)
class Unknown:
    """An invariant that could not be judged: its checker raised ``error`` (one line)."""

    invariant: str
    error: str

    def line(self) -> str:
        return f"unknown: {self.invariant}: {self.error}"


@dataclass(frozen=True)
class Judgement:
    """What :func:`judge` found: the violations, and the invariants it could not judge."""

    violations: tuple[Violation, ...]
    unknown: tuple[Unknown, ...] = ()


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def judged_ids(lifecycle: Lifecycle) -> tuple[str, ...]:
    """The IDs a run of this lifecycle judges: the built-in invariants not switched off, then its
    row invariants."""
    return tuple(i for i in INVARIANT_IDS if lifecycle.judges(i)) + tuple(r.id for r in lifecycle.rows)


def judge(record: RunRecord, verdicts: RowVerdicts | None = None) -> Judgement:
    """Every violation of every invariant the record's lifecycle judges (switched-off ones are
    not run), in invariant order then history order, then the row invariants'. ``verdicts``:
    PostgreSQL's on the row invariants (None: the model evaluates them). A checker that raises
    (Jepsen's ``check-safe``) makes its invariant unknown; the others still judge."""
    violations: list[Violation] = []
    unknown: list[Unknown] = []
    checks: list[tuple[str, Callable[[], Iterator[Violation]]]] = [
        (inv.id, partial(inv.check, record)) for inv in INVARIANTS if record.lifecycle.judges(inv.id)
    ]
    for position, rule in enumerate(record.lifecycle.rows):
        checks.append((rule.id, partial(row_invariant, record, rule, position, verdicts)))
    for invariant_id, check in checks:
        try:
            violations.extend(check())
        except Exception as exc:  # a checker's bug must not hide what the other checkers find
            unknown.append(Unknown(invariant_id, _one_line(exc)))
    return Judgement(tuple(violations), tuple(unknown))


def verdict_lines(violations: Iterable[Violation], unknown: Iterable[Unknown], judged: int = len(INVARIANTS)) -> list[str]:
    """The verdict of one judged run, as ``racetrack run`` prints it: the violations, then one
    ``unknown: <id>: <error>`` line per invariant that could not be judged (``judged``: how many
    invariants the run judged, see :func:`judged_ids`)."""
    found, missing = list(violations), list(unknown)
    if found:
        lines = [f"verdict: {len(found)} violation(s)", *(f"  {v.line()}" for v in found)]
    elif missing:
        lines = [f"verdict: no violation found, but {len(missing)} of {judged} invariants could not be judged"]
    else:
        lines = [f"verdict: all {judged} invariants held"]
    return lines + [u.line() for u in missing]


def reference() -> str:
    """``docs/invariants.md``: every invariant's ID, summary and precise rule, written from
    :data:`INVARIANTS` and the checkers' docstrings."""
    parts = [
        "<!-- Generated by `python -m sim.judge.invariants > docs/invariants.md` from sim/judge/invariants.py;"
        " do not edit. -->",
        "# Invariants",
        "",
        "Each invariant has a stable ID, used in output, result files (one column each, see",
        "[results.md](results.md)), reports and scenario expectations (`[expect]`). A checker is a pure",
        "function of a run's record (history, final rows, ground truth). `no-rejected-writes` counts every",
        "rejected statement; every other invariant reports at most one violation per job (its first), so",
        "counts read as \"jobs affected\". A checker that raises makes its invariant `unknown` for that run",
        "(neither held nor violated); the others still judge.",
        "",
        "| id | holds when |",
        "| --- | --- |",
        *(f"| `{i.id}` | {i.summary} |" for i in INVARIANTS),
    ]
    for i in INVARIANTS:
        parts += ["", f"## `{i.id}`", "", (inspect.getdoc(i.check) or "").replace("``", "`")]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
