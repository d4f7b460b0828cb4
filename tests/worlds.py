"""Helpers the tests share: a SimPy world from a few lines of scenario TOML, and a run replayed in
its own order by the forced-order driver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.engine import scenario as scenarios
from sim.engine.ordered import Case, FollowSchedule, OrderedRun, run_ordered, schedule_of
from sim.engine.scenario import Scenario
from sim.engine.world import World, case_from_world
from sim.record.history import RunRecord
from tracker.memory import MemoryTracker
from tracker.strategies import Strategy, load_strategy


def world_of(text: str, tmp_path: Any, strategy: Strategy | None = None, seed: int = 0, run: bool = False) -> World:
    """The world of a scenario file holding ``text`` (``strategy``: default ``atomic``), run
    already when ``run``."""
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    world = World(scenarios.load(str(path)), strategy or load_strategy("atomic"), MemoryTracker(), seed)
    if run:
        world.run()
    return world


def fingerprints(record: RunRecord) -> list[tuple[Any, ...]]:
    """What must agree between a run and its replay, step by step."""
    return [(s.actor, s.kind, s.op, s.result, s.error, s.clock_us, s.executed_us, s.replied_us) for s in record.steps]


@dataclass(frozen=True)
class Replayed:
    """A SimPy run (``world``, ``record``, its ``case``) and ``again``: the forced-order run that
    followed its own arrival order (``follow``: how closely)."""

    world: World
    record: RunRecord
    case: Case
    again: OrderedRun
    follow: FollowSchedule


def replayed_in_own_order(scenario: Scenario, strategy: Strategy, seed: int) -> Replayed:
    world = World(scenario, strategy, MemoryTracker(scenario.table), seed)
    record = world.run()
    case = case_from_world(world, record, scenario, seed)
    follow = FollowSchedule(list(schedule_of(record)))
    again = run_ordered(case, strategy, MemoryTracker(scenario.table), follow)
    return Replayed(world, record, case, again, follow)
