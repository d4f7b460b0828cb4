"""Replaying traces: the forced-order driver re-runs a SimPy run value for value, saved
counterexamples reproduce, other strategies follow the schedule as priorities, and bad traces
are refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from worlds import fingerprints, replayed_in_own_order

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.ordered import FollowSchedule, run_ordered
from sim.engine.world import World, case_from_world
from sim.judge.invariants import judge
from sim.runs import backends
from sim.search.explore import explore
from sim.search.replay import replay_data
from sim.search.trace import counterexample_data, read, write
from tracker.memory import MemoryTracker
from tracker.strategies import BUILTIN, load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs")


@pytest.mark.parametrize("name", list(BUILTIN))
def test_forced_order_driver_following_a_simpy_runs_arrival_order_reproduces_it(name: str) -> None:
    strategy = load_strategy(name)
    for seed in (0, 1, 2):
        r = replayed_in_own_order(SEED_FAST, strategy, seed)
        assert r.follow.skipped == r.follow.extra == 0
        assert fingerprints(r.again.record) == fingerprints(r.record)
        assert judge(r.again.record) == judge(r.record)


@pytest.mark.parametrize("scenario", scenarios.bundled_names())
def test_every_bundled_world_replays_value_for_value_in_its_own_order(scenario: str) -> None:
    """Every world feature (clocks, latency per kind, pauses, pool waits, HTTP calls, Parallel,
    process deaths, QueueEvents, cancellations, job classes, the user's table) is one the
    forced-order driver reproduces: following a SimPy run's order gives the same run, sent times
    included, for every strategy its [expect] table names."""
    sc = scenarios.load(scenario)
    for name in sorted(set(BUILTIN) | set(sc.expect)):
        strategy = load_strategy(name)
        for seed in (0, 1):
            r = replayed_in_own_order(sc, strategy, seed)
            assert r.follow.skipped == r.follow.extra == 0, (name, seed)
            assert [(s, s.sent_us) for s in r.again.record.steps] == [(s, s.sent_us) for s in r.record.steps], (name, seed)
            assert judge(r.again.record) == judge(r.record), (name, seed)


@pytest.mark.parametrize(
    "kind",
    ["memory", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def test_row_lock_statement_waits_in_forced_order_until_the_holder_commits(kind: str) -> None:
    strategy = load_strategy("row-lock")
    world = World(SEED_FAST.with_values({"job.count": 1}), strategy, MemoryTracker(), 0)
    record = world.run()
    case = case_from_world(world, record, SEED_FAST, 0)
    active, completed = "job-1.active#1", "job-1.completed#1"
    # completed: BEGIN, SELECT FOR UPDATE (locks); then active: BEGIN, SELECT FOR UPDATE (waits).
    order = ["job-1.created#1", completed, completed, active, active, completed, completed, active, active]
    backend = backends.open_backend(backends.BackendSpec(kind))
    try:
        run = run_ordered(case, strategy, backend, FollowSchedule(order))
    finally:
        backends.close_backend(backend)
    assert run.record.rows["job-1"]["status"] == "completed"
    waited = [s for s in run.record.steps if s.blocked_by]
    assert [s.actor for s in waited] == [active]
    assert waited[0].blocked_by == (completed,)
    commit = next(s for s in run.record.steps if s.actor == completed and type(s.op).__name__ == "Commit")
    assert waited[0].executed_us == commit.executed_us  # resumed when the holder committed


@pytest.fixture(scope="module")
def saved_traces(tmp_path_factory) -> dict[str, Path]:
    """A counterexample trace of naive per method, written and read back as files."""
    folder = tmp_path_factory.mktemp("traces")
    naive = load_strategy("naive")
    paths = {}
    for method in ("random", "hypothesis", "exhaustive", "pct"):
        scenario = SEED_FAST.with_values({"job.count": 1}) if method == "exhaustive" else SEED_FAST
        found = explore(scenario, naive, method, seed=0, runs=100).found
        assert found is not None
        data = counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                                   strategy="naive", backend="memory", found_by={"method": method})
        paths[method] = folder / f"{method}.json"
        write(paths[method], data)
    return paths


@pytest.mark.parametrize("method", ["random", "hypothesis", "exhaustive", "pct"])
def test_every_saved_trace_reproduces_exactly_on_memory(saved_traces, method: str) -> None:
    data = read(saved_traces[method])
    result = replay_data(data)
    assert result.reproduced and result.exact
    assert main(["replay", str(saved_traces[method])]) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("method", ["random", "hypothesis", "exhaustive", "pct"])
def test_every_saved_trace_reproduces_on_postgres(saved_traces, method: str) -> None:
    assert main(["replay", str(saved_traces[method]), "--backend", "postgres"]) == 1


def test_replaying_naives_trace_against_fixed_strategies_is_a_regression_test(saved_traces) -> None:
    for name in ("atomic", "row-lock"):
        assert main(["replay", str(saved_traces["hypothesis"]), "--strategy", name]) == 0
    data = read(saved_traces["hypothesis"])
    result = replay_data(data, load_strategy("atomic"))
    assert not result.reproduced and not result.exact
    assert result.skipped == 1  # atomic's 'completed' makes one statement where naive made two


def test_replay_json_says_what_reproduced(saved_traces, capsys) -> None:
    assert main(["replay", str(saved_traces["random"]), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["reproduced"] and out["exact"] and out["strategy"] == "naive" and out["ops"] == 5


def test_traces_are_written_identically_for_the_same_search(saved_traces, tmp_path) -> None:
    found = explore(SEED_FAST, load_strategy("naive"), "random", seed=0, runs=100).found
    assert found is not None
    data = counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                               strategy="naive", backend="memory", found_by={"method": "random"})
    write(tmp_path / "again.json", data)
    assert (tmp_path / "again.json").read_bytes() == saved_traces["random"].read_bytes()


def _mangled(saved: Path, tmp_path: Path, change) -> Path:
    data = json.loads(saved.read_text())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(format="racetrack-trace/99"),
        lambda d: d.pop("actors"),
        lambda d: d.pop("schedule"),
        lambda d: d.update(schedule="not a list"),
        lambda d: d["actors"][0].update(view={"bogus": 1}),
        lambda d: d.update(clocks={}),
        lambda d: d.update(strategy="no-such-strategy"),
        lambda d: d.update(format="racetrack-trace/1"),  # readable, but has no schedule to replay
    ],
    ids=["unknown-version", "no-actors", "no-schedule", "bad-schedule", "bad-view", "no-clocks", "bad-strategy", "v1"],
)
def test_malformed_traces_exit_2_in_one_line(saved_traces, tmp_path, capsys, change) -> None:
    path = _mangled(saved_traces["random"], tmp_path, change)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"racetrack: {path}: ")  # the line names the trace that is wrong


def test_not_json_and_missing_traces_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "x.json").write_text("{not json")
    assert main(["replay", str(tmp_path / "x.json")]) == 2
    assert main(["replay", str(tmp_path / "missing.json")]) == 2
    assert "no such trace file" in capsys.readouterr().err


def test_replay_on_an_unreachable_server_exits_2_in_one_line(saved_traces, capsys) -> None:
    dsn = "postgresql://nobody:secret@127.0.0.1:1/x"  # nothing listens on port 1
    assert main(["replay", str(saved_traces["random"]), "--backend", "postgres", "--dsn", dsn]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "secret" not in err


def test_a_trace_edited_by_hand_is_refused_naming_the_field(tmp_path):
    from sim.search import trace as traces

    path = tmp_path / "t.json"
    found = explore(scenarios.load("seed-fast-jobs"), load_strategy("naive"), "random", seed=0, runs=50).found
    assert found is not None
    data = traces.counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                                      strategy="naive", backend="memory", found_by={"method": "random", "seed": 0})
    traces.write(path, data)
    written = json.loads(path.read_text())
    assert written["digest"] == traces.digest(written) and traces.read(path)["seed"] == data["seed"]

    edited = {**written, "seed": written["seed"] + 1}
    path.write_text(json.dumps(edited))
    with pytest.raises(traces.TraceError, match="digest: the trace's content does not match its digest"):
        traces.read(path)

    repeated = {k: v for k, v in written.items() if k != "digest"}
    repeated["schedule"] = written["schedule"] * 50
    path.write_text(json.dumps(repeated))
    with pytest.raises(traces.TraceError, match=r"schedule: lists \d+ operation\(s\) of '.*' but its steps record \d+"):
        traces.read(path)
    negative = {k: v for k, v in written.items() if k != "digest"}
    negative["params"] = {**written["params"], "job.count": -4}
    path.write_text(json.dumps(negative))
    with pytest.raises(traces.TraceError, match=r"params.job.count: must be >= 1 \(got -4\)"):
        traces.read(path)
