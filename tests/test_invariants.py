"""Each invariant is a pure function of (history, rows, truth): it fires on a hand-written
violating history and stays quiet on the clean one. No SimPy, no backend."""

from __future__ import annotations

import json

import pytest

from sim.judge import invariants
from sim.judge.invariants import (
    INVARIANT_IDS,
    INVARIANTS,
    Invariant,
    Unknown,
    UnknownInvariant,
    judge,
    require_known,
    verdict_lines,
)
from sim.judge.violation import Violation
from sim.record.clocks import EPOCH_US
from sim.record.history import Attempt, JobTruth, RunRecord, Step
from tracker.ops import Insert, Update

MS = 1000


def ts(ms: float) -> int:
    return EPOCH_US + round(ms * MS)


def row(**changes):
    base = {
        "job_id": "job-1", "status": "waiting", "attempts": 0, "max_attempts": 1,
        "created_at": ts(0), "updated_at": ts(0), "started_at": None, "completed_at": None,
        "failed_at": None, "error_message": None, "progress": None, "cancelled": False, "cancelled_at": None,
    }
    base.update(changes)
    return base


def write(index, at_ms, after, before=None, actor="job-1.active#1", error=None, op=None):
    """A committed autocommit write (or a rejected one, with ``error``)."""
    return Step(
        index=index, actor=actor, job_id="job-1", event=actor.split(".")[1].split("#")[0], host="worker-1",
        kind="db", op=op or Update("job-1", {}), sent_us=round(at_ms * MS) - 1, executed_us=round(at_ms * MS),
        replied_us=round(at_ms * MS) + 1,
        error=("23514", "job_status_timestamps_check", "rejected") if error else None,
        row_before=before, row_after=before if error else after,
        result=None if error else after, committed=() if error else (after,),
    )


TRUTH = JobTruth(
    job_id="job-1", created_us=0, max_attempts=1,
    attempts=(Attempt("job-1", 1, 1, "worker-1", 10 * MS, 60 * MS, "completed"),),
    transitions=((0, "waiting"), (10 * MS, "active"), (60 * MS, "completed")),
    outcome="completed", outcome_us=60 * MS,
)

CREATED = row()
ACTIVE = row(status="active", attempts=1, started_at=ts(10))
COMPLETED = row(status="completed", attempts=1, started_at=ts(10), completed_at=ts(60))


def record(steps, final, truth=TRUTH, tolerance_ms=20):
    return RunRecord(steps=tuple(steps), rows={"job-1": final}, truth={"job-1": truth},
                     tolerance_us=tolerance_ms * MS, end_us=1000 * MS)


CLEAN = record(
    [write(0, 1, CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
     write(1, 12, ACTIVE, CREATED),
     write(2, 62, COMPLETED, ACTIVE, actor="job-1.completed#1")],
    COMPLETED,
)


def ids(rec):
    return {v.invariant for v in judge(rec).violations}


def test_the_clean_history_violates_nothing():
    assert judge(CLEAN).violations == ()


def test_no_rejected_writes_fires_on_a_rejected_statement():
    rec = record(list(CLEAN.steps) + [write(3, 500, None, COMPLETED, error=True)], COMPLETED)
    (violation,) = judge(rec).violations
    assert violation.invariant == "no-rejected-writes" and violation.step == 3
    assert "job_status_timestamps_check" in violation.detail


def test_ordered_timestamps_fires_when_completed_precedes_created_without_a_start():
    bad = row(status="completed", completed_at=ts(-5))
    rec = record([write(0, 1, CREATED), write(1, 62, bad, CREATED, actor="job-1.completed#1")], bad)
    assert "ordered-timestamps" in ids(rec)
    assert "ordered-timestamps" not in ids(CLEAN)


def test_terminal_status_fires_when_a_completed_job_is_left_active():
    stuck = row(status="active", attempts=1, started_at=ts(10), completed_at=ts(60))
    rec = record(list(CLEAN.steps) + [write(3, 510, stuck, COMPLETED)], stuck)
    assert "terminal-status" in ids(rec)


def test_monotonic_status_fires_on_completed_then_active_but_not_on_a_retry():
    regressed = row(status="active", attempts=1, started_at=ts(10), completed_at=ts(60))
    rec = record(list(CLEAN.steps) + [write(3, 510, regressed, COMPLETED)], COMPLETED)
    assert [v.step for v in judge(rec).violations if v.invariant == "monotonic-status"] == [3]
    retry_truth = JobTruth(
        job_id="job-1", created_us=0, max_attempts=2,
        attempts=(Attempt("job-1", 1, 1, "worker-1", 10 * MS, 20 * MS, "failed"),
                  Attempt("job-1", 2, 2, "worker-1", 1020 * MS, 1060 * MS, "completed")),
        transitions=((0, "waiting"), (10 * MS, "active"), (20 * MS, "failed"), (20 * MS, "delayed"),
                     (1020 * MS, "waiting"), (1020 * MS, "active"), (1060 * MS, "completed")),
        outcome="completed", outcome_us=1060 * MS,
    )
    failed = row(status="failed", attempts=1, max_attempts=2, started_at=ts(10), failed_at=ts(20))
    again = dict(failed, status="active", attempts=2)
    rec = record([write(0, 21, failed), write(1, 1021, again, failed)], again, truth=retry_truth)
    assert "monotonic-status" not in ids(rec)


def test_first_start_kept_fires_when_started_at_is_overwritten():
    moved = dict(ACTIVE, started_at=ts(15))
    rec = record([write(0, 12, ACTIVE), write(1, 20, moved, ACTIVE)], moved)
    assert [v.invariant for v in judge(rec).violations if v.invariant == "first-start-kept"] == ["first-start-kept"]


def test_faithful_timestamps_fires_outside_tolerance_and_on_a_missing_start():
    late = dict(COMPLETED, completed_at=ts(60 + 25))
    assert "faithful-timestamps" in ids(record(CLEAN.steps, late, tolerance_ms=20))
    assert "faithful-timestamps" not in ids(record(CLEAN.steps, late, tolerance_ms=30))
    missing = dict(COMPLETED, started_at=None)
    (v,) = [v for v in judge(record(CLEAN.steps, missing)).violations if v.invariant == "faithful-timestamps"]
    assert "started_at is NULL" in v.detail


def test_accurate_attempts_fires_when_attempts_is_not_the_number_started():
    assert "accurate-attempts" in ids(record(CLEAN.steps, dict(COMPLETED, attempts=0)))


def test_every_invariant_has_a_test_that_makes_it_fire():
    tested = {name.split("test_")[1].split("_fires")[0].replace("_", "-") for name in globals() if "_fires" in name}
    assert tested == set(INVARIANT_IDS)
    assert [i.id for i in INVARIANTS] == list(INVARIANT_IDS)


@pytest.mark.parametrize("invariant", INVARIANTS, ids=lambda i: i.id)
def test_each_violation_is_one_line_naming_the_job(invariant):
    bad_rows = [dict(COMPLETED, attempts=0, status="active", completed_at=ts(-5), started_at=None)]
    rec = record(list(CLEAN.steps) + [write(3, 500, None, COMPLETED, error=True)], bad_rows[0])
    for v in invariant.check(rec):
        assert "\n" not in v.line() and v.line().startswith(f"{invariant.id}: job-1: ")


def test_monotonic_status_reads_an_initial_delay_as_older_than_the_first_start():
    truth = JobTruth(
        job_id="job-1", created_us=0, max_attempts=1,
        attempts=(Attempt("job-1", 1, 1, "worker-1", 150 * MS, 160 * MS, "completed"),),
        transitions=((0, "delayed"), (150 * MS, "waiting"), (150 * MS, "active"), (160 * MS, "completed")),
        outcome="completed", outcome_us=160 * MS,
    )
    delayed = row(status="delayed")
    active = row(status="active", attempts=1, started_at=ts(150))
    rec = record([write(0, 1, delayed), write(1, 155, active, delayed)], active, truth=truth)
    assert "monotonic-status" not in ids(rec)


def test_a_violation_carries_the_values_that_broke_the_invariant():
    moved = dict(ACTIVE, started_at=ts(15))
    (v,) = [v for v in judge(record([write(0, 12, ACTIVE), write(1, 20, moved, ACTIVE)], moved)).violations
            if v.invariant == "first-start-kept"]
    assert dict(v.facts) == {"actor": "job-1.active#1", "first": ts(10), "now": ts(15)}
    assert v.at_us == 20 * MS and v.step == 1


def test_faithful_timestamps_facts_name_each_column_with_recorded_and_true_times():
    late = dict(COMPLETED, completed_at=ts(60 + 25))
    (v,) = [v for v in judge(record(CLEAN.steps, late, tolerance_ms=20)).violations if v.invariant == "faithful-timestamps"]
    assert v.facts["tolerance_us"] == 20 * MS
    assert v.facts["columns"] == [{"column": "completed_at", "recorded": ts(85), "true_us": [60 * MS], "error_us": 25 * MS}]
    assert v.detail == "completed_at off by +25.000 ms (tolerance 20.000 ms)"


def test_a_violation_reads_back_from_its_trace_data_equal_and_an_old_one_keeps_its_sentence():
    rec = record(list(CLEAN.steps) + [write(3, 500, None, COMPLETED, error=True)], COMPLETED)
    for v in judge(rec).violations:
        data = json.loads(json.dumps(v.to_data()))
        assert Violation.from_data(data) == v and data["detail"] == v.detail
        old = {k: data[k] for k in ("invariant", "job", "detail", "at_us", "step")}
        assert Violation.from_data(old).line() == v.line()


def _raises(record):
    raise RuntimeError("checker bug\nsecond line")


def test_a_checker_that_raises_makes_its_invariant_unknown_and_the_others_still_judge(monkeypatch):
    broken = list(INVARIANTS)
    index = INVARIANT_IDS.index("ordered-timestamps")
    broken[index] = Invariant("ordered-timestamps", broken[index].summary, _raises)
    monkeypatch.setattr(invariants, "INVARIANTS", tuple(broken))
    rec = record(list(CLEAN.steps) + [write(3, 500, None, COMPLETED, error=True)], dict(COMPLETED, attempts=0))
    judged = judge(rec)
    assert judged.unknown == (Unknown("ordered-timestamps", "RuntimeError: checker bug"),)
    assert {v.invariant for v in judged.violations} == {"no-rejected-writes", "accurate-attempts"}
    lines = verdict_lines(judged.violations, judged.unknown)
    assert lines[0] == "verdict: 2 violation(s)" and lines[-1] == "unknown: ordered-timestamps: RuntimeError: checker bug"
    assert verdict_lines((), judged.unknown)[0].startswith("verdict: no violation found, but 1 of 7")


def test_an_unknown_invariant_is_named_in_one_wording():
    with pytest.raises(UnknownInvariant) as caught:
        require_known(["terminal-status", "no-such"], "--invariant")
    assert str(caught.value) == f"--invariant: unknown invariant 'no-such' (known: {', '.join(INVARIANT_IDS)})"
    require_known(INVARIANT_IDS, "anywhere")  # every real ID passes
