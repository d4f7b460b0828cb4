"""Coverage you can read: distinct orders of conflicting operations per job, counted over the
runs of a search or a sweep, with the run at which the last new one appeared."""

from __future__ import annotations

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.ordered import FollowPrefix, run_ordered
from sim.record.conflicts import Saturation, conflict_orders
from sim.search.explore import case_for, explore
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy

ONE_JOB = scenarios.load("seed-fast-jobs").with_values({"job.count": 1})


def test_orders_that_swap_conflicting_operations_differ_and_the_rest_do_not() -> None:
    # naive, one job: active's and completed's SELECT+UPDATE (As Au, Cs Cu) have 6 orders. Two
    # SELECTs do not conflict, so As Cs Au Cu = Cs As Au Cu and As Cs Cu Au = Cs As Cu Au: 4 classes.
    st = load_strategy("naive")
    case = case_for(ONE_JOB, st, 0)
    first = run_ordered(case, st, MemoryTracker(), FollowPrefix([]))
    again = run_ordered(case, st, MemoryTracker(), FollowPrefix([]))
    assert conflict_orders(first.record) == conflict_orders(again.record)
    result = explore(ONE_JOB, st, "exhaustive", seed=0, worlds=1)
    assert result.explored["ran"] == 6
    assert result.explored["coverage"]["distinct"] == 4


def test_saturation_counts_distinct_orders_and_when_the_last_new_one_came() -> None:
    s = Saturation()
    for orders in (["a"], ["a", "b"], ["b"], [], ["a"]):
        s.add(orders)
    assert (s.runs, s.distinct, s.last_new_run) == (5, 2, 2)
    assert s.curve == [(1, 1), (2, 2)]
    assert "2 distinct conflict orders in 5 runs, the last new one at run 2" == s.sentence()


def test_explore_and_check_say_how_many_conflict_orders_they_saw(tmp_path, capsys) -> None:
    assert main(["explore", "seed-fast-jobs", "--strategy", "atomic", "--method", "pct", "--budget", "40",
                 "--out", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "coverage: " in out and "distinct conflict orders in 40 runs, the last new one at run" in out
    assert main(["check", "seed-fast-jobs", "--runs", "10", "--search", "20"]) == 0
    out = capsys.readouterr().out
    assert "sweep coverage: " in out and "distinct conflict orders in 10 runs" in out
    assert "searched: " in out and "; coverage: " in out
