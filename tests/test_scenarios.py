"""Scenario files and the world they drive: every bundled file is valid and documented, and
properties hold over the whole parameter space (Hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worlds import world_of

import scenarios as bundled
from sim.engine import scenario as scenarios
from sim.engine.distributions import parse_dist
from sim.engine.world import World, case_from_world
from sim.runs.runner import run_one
from tracker.memory import MemoryTracker
from tracker.strategies import BUILTIN, load_strategy

SCENARIOS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "scenarios.md"
SEED_TESTS = ["process-success", "progress-tracking", "timestamps", "failed-error-details", "retry-backoff",
              "attempt-count", "cancel-waiting", "remove-delayed", "no-delay", "concurrent-jobs"]


def test_the_bundled_scenarios_cover_the_seed_tests_stalls_and_skew():
    assert set(scenarios.bundled_names()) >= {"seed-fast-jobs", *SEED_TESTS, "stalled-redelivery", "clock-skew"}


@pytest.mark.parametrize("name", scenarios.bundled_names())
def test_every_bundled_scenario_loads_and_says_what_it_is_for(name):
    loaded = scenarios.load(name)
    assert loaded.name == name and loaded["description"]
    assert all(name in BUILTIN or load_strategy(name) for name in loaded.expect)


def test_the_listing_reads_the_names_and_descriptions_the_validated_files_have():
    # `racetrack scenarios` reads them without validating; it must show what validation keeps.
    assert bundled.names() == scenarios.bundled_names()
    assert all(bundled.description(n) == scenarios.load(n)["description"] for n in bundled.names())


def test_the_scenarios_page_documents_every_parameter_with_its_default():
    assert scenarios.format_params_markdown() in SCENARIOS_PAGE.read_text(), (
        "docs/scenarios.md's parameter table is out of date: replace it with the output of "
        "`racetrack scenarios --params`"
    )


def test_a_path_loads_like_a_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "x"\n[job]\ncount = 2\n')
    loaded = scenarios.load(str(path))
    assert loaded.name == "mine" and loaded["job.count"] == 2 and loaded["job.attempts"] == 1


def test_distributions_draw_within_their_form():
    import random

    rng = random.Random(1)
    assert parse_dist({"fixed_ms": 4}).sample(rng) == 4
    assert all(2 <= parse_dist({"min_ms": 2, "max_ms": 3}).sample(rng) <= 3 for _ in range(100))
    draws = sorted(parse_dist({"median_ms": 10, "p99_ms": 100}).sample(rng) for _ in range(4000))
    assert 9 < draws[2000] < 11 and 70 < draws[3960] < 140


def dist(lo: float, hi: float):
    return st.one_of(
        st.builds(lambda v: {"fixed_ms": v}, st.floats(lo, hi)),
        st.builds(lambda a, b: {"min_ms": min(a, b), "max_ms": max(a, b)}, st.floats(lo, hi), st.floats(lo, hi)),
        st.builds(lambda m, f: {"median_ms": m, "p99_ms": m * f}, st.floats(max(lo, 0.5), hi), st.floats(1, 10)),
    )


scenario_tables = st.fixed_dictionaries({
    "job": st.fixed_dictionaries({
        "count": st.integers(1, 4),
        "interarrival": dist(0, 200),
        "duration": dist(1, 400),
        "fail_probability": st.floats(0, 1),
        "attempts": st.integers(1, 3),
        "delay_ms": st.sampled_from([0, 0, 150]),
        "progress_updates": st.integers(0, 2),
    }),
    "backoff": st.fixed_dictionaries({
        "type": st.sampled_from(["none", "fixed", "exponential"]),
        "delay_ms": st.floats(0, 500),
        "jitter": st.floats(0, 1),
    }),
    "workers": st.fixed_dictionaries({
        "count": st.integers(1, 3),
        "concurrency": st.integers(1, 3),
        "lock_duration_ms": st.floats(50, 400),
        "stalled_interval_ms": st.floats(10, 200),
        "max_stalled_count": st.integers(0, 2),
    }),
    "stalls": st.fixed_dictionaries({"probability": st.floats(0, 0.5)}),
    "cancel": st.fixed_dictionaries({"probability": st.floats(0, 1), "after": dist(0, 300)}),
    "handlers": st.fixed_dictionaries({
        "active_delay_ms": st.floats(0, 600), "completed_delay_ms": st.floats(0, 600), "failed_delay_ms": st.floats(0, 300),
    }),
    "network": st.fixed_dictionaries({"db_rtt": dist(0.1, 200)}),
    "clocks": st.fixed_dictionaries({"max_offset_ms": st.floats(0, 200), "max_drift_ppm": st.floats(0, 500)}),
})

# Derandomized: the same examples every run, so CI is deterministic; deeper searches run by hand.
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenario_tables, st.integers(0, 2**32), st.sampled_from(list(BUILTIN)))
def test_every_run_settles_with_a_consistent_ground_truth(tables, seed, strategy):
    scenario = scenarios.from_mapping(tables, "generated", "<hypothesis>")
    world = World(scenario, load_strategy(strategy), MemoryTracker(), seed)
    record = world.run()
    assert world.driver.running == 0 and world.driver.crashes == []
    assert len(record.truth) == tables["job"]["count"]
    for truth in record.truth.values():
        assert truth.outcome in ("completed", "failed", "removed")
        assert truth.transitions[0][1] in ("waiting", "delayed")
        assert truth.outcome_us == max(t for t, _ in truth.transitions)
        assert truth.attempts_started <= truth.max_attempts
        assert [a.start_us for a in truth.attempts] == sorted(a.start_us for a in truth.attempts)
        if truth.outcome == "completed":
            assert truth.attempts[-1].outcome == "completed"


@PROPERTY
@given(scenario_tables, st.integers(0, 2**32))
def test_atomic_holds_every_invariant_whatever_the_parameters(tables, seed):
    scenario = scenarios.from_mapping(tables, "generated", "<hypothesis>")
    result = run_one(scenario, load_strategy("atomic"), seed)
    assert result.violations == (), [v.line() for v in result.violations]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(scenario_tables, st.integers(0, 2**32), st.sampled_from(list(BUILTIN)))
def test_the_same_seed_gives_the_same_history(tables, seed, strategy):
    scenario = scenarios.from_mapping(tables, "generated", "<hypothesis>")
    a = run_one(scenario, load_strategy(strategy), seed)
    b = run_one(scenario, load_strategy(strategy), seed)
    assert a.record.steps == b.record.steps and a.row() == b.row()


# --- clocks per host ---------------------------------------------------------------------------


def test_one_line_puts_every_worker_clock_behind_the_database_by_that_range(tmp_path):
    world = world_of("[workers]\ncount = 4\n[clocks.workers]\noffset = { min_ms = -50, max_ms = -10 }\n", tmp_path)
    offsets = [world.clocks[f"worker-{i}"].offset_us for i in range(1, 5)]
    assert all(-50_000 <= o <= -10_000 for o in offsets) and len(set(offsets)) == 4
    assert abs(world.clocks["db"].offset_us) <= 5_000  # the other hosts keep clocks.max_offset_ms


def test_offsets_may_be_given_in_seconds(tmp_path):
    world = world_of("[clocks.workers]\noffset = { fixed_s = -1.5 }\n[clocks.db]\ndrift = { fixed_ppm = 0 }\n", tmp_path)
    assert world.clocks["worker-1"].offset_us == -1_500_000 and world.clocks["db"].drift_ppm == 0


def test_unset_host_groups_draw_every_clock_exactly_as_before(tmp_path):
    import random

    world = world_of("[workers]\ncount = 2\n", tmp_path, seed=7)
    rng = random.Random("racetrack:7:clocks")
    for host in ("api", "db", "worker-1", "worker-2"):
        offset, drift = rng.uniform(-5, 5), rng.uniform(-50, 50)
        clock = world.clocks[host]
        assert (clock.offset_us, clock.drift_ppm, clock.step_us) == (round(offset * 1000), drift, 0)


def test_setting_one_group_leaves_the_other_hosts_draws_alone(tmp_path):
    plain = world_of("[workers]\ncount = 2\n", tmp_path, seed=3)
    grouped = world_of("[workers]\ncount = 2\n[clocks.workers]\noffset = { min_ms = -50, max_ms = -10 }\n", tmp_path, seed=3)
    assert grouped.clocks["db"] == plain.clocks["db"] and grouped.clocks["api"] == plain.clocks["api"]


def test_a_step_jumps_the_clock_at_its_drawn_time_and_widens_its_error_bound(tmp_path):
    world = world_of(
        "[clocks.db]\noffset = { fixed_ms = 0 }\ndrift = { fixed_ppm = 0 }\n"
        "step = { fixed_ms = -300 }\nstep_at = { min_ms = 100, max_ms = 200 }\n", tmp_path,
    )
    clock = world.clocks["db"]
    assert 100_000 <= clock.step_at_us <= 200_000 and clock.step_us == -300_000
    before, after = clock.read(clock.step_at_us - 1), clock.read(clock.step_at_us)
    assert after - before == -300_000 + 1  # back 300 ms, one microsecond later
    assert clock.error_bound_us(clock.step_at_us) >= 300_000 > clock.error_bound_us(clock.step_at_us - 1)


def test_a_stepped_clock_survives_a_trace_round_trip(tmp_path):
    import json

    from sim.search.trace import case_from_data, counterexample_data

    world = world_of(
        "[job]\ncount = 1\n[clocks.workers]\nstep = { fixed_s = 2 }\nstep_at = { fixed_ms = 10 }\n", tmp_path
    )
    record = world.run()
    case = case_from_world(world, record, world.scenario, 0)
    data = counterexample_data(case, record, [], [], strategy="atomic", backend="memory", found_by={})
    again = case_from_data(json.loads(json.dumps(data)))
    assert again.clocks == case.clocks and again.clocks["worker-1"].step_us == 2_000_000


def test_unset_host_clock_keys_stay_out_of_a_runs_params():
    assert not any(k.startswith(("clocks.db.", "clocks.api.", "clocks.workers.")) for k in scenarios.load("seed-fast-jobs").to_toml_table())
    assert scenarios.load("laptop-worker").to_toml_table()["clocks.workers.offset"] == {"min_ms": -1600.0, "max_ms": -1400.0}


def test_a_worker_far_behind_the_database_breaks_row_lock_but_not_atomic():
    laptop = scenarios.load("laptop-worker")
    for seed in range(3):
        assert run_one(laptop, load_strategy("row-lock"), seed).violations
        assert not run_one(laptop, load_strategy("atomic"), seed).violations


# --- job classes -------------------------------------------------------------------------------

CLASSES = """[job]
count = 200
interarrival = { fixed_ms = 1 }
duration = { fixed_ms = 10 }
[job.classes.fast]
share = 0.9
duration = { fixed_ms = 50 }
[job.classes.slow]
share = 0.1
duration = { fixed_ms = 5000 }
attempts = 4
fail_probability = 1
"""


def test_each_job_takes_its_class_parameters_in_about_its_share(tmp_path):
    world = world_of(CLASSES, tmp_path)
    record = world.run()
    slow = [t for t in record.truth.values() if t.max_attempts == 4]
    fast = [t for t in record.truth.values() if t.max_attempts == 1]
    assert len(slow) + len(fast) == 200 and 8 <= len(slow) <= 35
    assert all(a.end_us - a.start_us == 5_000_000 and a.outcome == "failed" for t in slow for a in t.attempts)
    assert all(len(t.attempts) == 4 for t in slow)
    assert all(a.end_us - a.start_us == 50_000 and a.outcome == "completed" for t in fast for a in t.attempts)


def test_a_jobs_class_does_not_move_its_other_draws(tmp_path):
    """Classes draw from a stream of their own: a job of a class that changes nothing sees the
    world it saw without classes."""
    plain = "[job]\ncount = 20\nfail_probability = 0.3\nattempts = 2\n"
    same = plain + "[job.classes.a]\nshare = 0.5\n[job.classes.b]\nshare = 0.5\n"
    assert world_of(same, tmp_path).run().truth == world_of(plain, tmp_path).run().truth


def test_job_classes_round_trip_to_params():
    table = scenarios.load("mixed-jobs").to_toml_table()["job.classes"]
    assert table["slow"] == {"share": 0.1, "duration": {"median_ms": 5000.0, "p99_ms": 8000.0}, "fail_probability": 0.5, "attempts": 4}


@pytest.mark.parametrize("name", scenarios.bundled_names())
def test_a_scenario_written_back_as_toml_loads_with_the_same_parameters(name, tmp_path):
    """calibrate --fit writes scenario files this way: every key, new ones included, survives."""
    loaded = scenarios.load(name)
    path = tmp_path / f"{name}.toml"
    if loaded["table.sql"]:  # its table's SQL goes along, at the same relative path
        (tmp_path / loaded["table.sql"]).write_bytes((scenarios.bundled_dir() / loaded["table.sql"]).read_bytes())
    path.write_text(scenarios.toml_text(loaded.to_toml_table()))
    assert scenarios.load(str(path)).to_toml_table() == loaded.to_toml_table()


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3)), min_size=2, max_size=40))
def test_a_rows_percentiles_are_what_statistics_quantiles_gives(values):
    # The row computes only the cut points it needs; statistics.quantiles is the reference.
    import statistics

    from sim.runs.runner import _percentiles

    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert _percentiles(values, (50, 99)) == [round(cuts[49], 3), round(cuts[98], 3)]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ('[table.columns]\nstatus = "status"\n\n\nbogus = "x"\n', "line 5: table.columns.bogus: unknown column role"),
        ('[table.statuses]\nwaiting = ["waiting"]\n\nnope = ["x"]\n', "line 4: table.statuses.nope: unknown state"),
        ('[invariants.rows]\nok = "status IS NOT NULL"\nx = 5\n', "line 3: invariants.rows.x must be a SQL boolean"),
    ],
)
def test_a_bad_key_of_a_table_names_its_own_line_not_the_tables(tmp_path, body, said):
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(scenarios.ScenarioError, match=f"^{path}: {said}"):
        scenarios.load(str(path))


def test_a_table_sql_lacking_a_column_is_blamed_on_the_flag_not_the_bundled_file(tmp_path, capsys):
    from sim.cli import main

    sql = tmp_path / "noatt.sql"
    sql.write_text("CREATE TABLE job_status (job_id text PRIMARY KEY, status text NOT NULL, created_at timestamptz, "
                   "started_at timestamptz, completed_at timestamptz, failed_at timestamptz);")
    assert main(["run", "seed-fast-jobs", "--table-sql", str(sql)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"racetrack: --table-sql {sql} (with scenario seed-fast-jobs): table job_status has no column 'attempts'")
    assert "scenario file of your own" in err and "scenarios/seed-fast-jobs.toml" not in err


def test_a_clock_range_past_its_limit_says_the_value_with_every_digit(tmp_path):
    # in :g form -3600001 read -3.6e+06, as the limit itself: the message seemed to be in range
    path = tmp_path / "c.toml"
    path.write_text("[clocks.db]\noffset = { min_ms = -3600001, max_ms = 0 }\n")
    with pytest.raises(scenarios.ScenarioError, match=r"must stay within -3600000 and \+3600000 ms \(got -3600001 ms\)$"):
        scenarios.load(str(path))
