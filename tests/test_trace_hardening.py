"""Traces that could mislead or crash: a trace replays on the table it was found on (or is
refused), hand-edited traces are one line naming the field, replays honour --max-sim-seconds,
export and explore never write over what they read, and --invariants is named as typed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.limits import Limits, StrategyFailed, applied
from sim.engine.ordered import FollowSchedule, WrongTable, run_ordered
from sim.judge.invariants import judge
from sim.search import trace
from sim.search.explore import explore
from sim.search.replay import replay_data, same_steps
from tracker.memory import MemoryTracker
from tracker.ops import Sleep
from tracker.strategies import Strategy, load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs")


@pytest.fixture(scope="module")
def naive_trace(tmp_path_factory) -> Path:
    """A counterexample of naive on the bundled table (a 5-operation, ~510 ms run)."""
    found = explore(SEED_FAST, load_strategy("naive"), "random", seed=0, runs=100).found
    assert found is not None
    path = tmp_path_factory.mktemp("hardening") / "naive.json"
    trace.write(path, trace.counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                                                strategy="naive", backend="memory", found_by={"method": "random"}))
    return path


@pytest.fixture(scope="module")
def own_table_trace(tmp_path_factory) -> Path:
    """A counterexample of naive on the own-table scenario, as ``racetrack explore`` writes it."""
    path = tmp_path_factory.mktemp("own") / "own.json"
    code = main(["explore", "own-table", "--strategy", "naive", "--budget", "30", "--no-database", "--out", str(path)])
    assert code == 1 and path.exists()
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err, err
    return err.strip()


def _edited(source: Path, folder: Path, change, name: str = "edited.json") -> Path:
    """``source`` changed by hand (``change`` edits the document), its digest dropped."""
    data = json.loads(source.read_text())
    data.pop("digest", None)
    change(data)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


# --- 1. a trace replays on the table it was found on --------------------------------------------


def test_an_own_table_trace_carries_its_table_and_replays_exactly_on_it(own_table_trace) -> None:
    data = trace.read(own_table_trace)
    assert data["table"]["source"] == "own-table.sql"
    case = trace.case_from_data(data)
    assert case.table is not None and "queue_name" in case.table.names
    assert "job_status_timestamps_check" not in {c.name for c in case.table.checks}
    assert [r.id for r in case.lifecycle.rows] == ["row:active-not-finished"]
    recorded, violations = trace.record_from_data(data)
    # What a replay runs: the trace's own table, its own mapping and row invariants.
    run = run_ordered(case, load_strategy("naive"), MemoryTracker(case.table), FollowSchedule(list(data["schedule"])))
    assert same_steps(recorded, run.record)
    again = {(v.invariant, v.job) for v in judge(run.record).violations}
    assert again == {(v.invariant, v.job) for v in violations}
    assert ("row:active-not-finished", "job-1") in again


def test_a_case_from_a_trace_refuses_a_backend_of_another_table(own_table_trace) -> None:
    case = trace.case_from_data(trace.read(own_table_trace))
    with pytest.raises(WrongTable, match=r"found on table job_status \(own-table.sql\) but the backend tracks "
                                         r"table job_status \(tracker/schema.sql\)"):
        run_ordered(case, load_strategy("naive"), MemoryTracker(), FollowSchedule([]))


@pytest.mark.parametrize("backend", ["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_own_table_trace_never_says_reproduced_for_another_table(own_table_trace, capsys, backend) -> None:
    """Before: exit 1, REPRODUCED, "exact": false, with the bundled CHECK's no-rejected-writes.
    Now it replays exactly on its own table: never another table's verdict."""
    code = main(["replay", str(own_table_trace), "--backend", backend, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["reproduced"] and out["exact"], out
    assert "no-rejected-writes" not in {v["invariant"] for v in out["violations"]}


def test_a_trace_of_an_own_table_without_its_sql_is_refused_by_replay_and_export(own_table_trace, tmp_path, capsys) -> None:
    old = _edited(own_table_trace, tmp_path, lambda d: d.pop("table"), "old.json")  # as written before traces carried it
    assert trace.read(old)["params"]["table.sql"] == "own-table.sql"  # still readable (a report shows it)
    assert main(["replay", str(old)]) == 2
    assert _one_line(capsys).startswith(f"racetrack: {old}: table: the trace was found on table.sql = 'own-table.sql'")
    assert main(["export", str(old), "--pytest", str(tmp_path / "t.py")]) == 2
    assert "table.sql = 'own-table.sql'" in _one_line(capsys)
    assert not (tmp_path / "t.py").exists()


def test_an_isolation_spec_of_an_own_table_trace_is_refused(own_table_trace, tmp_path, capsys) -> None:
    assert main(["export", str(own_table_trace), "--isolation", str(tmp_path / "x.spec")]) == 2
    assert "isolation spec is written for the bundled job_status table only" in _one_line(capsys)
    assert not (tmp_path / "x.spec").exists()


def test_a_bundled_table_trace_has_no_table_field_and_replays_as_before(naive_trace) -> None:
    data = trace.read(naive_trace)
    assert "table" not in data
    result = replay_data(data)
    assert result.reproduced and result.exact


# --- 2. hand-edited traces: one line naming the field -------------------------------------------

REQUIRED = ["scenario", "params", "strategy", "backend", "seed", "tolerance_us", "end_us", "steps", "truth", "rows",
            "violations", "schedule", "actors", "clocks", "slack_us", "default_latency", "end_floor_us"]


@pytest.mark.parametrize("field", REQUIRED)
def test_a_trace_without_a_required_field_is_one_line_naming_it(naive_trace, tmp_path, capsys, field) -> None:
    path = _edited(naive_trace, tmp_path, lambda d: d.pop(field))
    for argv in (["replay", str(path)], ["export", str(path), "--pytest", str(tmp_path / "t.py")],
                 ["report", str(path), "-o", str(tmp_path / "report")]):
        assert main(argv) == 2, argv
        assert f": {field}: missing" in _one_line(capsys), argv
    assert not (tmp_path / "t.py").exists()


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d.update(backend=None), "backend: must be a string (got null)"),
    (lambda d: d.update(tolerance_us="5"), "tolerance_us: must be a whole number (got a string)"),
    (lambda d: d.update(end_us=True), "end_us: must be a whole number (got a boolean)"),
    (lambda d: [v.update(invariant="bogus") for v in d["violations"]], "violations[0].invariant: unknown invariant 'bogus'"),
    (lambda d: [v.update(facts={}) for v in d["violations"]], "violations[0].facts: cannot say what broke"),
    (lambda d: d["violations"][0].pop("job"), "violations[0].job: missing or not a string"),
    (lambda d: d["clocks"]["db"].update(offset_us="x"), "clocks.db: must be a table of offset_us (a whole number)"),
    (lambda d: d["actors"][0].update(latencies="x"), "latencies: must be a list of [request, reply] microseconds >= 0"),
    (lambda d: d["actors"][0].update(latencies=[[-5, 3]]), "latencies: must be a list of [request, reply] microseconds >= 0"),
    (lambda d: d.update(end_floor_us=-1), "end_floor_us: must be a whole number of microseconds >= 0"),
    (lambda d: d.update(seed=2**70), "seed: must be from 0 to"),
    (lambda d: d.update(found_by="pct"), "found_by: must be a table"),
], ids=["backend-null", "tolerance-text", "end-bool", "bogus-invariant", "empty-facts", "no-job", "clock-offset-text",
        "latencies-text", "latency-negative", "end-floor-negative", "seed-huge", "found-by-text"])
def test_a_hand_edited_field_is_one_line_naming_it(naive_trace, tmp_path, capsys, change, named) -> None:
    path = _edited(naive_trace, tmp_path, change)
    for argv in (["replay", str(path)], ["export", str(path), "--pytest", str(tmp_path / "t.py")]):
        assert main(argv) == 2, argv
        assert named in _one_line(capsys), argv


def test_a_row_invariant_the_trace_declares_is_a_known_invariant(own_table_trace) -> None:
    data = trace.read(own_table_trace)
    assert "row:active-not-finished" in {v["invariant"] for v in data["violations"]}
    edited = {k: v for k, v in data.items() if k != "digest"}
    edited["params"] = {k: v for k, v in data["params"].items() if k != "invariants.rows"}
    assert "violations[" in (trace.required_field_problem(edited) or "")


# --- 3. replays honour --max-sim-seconds ---------------------------------------------------------


def sleep_forever(job, ctx):
    while True:
        yield Sleep(1000)


def test_replay_stops_at_the_simulated_time_limit(naive_trace, capsys) -> None:
    assert main(["replay", str(naive_trace), "--max-sim-seconds", "0.001"]) == 2
    line = _one_line(capsys)
    assert "the run went past 0.001 simulated seconds (--max-sim-seconds)" in line and "REPRODUCED" not in line


def test_a_replayed_handler_that_sleeps_forever_is_stopped_by_simulated_time_not_operations(naive_trace) -> None:
    sleepy = Strategy("sleepy", "x", on_active=sleep_forever)
    line = sleep_forever.__code__.co_firstlineno + 2
    with applied(Limits(sim_seconds=3600)), pytest.raises(
        StrategyFailed,
        match=rf"went past 3600 simulated seconds \(--max-sim-seconds\); still running: job-1.active#1 "
              rf"\(test_trace_hardening.py:{line} in sleep_forever\)",
    ):
        replay_data(trace.read(naive_trace), sleepy)


# --- 4. no command writes over what it reads -----------------------------------------------------


def test_export_refuses_to_write_over_its_trace_or_one_output_over_the_other(naive_trace, tmp_path, capsys) -> None:
    path = tmp_path / "t.json"
    shutil.copy(naive_trace, path)
    (tmp_path / "link.json").symlink_to(path)
    before = path.read_bytes()
    for argv, said in [
        (["export", str(path), "--pytest", str(path)], f"--pytest {path}: is the trace this command reads"),
        (["export", str(path), "--isolation", str(tmp_path / "." / "t.json")], "is the trace this command reads"),
        (["export", str(tmp_path / "link.json"), "--pytest", str(path)], "is the trace this command reads"),
        (["export", str(path), "--pytest", str(tmp_path / "f"), "--isolation", str(tmp_path / "f")],
         f"--isolation {tmp_path / 'f'}: is also the --pytest file"),
    ]:
        assert main(argv) == 2, argv
        assert said in _one_line(capsys), argv
    assert path.read_bytes() == before and not (tmp_path / "f").exists()


def test_explore_refuses_to_write_over_its_scenario_or_its_table(tmp_path, capsys) -> None:
    for name in ("own-table.toml", "own-table.sql"):
        shutil.copy(scenarios.bundled_dir() / name, tmp_path / name)
    before = {n: (tmp_path / n).read_bytes() for n in ("own-table.toml", "own-table.sql")}
    scenario = str(tmp_path / "own-table.toml")
    for out, what in (("own-table.toml", "scenario file"), ("own-table.sql", "table SQL file")):
        assert main(["explore", scenario, "--budget", "5", "--no-database", "--out", str(tmp_path / out)]) == 2
        assert f"--out {tmp_path / out}: is the {what} this command reads" in _one_line(capsys)
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


# --- 5. --invariants is named as typed -----------------------------------------------------------


def test_explore_names_the_invariants_option_as_typed(capsys) -> None:
    assert main(["explore", "seed-fast-jobs", "--invariants", "foo", "--budget", "3", "--no-database"]) == 2
    assert _one_line(capsys).startswith("racetrack: --invariants: unknown invariant 'foo' (known: no-rejected-writes")
    assert main(["explore", "own-table", "--invariants", "row:nope", "--budget", "3", "--no-database"]) == 2
    assert "row:active-not-finished" in _one_line(capsys)  # the scenario's own are named as known


def test_a_counterexample_check_writes_for_an_own_table_replays_on_that_table(tmp_path, capsys) -> None:
    # own-table pins db-clock "clean"; searched, it is not: the trace check writes carries the
    # table it was found on, and `racetrack replay` runs it there, exactly
    assert main(["check", "own-table", "--runs", "1", "--search", "100", "--traces", str(tmp_path)]) == 1
    capsys.readouterr()
    written = tmp_path / "own-table-db-clock.json"
    assert trace.read(written)["table"]["source"].endswith("own-table.sql")
    assert main(["replay", str(written), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["reproduced"] and out["exact"], out
