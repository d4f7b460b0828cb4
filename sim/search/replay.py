"""Replaying a trace: its handlers, re-run in the trace's schedule by the forced-order driver.

With the trace's own strategy a replay re-executes every operation with the values the handlers
saw and wrote (``exact``). With another strategy the schedule is followed as a priority order
(:class:`~sim.engine.ordered.FollowSchedule`): the k-th operation of each actor takes the place of that
actor's k-th recorded one; entries for operations the other handlers do not make are skipped,
and operations beyond the schedule run in the order the actors first appear in it. A replay
*reproduces* when an invariant the trace records as violated is violated again for the same
job (with ``strict``: when anything is violated).

The trace's own strategy is found from the trace alone: a built-in by name, a user's
``module:attr`` from the directory the trace recorded (:mod:`sim.runs.strategy_source`).

Imports ``sim`` modules and ``tracker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.engine.ordered import Case, FollowSchedule, OrderedRun, require_modelled, run_ordered
from sim.judge.invariants import Violation, judge
from sim.record.history import RunRecord, Step
from sim.runs.backends import BackendSpec, BackendUnavailable, close_backend, open_backend
from sim.runs.strategy_source import is_user, load_from
from sim.search.trace import TRACE_FORMAT, TraceError, case_from_data, record_from_data, structural_problem
from tracker.strategies import Strategy, StrategyNotFound


@dataclass(frozen=True)
class ReplayResult:
    case: Case
    run: OrderedRun
    strategy: str
    backend: str
    recorded: tuple[Violation, ...]
    violations: tuple[Violation, ...]
    reproduced: bool
    #: Every step re-executed with the recorded operation, answer, clock reading and times.
    exact: bool
    skipped: int
    extra: int
    #: What the reader should know (e.g. the strategy's file changed since the trace).
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        how = "exactly" if self.exact else f"as priorities ({self.skipped} entries skipped, {self.extra} operations beyond it)"
        verdict = "REPRODUCED" if self.reproduced else "not reproduced"
        lines = [f"replayed {self.run.ops} operations of the schedule {how} with strategy {self.strategy} on {self.backend}: {verdict}"]
        lines += [f"  {v.line()}" for v in self.violations]
        lines += list(self.notes)
        return "\n".join(lines)


def _fingerprint(step: Step) -> tuple[Any, ...]:
    return (step.actor, step.kind, step.op, step.result, step.error, step.clock_us, step.executed_us, step.replied_us)


def same_steps(a: RunRecord, b: RunRecord) -> bool:
    return [_fingerprint(s) for s in a.steps] == [_fingerprint(s) for s in b.steps]


def replay_data(
    data: dict[str, Any],
    strategy: Strategy | None = None,
    backend_spec: BackendSpec | None = None,
    strict: bool = False,
) -> ReplayResult:
    """Replay a trace document (``racetrack-trace/2``); raises :class:`TraceError` when it
    cannot be replayed and ``StrategyNotFound`` for an unknown strategy."""
    if data.get("format") != TRACE_FORMAT:
        raise TraceError(f"trace format {data.get('format')!r} cannot be replayed (replay needs {TRACE_FORMAT!r}: it has the schedule)")
    problem = structural_problem(data)
    if problem:
        raise TraceError(problem)
    if isinstance(data.get("params"), dict):
        require_modelled(data["params"], "the trace")
    try:
        case = case_from_data(data)
        recorded_record, recorded = record_from_data(data)
        schedule = [str(n) for n in data["schedule"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TraceError(f"malformed trace ({type(exc).__name__}: {exc})") from None
    ref = str(data["strategy"])
    notes: tuple[str, ...] = ()
    if strategy is None:
        strategy, note = load_from(ref, data.get("strategy_source"))
        own = True
        notes = (note,) if note else ()
    else:
        own = strategy.name == ref or (is_user(ref) and _loads_as(ref, data, strategy))
    spec = backend_spec or BackendSpec()
    try:
        backend = open_backend(spec, case.table)  # the table the trace was found on (None: the bundled one)
    except BackendUnavailable:
        raise
    except Exception as exc:  # an unknown kind: the user's environment, in one line
        raise BackendUnavailable(f"backend {spec.kind!r} is not available here ({type(exc).__name__}: {exc})") from None
    try:
        follow = FollowSchedule(schedule)
        run = run_ordered(case, strategy, backend, follow)
        name = backend.name
    finally:
        close_backend(backend)
    violations = judge(run.record).violations
    wanted = {(v.invariant, v.job) for v in recorded}
    got = {(v.invariant, v.job) for v in violations}
    reproduced = bool(violations) if strict else bool(wanted & got)
    unused = len(schedule) - follow.next  # entries the run never reached
    exact = own and follow.skipped == 0 and follow.extra == 0 and unused == 0 and same_steps(recorded_record, run.record)
    return ReplayResult(
        case, run, strategy.name, name, tuple(recorded), violations, reproduced, exact, follow.skipped, follow.extra, notes
    )


def _loads_as(ref: str, data: dict[str, Any], strategy: Strategy) -> bool:
    """Whether the trace's own strategy is ``strategy`` (a replay with it is exact)."""
    try:
        return load_from(ref, data.get("strategy_source"))[0] is strategy
    except StrategyNotFound:
        return False
