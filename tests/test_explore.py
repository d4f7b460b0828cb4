"""Finding counterexamples: every method finds naive's race in seed-fast-jobs, Hypothesis shrinks
it to the fewest operations the mechanism allows, atomic yields none, and searches are
deterministic for a seed."""

from __future__ import annotations

import json
import random

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.search.explore import ExploreError, PctScheduler, count_orders, explore, pct_bound
from tracker.strategies import load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs")
NAIVE = load_strategy("naive")
ATOMIC = load_strategy("atomic")


@pytest.mark.parametrize("method", ["random", "hypothesis", "exhaustive", "pct"])
def test_naive_yields_a_counterexample_in_seed_fast_jobs_with_every_method(method: str) -> None:
    scenario = SEED_FAST.with_values({"job.count": 1}) if method == "exhaustive" else SEED_FAST
    result = explore(scenario, NAIVE, method, seed=0, runs=200)
    assert result.found is not None
    assert result.found.violations
    assert result.found.jobs == 1  # reduced to the violating job


def test_shrunk_hypothesis_counterexample_has_the_fewest_operations_the_race_needs() -> None:
    # The bound, by hand: seed-fast-jobs never cancels, stalls or reports progress, so a job that
    # is added always runs an attempt, and naive's handlers then make at least: the producer's
    # INSERT (1), markJobActive's SELECT + UPDATE (2), and markJobCompleted's (or
    # markJobFailed's) SELECT + UPDATE (2). A violation needs one job: 5 operations at least,
    # and the seed's race (completed lands first, active's started_at is rejected) uses exactly
    # those five.
    result = explore(SEED_FAST, NAIVE, "hypothesis", seed=0, runs=200)
    found = result.found
    assert found is not None
    assert found.ops == 5
    assert found.jobs == 1
    truth = next(iter(found.case.truth.values()))
    assert len(truth.attempts) == 1
    # Timing shrunk too: the job took no time at all (the smallest race window is none).
    assert truth.attempts[0].end_us == truth.attempts[0].start_us
    assert "no-rejected-writes" in {v.invariant for v in found.violations}


def test_only_the_invariants_asked_for_count_as_a_counterexample() -> None:
    focused = explore(SEED_FAST, load_strategy("three-layer"), "hypothesis", seed=0, runs=50,
                      invariants=("terminal-status",))
    assert focused.found is not None
    assert "terminal-status" in {v.invariant for v in focused.found.violations}
    # naive's first-start-kept needs a retry that overwrites started_at: not within 20 runs.
    none = explore(SEED_FAST, NAIVE, "random", seed=0, runs=20, invariants=("first-start-kept",))
    assert none.found is None and none.explored["runs"] == 20


@pytest.mark.parametrize("method", ["random", "hypothesis", "pct"])
def test_atomic_yields_no_counterexample(method: str) -> None:
    result = explore(SEED_FAST, ATOMIC, method, seed=0, runs=40)
    assert result.found is None
    assert result.explored["runs"] == 40


@pytest.mark.parametrize("seed, orders", [(0, 2), (1, 2), (3, 720), (5, 24)])
def test_atomic_holds_in_every_interleaving_of_one_job(seed: int, orders: int) -> None:
    # Seed 3: attempts 1 and 2 fail, 3 completes (7 handlers); seed 5: one retry. Unbounded
    # hold-back, every order: atomic keeps the first start, the status and the times.
    result = explore(SEED_FAST.with_values({"job.count": 1}), ATOMIC, "exhaustive", seed=seed, worlds=1)
    assert result.found is None
    assert result.explored["complete"]
    assert result.explored["ran"] == result.explored["interleavings"] == orders


def test_the_window_bounds_how_long_an_operation_may_be_held_back() -> None:
    # db-clock stamps now() at arrival: the longer a statement may be held back, the more orders
    # exist and the more of them record late times.
    scenario = SEED_FAST.with_values({"job.count": 1})
    unbounded = explore(scenario, load_strategy("db-clock"), "exhaustive", seed=3, worlds=1)
    bounded = explore(scenario, load_strategy("db-clock"), "exhaustive", seed=3, window_ms=100, worlds=1)
    tight = explore(scenario, load_strategy("db-clock"), "exhaustive", seed=3, window_ms=10, worlds=1)
    assert unbounded.explored["ran"] == 720 and unbounded.explored["violating"] == 633
    assert bounded.explored["ran"] == 8 and bounded.explored["violating"] == 4
    assert tight.explored["ran"] == 1 and tight.found is None
    assert {v.invariant for v in unbounded.found.violations} == {"faithful-timestamps"}


def test_exhaustive_runs_every_interleaving_of_naive_one_job() -> None:
    result = explore(SEED_FAST.with_values({"job.count": 1}), NAIVE, "exhaustive", seed=0)
    explored = result.explored
    # INSERT first (awaited), then active's 2 and completed's 2 statements: C(4, 2) = 6 orders.
    assert explored["interleavings"] == 6 and explored["estimate_exact"]
    assert explored["ran"] == 6 and explored["complete"]
    assert explored["violating"] == 6
    assert explored["by_invariant"]["no-rejected-writes"] >= 1


def test_exhaustive_refuses_a_case_too_large_to_enumerate() -> None:
    with pytest.raises(ExploreError, match="interleavings"):
        explore(SEED_FAST, NAIVE, "exhaustive", seed=0, runs=10_000)


def test_count_orders_keeps_each_actors_order_and_the_awaited_insert_first() -> None:
    assert count_orders([1, 2, 2], [[], [0], [0]]) == (6, True)
    assert count_orders([2, 2], [[], []]) == (6, True)
    assert count_orders([1, 1, 1], [[], [], []]) == (6, True)
    count, exact = count_orders([3] * 20, [[] for _ in range(20)], limit_states=10)
    assert not exact and count > 10**30


def test_pct_bound_is_one_over_n_times_k_to_the_d_minus_one() -> None:
    assert pct_bound(4, 10, 1) == 1 / 4
    assert pct_bound(4, 10, 3) == 1 / 400


def test_pct_scheduler_runs_the_highest_priority_actor_until_a_change_point() -> None:
    sched = PctScheduler(random.Random(1), ["a", "b", "c"], steps=10, depth=2)
    top = max("abc", key=lambda n: sched.priority[n])
    (point,) = sched.change
    picks = [sched.choose(("a", "b", "c"), i) for i in range(10)]
    assert picks[:point] == [top] * point
    assert picks[point] != top  # the change point demoted it below every other actor


def test_explore_cli_writes_a_deterministic_trace_and_json(tmp_path, capsys) -> None:
    outs = []
    for name in ("one.json", "two.json"):
        out = tmp_path / name
        code = main(["explore", "seed-fast-jobs", "--method", "hypothesis", "--no-database", "--budget", "50",
                     "--out", str(out), "--json"])
        assert code == 1
        report = json.loads(capsys.readouterr().out)
        assert set(report) == {"found", "method", "explored", "seconds", "ops", "trace"}
        assert report["found"] and report["ops"] == 5 and report["trace"] == str(out)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_explore_cli_exit_0_with_what_was_explored_when_nothing_is_found(capsys) -> None:
    code = main(["explore", "seed-fast-jobs", "--strategy", "atomic", "--method", "pct", "--budget", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "20 runs" in out and "probability depth 1 >=" in out


def test_explore_cli_exhaustive_too_large_is_exit_2_one_line(capsys) -> None:
    code = main(["explore", "seed-fast-jobs", "--method", "exhaustive", "--jobs", "10"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--jobs 1" in err


def test_explore_cli_bad_input_is_exit_2(capsys) -> None:
    assert main(["explore", "seed-fast-jobs", "--method", "nope"]) == 2
    assert main(["explore", "seed-fast-jobs", "--invariants", "no-such"]) == 2
    assert main(["explore", "seed-fast-jobs", "--budget", "0"]) == 2
    assert main(["explore", "seed-fast-jobs", "--budget", "3", "--time", "1"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_hypothesis_example_database_replays_the_saved_counterexample(tmp_path) -> None:
    db = str(tmp_path / "db")
    scenario = SEED_FAST.with_values({"job.count": 1})
    first = explore(scenario, load_strategy("row-lock"), "hypothesis", seed=2, runs=300, database=db)
    assert first.found is not None and first.explored["runs_to_first"] > 1
    again = explore(scenario, load_strategy("row-lock"), "hypothesis", seed=2, runs=300, database=db)
    assert again.found is not None
    assert again.explored["runs_to_first"] == 1  # the saved example comes first
    assert again.found.run.schedule == first.found.run.schedule


def test_exhaustive_counts_what_really_ran_when_branches_differ_from_the_estimate() -> None:
    # three-layer's handlers branch on what they read: more orders exist than one run predicts.
    result = explore(SEED_FAST.with_values({"job.count": 1}), load_strategy("three-layer"), "exhaustive", seed=0, worlds=1)
    assert result.explored["complete"]
    assert result.explored["interleavings"] == result.explored["ran"]
    # Estimated from sampled orders, not one: not below what really ran, and said to be an estimate.
    assert result.explored["estimate"] >= result.explored["ran"] and not result.explored["estimate_exact"]


def test_exhaustive_cli_says_how_many_interleavings_ran(tmp_path, capsys) -> None:
    code = main(["explore", "seed-fast-jobs", "--strategy", "atomic", "--method", "exhaustive", "--seed", "3",
                 "--budget", "800", "--worlds", "1", "--out", str(tmp_path / "t.json")])
    assert code == 0 and "all 720 interleavings of world seed 3 ran" in capsys.readouterr().out
    code = main(["explore", "seed-fast-jobs", "--strategy", "row-lock", "--method", "exhaustive", "--budget", "100",
                 "--worlds", "1", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["explored"]["complete"] and report["explored"]["ran"] == 24


def test_exhaustive_searches_other_worlds_within_its_budget(tmp_path) -> None:
    # row-lock holds in every order of world seed 0's one job; world seed 1 (another arrival,
    # duration and latencies) has an order that breaks it: only a search across worlds finds it.
    one_job = SEED_FAST.with_values({"job.count": 1})
    assert explore(one_job, load_strategy("row-lock"), "exhaustive", seed=0, worlds=1).found is None
    result = explore(one_job, load_strategy("row-lock"), "exhaustive", seed=0, runs=100)
    assert result.found is not None and result.found.case.seed == 1
    assert result.explored["worlds"] == 2 and result.explored["world_seeds"] == [0, 1]


def test_exhaustive_refusal_names_the_limit_that_binds(capsys) -> None:
    assert main(["explore", "seed-fast-jobs", "--method", "exhaustive", "--jobs", "1", "--strategy", "three-layer",
                 "--budget", "10"]) == 2
    err = capsys.readouterr().err
    assert "--jobs 1" not in err and "one job already" in err and "--window" in err


def test_time_budget_runs_until_the_time_is_spent(capsys) -> None:
    code = main(["explore", "seed-fast-jobs", "--strategy", "atomic", "--method", "random", "--time", "0.3", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and not report["found"]
    assert report["explored"]["runs"] >= 1 and report["seconds"] >= 0.3


def test_default_explore_is_a_portfolio_that_names_the_method_that_found_it(tmp_path, capsys) -> None:
    found = explore(SEED_FAST, NAIVE, seed=0, runs=200)
    assert found.method == "portfolio" and found.found is not None
    assert found.explored["found_by"] == found.explored["parts"][-1]["method"]
    clean = explore(SEED_FAST.with_values({"job.count": 2}), ATOMIC, seed=0, runs=100)
    assert clean.found is None and clean.explored["found_by"] is None
    assert [p["method"] for p in clean.explored["parts"]] == ["random", "exhaustive", "pct", "hypothesis"]
    out = tmp_path / "t.json"
    assert main(["explore", "seed-fast-jobs", "--budget", "100", "--no-database", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "--method portfolio" in printed and "found by" in printed
    assert json.loads(out.read_text())["found_by"]["method"].startswith("portfolio/")


@pytest.mark.parametrize("database", [False, True])
def test_a_hypothesis_search_leaves_nothing_in_the_current_folder(tmp_path, monkeypatch, capsys, database) -> None:
    # Hypothesis caches source constants under ./.hypothesis unless told otherwise: racetrack
    # points it at a temporary folder of its own, removed afterwards
    import tempfile
    from pathlib import Path

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    temp = Path(tempfile.gettempdir())
    before = {p.name for p in temp.iterdir()}
    store = ["--database", str(tmp_path / "db")] if database else ["--no-database"]
    main(["explore", "seed-fast-jobs", "--strategy", "atomic", "--method", "hypothesis", "--budget", "20", *store])
    capsys.readouterr()
    assert list(work.iterdir()) == []
    assert not [n for n in {p.name for p in temp.iterdir()} - before if n.startswith("racetrack-hypothesis-")]
