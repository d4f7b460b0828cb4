"""A bug zoo: strategies with planted races of known depth and known preconditions, and correct
ones, to measure what the searches find (tests/test_bug_zoo.py, benchmarks/time_to_bug.py).

Each planted strategy is ``atomic`` (correct in every order) with one handler changed, so a
violation can only come from the planted bug:

* ``chain-d`` (d = 1..4): active writes a progress marker ``{"a": 1}``, ``{"a": 2}``, ... after its
  status; completed reads the row before writing and, when its reads saw exactly the markers
  ``none, 1, 2, ...`` in turn, marks the job failed (``terminal-status``). Seeing that needs the
  completed handler's reads and the active handler's writes to alternate: ``C1 < A1`` (depth 1),
  ``C1 < A1 < C2`` (2), ``C1 < A1 < C2 < A2`` (3), ``C1 < A1 < C2 < A2 < C3`` (4). Active fires
  first, so the natural order (all of A before C) never shows it.
* ``rare-window``: completed waits 25 ms, reads, and marks the job failed when the row is not
  active yet: active's write must arrive more than the job plus 25 ms late.
* ``stall-reset``: a stall resets the row to waiting without a guard; its late write after the
  re-run's outcome leaves the job waiting. Needs a world with a stall.
* ``retry-restart``: a retry's active handler overwrites ``started_at`` (``first-start-kept``):
  needs a world with a retry (one attempt in twenty fails here).
* ``cancel-completes``: the removal handler marks the job completed (``terminal-status``): needs
  a world with a cancellation (one job in fifty here).
* ``clock-step``: completed stamps ``completed_at`` with the database's ``now()`` while active took
  ``started_at`` from the job's record: correct on a steady clock (a job takes hundreds of ms),
  rejected by the CHECK when an NTP correction steps the database's clock back past the job's
  duration between the two writes (``no-rejected-writes``): needs a world with a clock step. (It
  has no correct twin here: ``now()`` at arrival also breaks ``faithful-timestamps`` when a search
  holds the statement back, as ``db-clock`` does.)

``chain-safe`` makes chain-4's operations without its planted branch; it and ``atomic`` must show
nothing (the searches add no false alarms of their own).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sim.engine import scenario as scenarios
from sim.engine.distributions import Dist
from sim.engine.scenario import Scenario
from tracker.ops import Coalesce, Col, DbNow, Greatest, Handler, Select, Sleep, Update
from tracker.strategies import HandlerContext, JobView, Strategy
from tracker.strategies import atomic as atomic_module

ATOMIC = atomic_module.STRATEGY


def _chain(depth: int, planted: bool = True) -> Strategy:
    reads = depth // 2 + 1  # completed's reads: C1..Cn
    writes = (depth + 1) // 2  # active's markers: A1..Am

    def active(job: JobView, ctx: HandlerContext) -> Handler:
        yield from atomic_module.mark_job_active(job, ctx)
        for i in range(1, writes + 1):
            yield Update(job.id, {"progress": {"a": i}})

    def completed(job: JobView, ctx: HandlerContext) -> Handler:
        seen = []
        for _ in range(reads):
            row = yield Select(job.id)
            marker = (row or {}).get("progress")
            seen.append(marker.get("a") if isinstance(marker, dict) else None)
        if planted and seen == [None, *range(1, reads)]:
            yield Update(job.id, {"status": "failed", "failed_at": Coalesce(Col("started_at"), Col("created_at"))})
            return
        yield from atomic_module.mark_job_completed(job, ctx)

    name = f"chain-{depth}" if planted else "chain-safe"
    return replace(ATOMIC, name=name, summary=f"planted race of depth {depth}", on_active=active, on_completed=completed)


def _rare_window_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Sleep(25)
    row = yield Select(job.id)
    if row is not None and row["status"] == "waiting":
        yield Update(job.id, {"status": "failed"})
        return
    yield from atomic_module.mark_job_completed(job, ctx)


def _stall_reset(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(job.id, {"status": "waiting"})


def _retry_restart(job: JobView, ctx: HandlerContext) -> Handler:
    yield from atomic_module.mark_job_active(job, ctx)
    if job.attempt > 1:  # a retry overwrites the first start
        yield Update(job.id, {"started_at": Greatest(Col("created_at"), job.processed_on_us)})


def _clock_step_completed(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(job.id, {"status": "completed", "completed_at": DbNow()})


def _cancel_completes(job: JobView, ctx: HandlerContext) -> Handler:
    yield Update(job.id, {"status": "completed", "cancelled": True, "completed_at": Col("created_at")})


@dataclass(frozen=True)
class PlantedBug:
    """A zoo strategy, the scenario it lives in (with ``values`` changed), the invariant its bug
    breaks (None: any, or for a correct one nothing), and what finding it needs."""

    strategy: Strategy
    scenario: str
    breaks: str | None
    needs: str
    values: dict[str, Any] = field(default_factory=dict, hash=False)

    def load(self) -> Scenario:
        return scenarios.load(self.scenario).with_values(self.values)


#: Jobs that take 60 ms: active's statements naturally all land before completed's.
STEADY = {"job.duration": Dist("fixed", 60.0), "job.fail_probability": 0.0}

ZOO: tuple[PlantedBug, ...] = (
    *(PlantedBug(_chain(d), "seed-fast-jobs", "terminal-status", f"a depth-{d} order", STEADY) for d in (1, 2, 3, 4)),
    PlantedBug(replace(ATOMIC, name="rare-window", on_completed=_rare_window_completed), "seed-fast-jobs",
               "terminal-status", "active held back past the job and 25 ms", {"job.fail_probability": 0.0}),
    PlantedBug(replace(ATOMIC, name="stall-reset", on_stalled=_stall_reset), "stalled-redelivery",
               "monotonic-status", "a stall, and its write late"),
    PlantedBug(replace(ATOMIC, name="retry-restart", on_active=_retry_restart), "retry-backoff",
               None, "a retry", {"job.fail_probability": 0.05, "job.count": 1}),
    PlantedBug(replace(ATOMIC, name="cancel-completes", on_removed=_cancel_completes), "cancel-waiting",
               "terminal-status", "a cancellation", {"cancel.probability": 0.02}),
    PlantedBug(replace(ATOMIC, name="clock-step", on_completed=_clock_step_completed), "ntp-step",
               "no-rejected-writes", "a clock stepped back", {**STEADY, "job.duration": Dist("fixed", 300.0)}),
)
CORRECT: tuple[PlantedBug, ...] = (
    PlantedBug(_chain(4, planted=False), "seed-fast-jobs", None, "nothing", STEADY),
    PlantedBug(ATOMIC, "seed-fast-jobs", None, "nothing"),
    PlantedBug(ATOMIC, "stalled-redelivery", None, "nothing"),
    PlantedBug(ATOMIC, "retry-backoff", None, "nothing"),
)
