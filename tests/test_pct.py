"""PCT: its window bounds every operation's hold-back, it deepens by default, and what it prints
as a guarantee holds only for the window and the worlds it searched."""

from __future__ import annotations

import random

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.ordered import run_ordered
from sim.search.explore import PctScheduler, _PctWorld, case_for, explore, pct_bound, pct_guarantee
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs")


def _hold_backs(case, run) -> list[int]:
    """How long each database operation arrived after it could first have: its actor sent it at
    ``sent_us`` and its request takes the actor's recorded latency for that operation."""
    latencies = {a.name: a.latencies for a in case.actors}
    done: dict[str, int] = {}
    holds = []
    for step in run.record.steps:
        if step.kind != "db":
            continue
        k = done.get(step.actor, 0)
        done[step.actor] = k + 1
        recorded = latencies[step.actor]
        request = recorded[k][0] if k < len(recorded) else None
        if request is not None:
            holds.append(step.executed_us - step.waited_us - step.sent_us - request)
    return holds


@pytest.mark.parametrize("strategy, jobs", [("naive", 5), ("three-layer", 12)])
def test_pct_never_holds_an_operation_back_longer_than_the_window(strategy: str, jobs: int) -> None:
    # Many actors keep time moving while a low-priority one waits: measured from when its
    # operation could first have arrived, no wait may exceed the window.
    st = load_strategy(strategy)
    case = case_for(SEED_FAST.with_values({"job.count": jobs}), st, 0)
    names = [a.name for a in case.actors if st.handler(a.event) is not None]
    window_us = 100_000
    worst = 0
    for i in range(30):
        run = run_ordered(case, st, MemoryTracker(), PctScheduler(random.Random(i), names, 60, 2), window_us)
        holds = _hold_backs(case, run)
        assert holds
        worst = max(worst, *holds)
        assert run.max_hold_us >= max(holds)  # what explore reports covers what happened
    assert worst <= window_us


def test_pct_deepens_by_default_and_names_the_depths_it_covered() -> None:
    result = explore(SEED_FAST.with_values({"job.count": 2}), load_strategy("atomic"), "pct", seed=0, runs=300)
    assert result.found is None
    depths = result.explored["depths"]
    assert result.explored["deepening"]
    assert sorted(depths)[:3] == [1, 2, 3]
    assert sum(depths.values()) == 300
    # Depth 1 is covered (its guarantee reached the target) before depth 3 gets most runs.
    assert result.explored["bound_every_world"][1] >= 0.95


def test_pct_with_a_depth_runs_only_that_depth() -> None:
    result = explore(SEED_FAST.with_values({"job.count": 2}), load_strategy("atomic"), "pct", seed=0, runs=60, depth=3)
    assert result.explored["depths"] == {3: 60}
    assert not result.explored["deepening"]


def test_pct_splits_its_budget_over_worlds_drawn_from_the_seed() -> None:
    result = explore(SEED_FAST.with_values({"job.count": 1}), load_strategy("atomic"), "pct", seed=7, runs=600)
    assert result.explored["worlds"] == 3
    assert result.explored["world_seeds"] == [7, 9]
    fixed = explore(SEED_FAST.with_values({"job.count": 1}), load_strategy("atomic"), "pct", seed=7, runs=600, worlds=1)
    assert fixed.explored["worlds"] == 1


def test_pct_guarantee_is_the_weakest_world_and_discounts_bugs_in_few_worlds() -> None:
    case = case_for(SEED_FAST.with_values({"job.count": 1}), load_strategy("atomic"), 0)
    strong = _PctWorld(0, case, ["a", "b"], 4, {1: 100, 2: 100})
    weak = _PctWorld(1, case, ["a", "b"], 4, {1: 1})
    g = pct_guarantee([strong, weak])
    assert g["depths"] == {1: 101, 2: 100}
    assert g["bound_every_world"][1] == pytest.approx(1 - (1 - pct_bound(2, 4, 1)) ** 1)
    assert g["bound_every_world"][2] == 0.0  # one world never ran depth 2
    # A bug in 1 of 10 worlds: each world finds it with a tenth of its own probability.
    expected = 1 - (1 - 0.1 * strong.bound(1)) * (1 - 0.1 * weak.bound(1))
    assert g["bound_some_worlds"][1] == pytest.approx(expected)


def test_pct_output_states_the_window_the_worlds_and_the_depths(capsys) -> None:
    code = main(["explore", "seed-fast-jobs", "--jobs", "1", "--strategy", "atomic", "--method", "pct",
                 "--budget", "300", "--window", "40"])
    out = capsys.readouterr().out
    assert code == 0
    assert "window 40.0 ms" in out and "within the window" in out
    assert "2 worlds (seeds 0..1)" in out
    assert "depth 1:" in out and "depth 2:" in out
