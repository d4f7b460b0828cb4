"""A run as text that reads like the interleaving (PostgreSQL's isolation tester's transcript):
one line per operation and per true queue event, in simulated time, the violations marked on the
operations that caused them. Plain text that diffs cleanly. A row shows the columns the run's
:class:`~tracker.lifecycle.Lifecycle` maps (status, attempts, the times, cancelled)."""

from __future__ import annotations

from typing import Any

from sim.judge.invariants import Violation
from sim.record.history import RunRecord, Step
from tracker.lifecycle import DEFAULT_LIFECYCLE, Lifecycle
from tracker.ops import COLUMNS, Select, describe, format_timestamp

#: The columns shown for the seed's table.
SHOWN = DEFAULT_LIFECYCLE.shown


def _value(column: str, value: Any, lc: Lifecycle) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if column in lc.timestamps or (lc is DEFAULT_LIFECYCLE and COLUMNS.get(column) == "timestamptz"):
        return format_timestamp(value)
    return str(value)


def row_summary(row: dict[str, Any] | None, lc: Lifecycle = DEFAULT_LIFECYCLE) -> str:
    if row is None:
        return "(no row)"
    # a trace read back knows only the seed's mapping: show what the row has of it
    return " ".join(f"{c}={_value(c, row[c], lc)}" for c in lc.shown if c in row)


def _changes(before: dict[str, Any] | None, after: dict[str, Any] | None, lc: Lifecycle) -> str:
    if after is None:
        return "(no row)"
    if before is None:
        return row_summary(after, lc)
    changed = [c for c in lc.shown if before.get(c) != after.get(c)]
    return " ".join(f"{c}:{_value(c, before.get(c), lc)}->{_value(c, after.get(c), lc)}" for c in changed) or "(no change)"


def step_line(step: Step, lc: Lifecycle = DEFAULT_LIFECYCLE) -> str:
    """What one step did and what it saw or wrote."""
    if step.kind == "clock":
        return f"read clock -> {format_timestamp(step.clock_us or 0)}"
    if step.kind == "error":
        return f"handler ended: {step.error[2] if step.error else ''}"
    assert step.op is not None
    text = describe(step.op)
    if step.blocked_by:
        text += f" <waited {step.waited_us / 1000:.3f} ms for {', '.join(step.blocked_by)}>"
    if step.error is not None:
        return f"{text} -> ERROR {step.error[1] or step.error[0]}"
    if isinstance(step.op, Select):
        return f"{text} -> {row_summary(step.result, lc)}"
    if step.op.__class__.__name__ in ("Insert", "Update", "Rpc"):
        if step.result is None:
            return f"{text} -> 0 rows"
        return f"{text} -> {_changes(step.row_before, step.row_after, lc)}"
    return text


def render(record: RunRecord, violations: list[Violation] | tuple[Violation, ...], header: str = "") -> str:
    marks: dict[int, list[str]] = {}
    for v in violations:
        if v.step is not None:
            marks.setdefault(v.step, []).append(v.invariant)
    events: list[tuple[int, int, str]] = []
    for job, truth in record.truth.items():
        for t, state in truth.transitions:
            events.append((t, 0, f"{'[queue]':<24} {job} {state}"))
    for step in record.steps:
        mark = f"   <-- {', '.join(marks[step.index])}" if step.index in marks else ""
        events.append((step.executed_us, 1, f"{step.actor:<24} {step_line(step, record.lifecycle)}{mark}"))
    lines = [header] if header else []
    lines.append(f"{'time ms':>10}  {'actor':<24} operation -> result")
    for t, _, text in sorted(events, key=lambda e: (e[0], e[1])):
        lines.append(f"{t / 1000:>10.3f}  {text}")
    return "\n".join(lines)


def transcript(
    record: RunRecord,
    violations: list[Violation] | tuple[Violation, ...],
    clocks: dict[str, Any] | None = None,
    header: str = "",
) -> str:
    """A counterexample as the isolation tester prints a permutation: one line per operation, in
    the order they ran: simulated time, the host's clock reading (``clocks``: host -> Clock; the
    database's ``now()`` for statements when not given), actor, the operation, and the row before
    and after. A violation is marked on the line that caused it; violations judged at the end
    follow the last line."""
    marks: dict[int, list[str]] = {}
    for v in violations:
        if v.step is not None:
            marks.setdefault(v.step, []).append(v.invariant)
    width = max([len(s.actor) for s in record.steps] + [5])
    lc = record.lifecycle
    lines = [header] if header else []
    lines.append(f"{'sim ms':>10}  {'host clock':<15}  {'actor':<{width}}  operation -> row before => row after")
    for step in record.steps:
        if clocks is not None and step.host in clocks:
            reading = clocks[step.host].read(step.executed_us)
        else:
            reading = step.clock_us if step.kind == "clock" else step.db_now_us
        clock = format_timestamp(reading) if reading is not None else ""
        if step.kind == "db":
            assert step.op is not None
            text = describe(step.op)
            if step.blocked_by:
                text += f" <waiting for {', '.join(step.blocked_by)} {step.waited_us / 1000:.3f} ms>"
            if step.error is not None:
                text += f" -> ERROR: {step.error[2]}"
            elif isinstance(step.op, Select):
                text += f" -> {row_summary(step.result, lc)}"
            elif step.op.__class__.__name__ in ("Insert", "Update", "Rpc") and step.result is None:
                text += " -> 0 rows"
            if step.op.__class__.__name__ in ("Insert", "Update", "Rpc"):
                text += f" | {row_summary(step.row_before, lc)} => {_changes(step.row_before, step.row_after, lc)}"
        else:
            text = step_line(step, lc)
        mark = f"   <-- VIOLATION {', '.join(marks[step.index])}" if step.index in marks else ""
        lines.append(f"{step.executed_us / 1000:>10.3f}  {clock:<15}  {step.actor:<{width}}  {text}{mark}")
    for v in violations:
        lines.append(f"{'':>10}  {'':<15}  {'(judged)':<{width}}  VIOLATION {v.line()}" if v.step is None else "")
    return "\n".join(line for line in lines if line != "")
