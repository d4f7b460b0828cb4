"""A worker process that dies mid-attempt (``workers.crash_probability``): its handlers stop where
they are (their sessions end, an open transaction rolls back), its jobs stall and are re-run, and
searches and replays refuse the world in one line rather than run it as if nobody died."""

from __future__ import annotations

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.ordered import UnmodelledWorld, require_modelled
from sim.engine.world import World
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Commit, Sleep, Update
from tracker.strategies import Strategy, load_strategy

#: One job on one worker, running 1 s; its worker's process dies 100 ms into every attempt.
DIES = (
    "[job]\ncount = 1\nduration = {{ fixed_ms = 1000 }}\n"
    "[workers]\nlock_duration_ms = 500\nstalled_interval_ms = 100\nmax_stalled_count = {stalls}\n"
    "crash_probability = {p}\ncrash_after = {{ fixed_ms = 100 }}\n"
)


def _world(text: str, tmp_path, strategy: Strategy) -> World:
    path = tmp_path / "crash.toml"
    path.write_text(text)
    world = World(scenarios.load(str(path)), strategy, MemoryTracker(), 0)
    world.run()
    return world


def _late_writer(job, ctx):
    yield Sleep(500)  # the integration's delay: the process dies during it
    yield Update(job.id, {"status": "active"})


def test_a_dead_process_stops_its_handlers_and_its_job_stalls_until_the_limit(tmp_path):
    world = _world(DIES.format(stalls=1, p=1), tmp_path, Strategy("late", "", on_active=_late_writer))
    job = world.jobs[0]
    assert [a.outcome for a in job.attempts] == ["stalled", "stalled"]  # re-run once, died again
    assert job.outcome == "failed" and len(world.crashed) == 2
    assert [sp.actor.event for sp in world.spawned] == ["created", "active", "active"]
    stopped = [s for s in world.driver.steps if s.kind == "error"]
    assert {s.actor for s in stopped} == {"job-1.active#1", "job-1.active#2"}
    assert all("worker process died" in s.error[2] for s in stopped)
    assert not any(s.kind == "db" and s.actor.startswith("job-1.active") for s in world.driver.steps)
    assert world.backend.rows()["job-1"]["status"] == "waiting"


def test_an_open_transaction_of_a_stopped_handler_rolls_back(tmp_path):
    def on_active(job, ctx):
        yield Begin()
        yield Update(job.id, {"status": "active"})
        yield Sleep(1000)  # the process dies here, 100 ms into the attempt
        yield Commit()

    world = _world(DIES.format(stalls=0, p=1), tmp_path, Strategy("tx", "", on_active=on_active, job_view="snapshot"))
    wrote = [s for s in world.driver.steps if s.kind == "db" and type(s.op).__name__ == "Update"]
    assert len(wrote) == 1  # the update ran inside the transaction...
    assert world.backend.rows()["job-1"]["status"] == "waiting"  # ...and went with the session


def test_without_a_crash_the_key_changes_nothing(tmp_path):
    never = _world(DIES.format(stalls=1, p=0), tmp_path, load_strategy("atomic"))
    assert never.crashed == [] and never.jobs[0].outcome == "completed"


def test_searches_and_replays_refuse_a_world_with_process_deaths(capsys):
    with pytest.raises(UnmodelledWorld, match="workers.crash_probability"):
        require_modelled({"workers.crash_probability": 0.3}, "x.toml")
    require_modelled({"workers.crash_probability": None}, "x.toml")  # unset: nothing to refuse
    code = main(["explore", "worker-crash", "--strategy", "atomic", "--no-database"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "do not model workers.crash_probability" in err
