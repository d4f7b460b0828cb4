"""What each built-in strategy does in the bundled scenarios, pinned by mechanism."""

from __future__ import annotations

import pytest

from sim.engine import scenario as scenarios
from sim.engine.distributions import parse_dist
from sim.runs.runner import run_one
from tracker.ops import Begin, Commit, Select, Sleep, Update
from tracker.strategies import BUILTIN, Strategy, load_strategy

SEED_SCENARIO = scenarios.load("seed-fast-jobs")


def test_naive_rejects_write_when_active_lands_after_completed():
    result = run_one(SEED_SCENARIO, load_strategy("naive"), seed=7)
    rejected = [s for s in result.record.steps if s.kind == "db" and s.rejected]
    assert rejected, "naive should be rejected in seed-fast-jobs"
    for step in rejected:
        # The late 'active' handler's UPDATE, on a row its sibling handler already finished.
        assert step.event == "active" and isinstance(step.op, Update)
        assert step.error is not None and step.error[1] == "job_status_timestamps_check"
        before = step.row_before
        assert before is not None and before["status"] in ("completed", "failed")
        finished_at = before["completed_at"] or before["failed_at"]
        assert step.op.set["started_at"] > finished_at  # it would start after it finished
        earlier = [s for s in result.record.steps if s.job_id == step.job_id and s.index < step.index
                   and s.event in ("completed", "failed") and isinstance(s.op, Update)]
        assert earlier, "the completing handler's write landed first"


def test_three_layer_leaves_fast_completed_jobs_active():
    result = run_one(SEED_SCENARIO, load_strategy("three-layer"), seed=7)
    stuck = [v for v in result.violations if v.invariant == "terminal-status"]
    assert stuck and all("final status is 'active'" in v.detail for v in stuck)
    # ...and its started_at is the fabricated created_at + 1 ms, not the true start.
    some_job = stuck[0].job
    row = result.record.rows[some_job]
    assert row["started_at"] == row["created_at"] // 1000 * 1000 + 1000


def test_row_lock_serializes_with_real_lock_waits_when_handlers_overlap():
    overlapping = SEED_SCENARIO.with_values({"handlers.active_delay_ms": 300.0})
    waits = 0
    for seed in range(20):
        result = run_one(overlapping, load_strategy("row-lock"), seed)
        waits += sum(1 for s in result.record.steps if s.blocked_by)
        assert not [v for v in result.violations if v.invariant == "monotonic-status"]
    assert waits > 0


def test_row_lock_is_rejected_when_a_worker_clock_is_behind_the_database():
    # Locking orders the handlers, not the clocks: processedOn before created_at breaks the CHECK.
    rejected = [
        v for seed in range(20)
        for v in run_one(SEED_SCENARIO, load_strategy("row-lock"), seed).violations
        if v.invariant == "no-rejected-writes"
    ]
    assert rejected and all("job_status_timestamps_check" in v.detail for v in rejected)


@pytest.mark.parametrize("name", [n for n in scenarios.bundled_names() if scenarios.load(n).expect.get("atomic") == "clean"])
def test_atomic_never_violates_anything_in_any_bundled_scenario(name):
    """Wherever a scenario expects it clean: every bundled one but those whose listeners miss
    events (``queue-events``: no handler writes what it never hears)."""
    scenario = scenarios.load(name)
    atomic = load_strategy("atomic")
    for seed in range(250):
        result = run_one(scenario, atomic, seed)
        assert result.violations == (), (seed, [v.line() for v in result.violations])
        assert result.crashes == ()


def test_same_seed_gives_the_same_world_to_every_strategy():
    truths = [run_one(SEED_SCENARIO, load_strategy(n), seed=3).record.truth for n in BUILTIN]
    assert all(t == truths[0] for t in truths)


def test_a_run_is_deterministic():
    a = run_one(SEED_SCENARIO, load_strategy("naive"), seed=11)
    b = run_one(SEED_SCENARIO, load_strategy("naive"), seed=11)
    assert a.record.steps == b.record.steps and a.row() == b.row()



def lock_both_rows(first: str, second: str):
    def handler(job, ctx):
        yield Begin()
        yield Select(first, for_update=True)
        yield Sleep(50)
        yield Select(second, for_update=True)
        yield Commit()

    return handler


def test_a_deadlock_between_user_handlers_is_reported_not_hidden():
    two_rows = SEED_SCENARIO.with_values({
        "job.count": 2, "job.fail_probability": 0.0,
        "job.interarrival": parse_dist({"fixed_ms": 0}), "job.duration": parse_dist({"fixed_ms": 10}),
    })
    opposite_orders = Strategy(
        name="deadlock", summary="locks two rows in opposite orders",
        on_active=lock_both_rows("job-1", "job-2"), on_completed=lock_both_rows("job-2", "job-1"),
    )
    result = run_one(two_rows, opposite_orders, seed=1)
    assert any(c.startswith("deadlock: ") for c in result.crashes), result.crashes


def test_atomic_keeps_a_removal_that_lands_before_the_last_attempts_failed_handler():
    # Found by Hypothesis: a job removed while waiting for its retry; the 'removed' statement
    # reached the database before the 'failed' statement of the attempt that just ended.
    race = scenarios.from_mapping({
        "job": {"count": 3, "interarrival": {"fixed_ms": 0}, "duration": {"fixed_ms": 164.875},
                "fail_probability": 1.0, "attempts": 2},
        "backoff": {"type": "none"},
        "workers": {"concurrency": 2},
        "cancel": {"probability": 1.0, "after": {"fixed_ms": 165}},
        "handlers": {"active_delay_ms": 0, "completed_delay_ms": 0},
        "network": {"db_rtt": {"min_ms": 1, "max_ms": 2}},
        "clocks": {"max_offset_ms": 0, "max_drift_ppm": 0},
    }, "removal-race", "<test>")
    result = run_one(race, load_strategy("atomic"), seed=0)
    removed_first = [s for s in result.record.steps if s.event == "removed"]
    failed_later = [s for s in result.record.steps if s.event == "failed" and s.job_id == "job-3"]
    assert removed_first and failed_later and removed_first[-1].executed_us < failed_later[-1].executed_us
    assert result.violations == ()
    assert result.record.rows["job-3"]["cancelled"] is True


def test_atomic_marks_a_job_removed_after_a_stall_as_waiting_not_active():
    # Found by Hypothesis: the stalled run's 'active' was the row's last word, no event said the
    # job went back to wait, and the removal kept the stale status.
    stalled_then_removed = scenarios.from_mapping({
        "job": {"count": 1, "duration": {"fixed_ms": 100}},
        "workers": {"lock_duration_ms": 50, "stalled_interval_ms": 10, "max_stalled_count": 1},
        "stalls": {"probability": 1.0},
        "cancel": {"probability": 1.0, "after": {"fixed_ms": 70}},
        "handlers": {"active_delay_ms": 0},
    }, "stall-removal", "<test>")
    result = run_one(stalled_then_removed, load_strategy("atomic"), seed=0)
    assert result.record.truth["job-1"].outcome == "removed"
    assert [a.outcome for a in result.record.truth["job-1"].attempts] == ["stalled"]
    assert result.violations == ()
    assert result.record.rows["job-1"]["status"] == "waiting" and result.record.rows["job-1"]["cancelled"] is True


def test_atomic_keeps_the_first_start_when_a_later_attempts_statement_arrives_first():
    # Found by Hypothesis: a one-way latency longer than a whole attempt (cross-region, fast
    # jobs) lets attempt 2's 'active' reach the database before attempt 1's statements.
    reordering = scenarios.from_mapping({
        "job": {"count": 3, "interarrival": {"fixed_ms": 0}, "duration": {"fixed_ms": 5},
                "fail_probability": 1.0, "attempts": 3},
        "backoff": {"type": "none"},
        "workers": {"concurrency": 3},
        "handlers": {"active_delay_ms": 0, "completed_delay_ms": 0},
        "network": {"db_rtt": {"min_ms": 1, "max_ms": 200}},
    }, "reordering", "<test>")
    atomic, reordered = load_strategy("atomic"), 0
    for seed in range(60):
        result = run_one(reordering, atomic, seed)
        assert result.violations == (), [v.line() for v in result.violations]
        for job in result.record.truth:
            writes = [s for s in result.record.steps if s.job_id == job and s.event != "created" and s.kind == "db"]
            first = min(writes, key=lambda s: s.executed_us)
            reordered += first.actor != f"{job}.active#1"
    assert reordered > 0  # the mechanism really happened


def test_a_job_failed_by_the_stall_checker_keeps_its_real_start():
    # Found by Hypothesis: the stall checker's 'failed' event carried no processedOn, and atomic
    # recorded the row's creation as the start. BullMQ keeps processedOn on the job.
    stall_fails = scenarios.from_mapping({
        "job": {"count": 2, "interarrival": {"fixed_ms": 0}, "duration": {"fixed_ms": 1}},
        "workers": {"lock_duration_ms": 50, "stalled_interval_ms": 10, "max_stalled_count": 0},
        "stalls": {"probability": 0.5},
        "handlers": {"active_delay_ms": 0, "completed_delay_ms": 0},
        "network": {"db_rtt": {"median_ms": 164, "p99_ms": 1640}},
        "clocks": {"max_offset_ms": 0, "max_drift_ppm": 0},
    }, "stall-failure", "<test>")
    result = run_one(stall_fails, load_strategy("atomic"), seed=0)
    failed_by_checker = [s for s in result.record.steps if s.event == "failed" and s.kind == "db"]
    assert failed_by_checker
    assert result.record.truth["job-2"].outcome == "failed"
    assert result.violations == ()
