"""Operations a forced order adds (which the SimPy run never made) take their latencies from the
world's round-trip distribution, seeded, not a fixed typical latency."""

from __future__ import annotations

from dataclasses import replace

from sim.engine import scenario as scenarios
from sim.engine.ordered import FirstReady, FollowSchedule, run_ordered, schedule_of
from sim.engine.world import case_from_world
from sim.search.explore import _simulate
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs").with_values({"job.count": 2})


def _latencies(run) -> list[tuple[int, int]]:
    return [(s.executed_us - s.waited_us - s.sent_us, s.replied_us - s.executed_us) for s in run.record.steps if s.kind == "db"]


def test_an_added_operation_draws_what_the_world_would_have_drawn() -> None:
    # Forget every recorded latency: the forced-order driver must draw each one again from the
    # actor's own seeded network stream, so following the SimPy run's order gives that run back.
    st = load_strategy("naive")
    world, record = _simulate(SEED_FAST, st, 4)
    case = case_from_world(world, record, SEED_FAST, 4)
    forgotten = replace(case, actors=tuple(replace(a, latencies=()) for a in case.actors))
    again = run_ordered(forgotten, st, MemoryTracker(), FollowSchedule(list(schedule_of(record))))
    recorded = run_ordered(case, st, MemoryTracker(), FollowSchedule(list(schedule_of(record))))
    assert _latencies(again) == _latencies(recorded)
    assert len(set(_latencies(again))) > 1  # not one typical latency for every operation


def test_added_operations_follow_the_distribution_and_are_deterministic() -> None:
    st = load_strategy("three-layer")
    world, record = _simulate(SEED_FAST, st, 2)
    case = case_from_world(world, record, SEED_FAST, 2)
    bare = replace(case, actors=tuple(replace(a, latencies=()) for a in case.actors))
    first = _latencies(run_ordered(bare, st, MemoryTracker(), FirstReady()))
    second = _latencies(run_ordered(bare, st, MemoryTracker(), FirstReady()))
    assert first == second
    # Replies are never held back: each is exactly the latency the driver took.
    assert len({reply for _, reply in first}) > 1
    rtt = SEED_FAST.dist("network.db_rtt")
    # Each one-way draw is half a round trip: within the log-normal's reach, around its median.
    assert all(0 < r + p < 20 * rtt.b * 1000 for r, p in first)
