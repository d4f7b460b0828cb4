"""Cancelling an active job: refused by default (BullMQ's remove), aborted with
``cancel.active = "abort"`` (the attempt fails at the cancel, for good, with an abort reason)."""

from __future__ import annotations

from worlds import world_of

from sim.engine.world import ABORT_REASON

#: One job, running 1 s, cancelled 300 ms after it was added: it is active then.
RUNNING = (
    "[job]\ncount = 1\nduration = { fixed_ms = 1000 }\nattempts = 3\n"
    "[cancel]\nprobability = 1\nafter = { fixed_ms = 300 }\n"
)


def test_a_cancel_that_finds_the_job_active_is_refused_by_default(tmp_path):
    world = world_of(RUNNING, tmp_path, run=True)
    job = world.jobs[0]
    assert job.outcome == "completed"
    assert [e.actor.event for e in world.spawned] == ["created", "active", "completed"]


def test_abort_ends_the_attempt_at_the_cancel_as_failed_without_retry(tmp_path):
    world = world_of(RUNNING + 'active = "abort"\n', tmp_path, run=True)
    job = world.jobs[0]
    assert job.outcome == "failed" and job.attempts_made == 1 and len(job.attempts) == 1
    attempt = job.attempts[0]
    assert attempt.outcome == "failed" and attempt.end_us - attempt.start_us < 1_000_000
    failed = [sp for sp in world.spawned if sp.actor.event == "failed"]
    assert len(failed) == 1 and failed[0].view.failed_reason == ABORT_REASON and not failed[0].view.will_retry
    assert world.driver.backend.rows()[job.id]["status"] == "failed"
