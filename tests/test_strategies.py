"""What each built-in strategy does in the bundled scenarios, pinned by mechanism."""

from __future__ import annotations

import pytest

from sim import scenario as scenarios
from sim.runner import run_one
from tracker.ops import Update
from tracker.strategies import BUILTIN, load_strategy

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


@pytest.mark.parametrize("name", scenarios.bundled_names())
def test_atomic_never_violates_anything_in_any_bundled_scenario(name):
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
