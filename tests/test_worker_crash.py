"""A worker process that dies mid-attempt (``workers.crash_probability``): its handlers stop where
they are (their sessions end, an open transaction rolls back), its jobs stall and are re-run; and
forced orders (searches, replays) stop them at the same true instant."""

from __future__ import annotations

import random

import pytest
from worlds import fingerprints, replayed_in_own_order, world_of

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.ordered import run_ordered
from sim.engine.world import World, case_from_world
from sim.judge.invariants import judge
from sim.search.trace import read
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Commit, Sleep, Update
from tracker.strategies import Strategy, load_strategy

#: One job on one worker, running 1 s; its worker's process dies 100 ms into every attempt.
DIES = (
    "[job]\ncount = 1\nduration = {{ fixed_ms = 1000 }}\n"
    "[workers]\nlock_duration_ms = 500\nstalled_interval_ms = 100\nmax_stalled_count = {stalls}\n"
    "crash_probability = {p}\ncrash_after = {{ fixed_ms = 100 }}\n"
)


def _late_writer(job, ctx):
    yield Sleep(500)  # the integration's delay: the process dies during it
    yield Update(job.id, {"status": "active"})


def test_a_dead_process_stops_its_handlers_and_its_job_stalls_until_the_limit(tmp_path):
    world = world_of(DIES.format(stalls=1, p=1), tmp_path, Strategy("late", "", on_active=_late_writer), run=True)
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

    world = world_of(DIES.format(stalls=0, p=1), tmp_path, Strategy("tx", "", on_active=on_active, job_view="snapshot"), run=True)
    wrote = [s for s in world.driver.steps if s.kind == "db" and type(s.op).__name__ == "Update"]
    assert len(wrote) == 1  # the update ran inside the transaction...
    assert world.backend.rows()["job-1"]["status"] == "waiting"  # ...and went with the session


def test_without_a_crash_the_key_changes_nothing(tmp_path):
    never = world_of(DIES.format(stalls=1, p=0), tmp_path, run=True)
    assert never.crashed == [] and never.jobs[0].outcome == "completed"


STOPPED = "stopped: its worker process died"
WORKER_CRASH = scenarios.load("worker-crash")


@pytest.mark.parametrize("name", ["naive", "three-layer", "atomic", "row-lock", "db-clock", "tracker.strategies.atomic:PARALLEL"])
def test_forced_order_following_a_simpy_run_stops_the_same_handlers_at_the_same_instant(name):
    strategy = load_strategy(name)
    stopped = 0
    for seed in range(6):
        r = replayed_in_own_order(WORKER_CRASH, strategy, seed)
        assert r.case.deaths == tuple(sorted(r.world.crashed))
        assert r.follow.skipped == r.follow.extra == 0
        assert fingerprints(r.again.record) == fingerprints(r.record)
        assert judge(r.again.record) == judge(r.record)
        stopped += sum(s.error is not None and s.error[2] == STOPPED for s in r.record.steps)
    assert stopped > 0  # the runs compared did stop handlers


class _Random:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choose(self, ready, position):
        return self.rng.choice(ready)


def test_in_any_forced_order_nothing_of_a_dead_process_reaches_the_server_after_its_death():
    strategy = load_strategy("row-lock")  # transactions: a death must release their locks
    checked = 0
    for seed in range(4):
        world = World(WORKER_CRASH, strategy, MemoryTracker(), seed)
        case = case_from_world(world, world.run(), WORKER_CRASH, seed)
        for order in range(5):
            run = run_ordered(case, strategy, MemoryTracker(), _Random(order), window_us=200_000)
            spawned = {a.name: a for a in case.actors}
            for step in run.record.steps:
                actor = spawned[step.actor.split("/")[0]]
                dead = [at for at, host in case.deaths if host == actor.host and actor.spawn_us < at]
                if not dead:
                    continue
                if step.kind == "error" and step.error is not None and step.error[2] == STOPPED:
                    assert step.executed_us == dead[0]
                    checked += 1
                else:
                    assert step.executed_us < dead[0], (step.actor, step.kind, step.executed_us, dead[0])
            assert run.record.steps  # every actor ended: no deadlock left behind by a dead holder
            assert not any(s.error and "deadlock" in s.error[2] for s in run.record.steps)
    assert checked > 0


def test_a_search_finds_what_a_death_leaves_and_its_trace_replays_it(tmp_path, capsys):
    out = tmp_path / "t.json"
    code = main(["explore", "worker-crash", "--strategy", "atomic", "--method", "pct", "--out", str(out)])
    assert code == 1, capsys.readouterr().err
    data = read(out)
    assert data["deaths"] and all(host.startswith("worker-") for _, host in data["deaths"])
    capsys.readouterr()
    assert main(["replay", str(out)]) == 1
    assert "REPRODUCED" in capsys.readouterr().out
