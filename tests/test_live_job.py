"""The live Job object: by default a handler's ``job`` is the worker's own instance, whose
``attempts_made``, ``finished_on_us``, ``failed_reason`` and ``progress`` change after the event;
``job.at_event()`` and ``Strategy(job_view="snapshot")`` give the job as it was."""

from __future__ import annotations

from dataclasses import replace

from worlds import world_of

from sim.engine.ordered import FirstReady, run_ordered
from sim.engine.world import case_from_world
from tracker.memory import MemoryTracker
from tracker.ops import Sleep, Update
from tracker.strategies import BUILTIN, JobView, Strategy, load_strategy

SEEN: list[tuple[str, object, object]] = []


def reads_after_the_attempt(job: JobView, ctx):
    before = (job.attempts_made, job.finished_on_us, job.failed_reason)
    yield Sleep(1000)
    after = (job.attempts_made, job.finished_on_us, job.failed_reason)
    SEEN.append((job.id, before, after))
    SEEN.append((job.id, "at_event", job.at_event().attempts_made if hasattr(job, "at_event") else None))


FAILING = "[job]\ncount = 1\nduration = { fixed_ms = 50 }\nfail_probability = 1\nattempts = 1\n"


def test_a_live_job_read_after_the_attempt_ended_says_what_the_instance_says_then(tmp_path):
    SEEN.clear()
    world_of(FAILING, tmp_path, Strategy("probe", "", on_active=reads_after_the_attempt)).run()
    (_, before, after), (_, _, at_event) = SEEN
    assert before == (0, None, None)
    assert after[0] == 1 and after[1] is not None and after[2] == "attempt 1 failed"
    assert at_event == 0


def test_a_snapshot_strategy_reads_the_job_as_it_was_at_the_event(tmp_path):
    SEEN.clear()
    world_of(FAILING, tmp_path, Strategy("probe", "", on_active=reads_after_the_attempt, job_view="snapshot")).run()
    (_, before, after), _ = SEEN
    assert before == after == (0, None, None)


def test_every_built_in_reads_the_snapshot_it_was_written_for():
    assert {load_strategy(name).job_view for name in BUILTIN} == {"snapshot"}


def test_a_forced_order_run_reads_the_live_job_at_the_actors_own_time(tmp_path):
    live = load_strategy("tracker.strategies.naive:LIVE")
    world = world_of("[job]\ncount = 1\nduration = { fixed_ms = 50 }\n[handlers]\ncompleted_delay_ms = 1000\n", tmp_path, live)
    record = world.run()
    case = case_from_world(world, record, world.scenario, 0)
    for strategy, attempts in ((live, 2), (replace(live, job_view="snapshot"), 1)):
        run = run_ordered(case, strategy, MemoryTracker(), FirstReady())
        written = [s.op.set["attempts"] for s in run.record.steps if isinstance(s.op, Update) and "attempts" in s.op.set]
        assert written == [attempts]
