"""``Parallel`` (``await Promise.all([...])``): a handler's statements in flight at once, each on a
session of its own, in the SimPy driver, the network driver's pool, the forced-order driver,
traces, exports, both backends and live mode."""

from __future__ import annotations

import asyncio
import json

import pytest
import simpy
from worlds import fingerprints, replayed_in_own_order

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.driver import Driver
from sim.engine.interpreter import actor_of
from sim.engine.world import World
from sim.judge.invariants import judge
from sim.record.clocks import EPOCH_US, Clock
from sim.record.history import Actor
from sim.runs.backends import BackendSpec
from sim.runs.runner import plan
from sim.runs.sweep import execute
from sim.search.explore import explore
from sim.search.replay import replay_data
from sim.search.trace import counterexample_data, read, write
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Insert, Parallel, ReadClock, Select, TrackerError, Update, describe
from tracker.strategies import HandlerContext, JobView, load_strategy

PROMISE_ALL = scenarios.load("promise-all")
ONE_JOB = PROMISE_ALL.with_values({"job.count": 1})
SPLIT, PARALLEL = "tracker.strategies.atomic:SPLIT", "tracker.strategies.atomic:PARALLEL"
T = 1_760_287_012_000_000
VIEW = JobView(id="j", attempt=1, attempts_made=0, attempts_started=1, max_attempts=1, timestamp_us=0)
CTX = HandlerContext(host="worker-1")


# --- the operation -----------------------------------------------------------------------------


def test_parallel_takes_statements_only_and_says_which():
    assert Parallel(Select("j"), Update("j", {"status": "active"})).ops == (Select("j"), Update("j", {"status": "active"}))
    assert Parallel().ops == ()
    with pytest.raises(ValueError, match="sends Select, Insert, Update and Rpc statements at once, got Begin()"):
        Parallel(Select("j"), Begin())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='got "UPDATE job_status'):
        Parallel("UPDATE job_status SET status = 'active'")  # type: ignore[arg-type]
    assert describe(Parallel(Select("j"), Update("j", {"attempts": 1}))) == "PARALLEL(SELECT *; UPDATE SET attempts=1)"


# --- the SimPy driver --------------------------------------------------------------------------


def _drive(handler, latency_us):
    """Run one handler on a seeded row with per-session one-way latencies: (driver, backend)."""
    env = simpy.Environment()
    backend = MemoryTracker()
    backend.execute("seed", Insert("j", {"status": "active", "max_attempts": 3}), T)
    clock = Clock("worker-1", 0, 0.0, 1)
    driver = Driver(env, backend, Clock("db", 0, 0.0, 1), lambda name: latency_us[name])
    driver.spawn(Actor("j.active#1", "j", "active", "worker-1", clock), handler, VIEW, CTX)
    env.run()
    return driver, backend


def test_statements_leave_together_on_sessions_of_their_own_and_answer_in_order():
    seen = []

    def handler(job, ctx):
        answers = yield Parallel(Update(job.id, {"attempts": 2}), Select(job.id))
        seen.append(answers)
        seen.append((yield ReadClock()))

    latency = {"j.active#1/1": 3000, "j.active#1/2": 1000}
    driver, backend = _drive(handler, latency)
    db = [s for s in driver.steps if s.kind == "db"]
    assert [s.actor for s in db] == ["j.active#1/2", "j.active#1/1"]  # the later statement arrived first
    assert {s.sent_us for s in db} == {0}
    assert [s.executed_us for s in db] == [1000, 3000]
    (updated, selected), clock = seen
    assert updated["attempts"] == 2 and selected["attempts"] == 0  # the SELECT ran before the UPDATE
    assert clock == EPOCH_US + 6000  # resumed once the last answer was back (3 ms there, 3 ms back)
    assert backend.rows()["j"]["attempts"] == 2


def test_the_first_refusal_back_rejects_at_once_and_the_others_run_on():
    caught = []

    def handler(job, ctx):
        try:
            yield Parallel(Update(job.id, {"attempts": 2}), Update(job.id, {"status": "completed"}))
        except TrackerError as exc:
            caught.append((exc.constraint, (yield ReadClock())))

    latency = {"j.active#1/1": 5000, "j.active#1/2": 1000}
    driver, backend = _drive(handler, latency)
    assert caught == [("job_status_completed_check", EPOCH_US + 2000)]  # back at 2 ms, before the UPDATE arrived (5 ms)
    first = next(s for s in driver.steps if s.actor == "j.active#1/1")
    assert first.executed_us == 5000 and first.error is None
    assert backend.rows()["j"]["attempts"] == 2  # it ran and committed all the same


def test_a_statement_the_table_cannot_take_ends_the_handler_at_its_yield():
    def handler(job, ctx):
        yield Parallel(Select(job.id), Update(job.id, {"no_such_column": 1}))

    driver, _ = _drive(handler, {"j.active#1/1": 1000, "j.active#1/2": 1000})
    assert driver.failure is not None and "no_such_column" in driver.failure
    assert "test_parallel.py" in driver.failure


def test_an_empty_parallel_answers_at_once():
    seen = []

    def handler(job, ctx):
        seen.append((yield Parallel()))
        seen.append((yield ReadClock()))

    driver, _ = _drive(handler, {})
    assert seen == [(), EPOCH_US] and not [s for s in driver.steps if s.kind == "db"]


def test_a_pool_of_one_connection_sends_them_one_after_the_other():
    for pool, overlapping in ((1, False), (10, True)):
        world = World(PROMISE_ALL.with_values({"network.pool_size": pool}), load_strategy(PARALLEL), MemoryTracker(), 0)
        record = world.run()
        pairs: dict[str, list] = {}
        for s in record.steps:
            if s.kind == "db" and actor_of(s.actor) != s.actor:
                pairs.setdefault(actor_of(s.actor), []).append(s)
        assert pairs and all(len(p) == 2 for p in pairs.values())
        overlap = [p for p in pairs.values() if p[1].sent_us < p[0].replied_us and p[0].sent_us < p[1].replied_us]
        assert bool(overlap) == overlapping, pool


# --- the bundled scenario: a strategy difference, both backends --------------------------------


def test_awaited_in_turn_the_split_is_clean_sent_at_once_it_breaks():
    items = list(plan([PROMISE_ALL], [load_strategy(SPLIT), load_strategy(PARALLEL)], runs=30, seed=0))
    rows = list(execute(items))
    split = [r for r in rows if r["strategy"] == "atomic-split"]
    parallel = [r for r in rows if r["strategy"] == "atomic-parallel"]
    assert sum(r["violating"] for r in split) == 0
    assert sum(r["no-rejected-writes"] > 0 for r in parallel) >= 20  # 29-30 in 30 at seeds 0-29


@pytest.mark.postgres
def test_memory_and_postgres_agree_on_every_strategy_the_scenario_names():
    from tracker.pg_server import choose_server

    strategies = [load_strategy(name) for name in PROMISE_ALL.expect]
    items = list(plan([PROMISE_ALL], strategies, runs=3, seed=0))
    rows = list(execute(items, BackendSpec("both", dsn=choose_server(None).dsn)))
    assert [(r["strategy"], r["seed"], r["first_disagreement"]) for r in rows if r["disagreements"]] == []
    assert all(r["error"] == "" for r in rows)


# --- forced order, traces, exports -------------------------------------------------------------


def test_forced_order_following_a_simpy_run_reproduces_it_value_for_value():
    strategy = load_strategy(PARALLEL)
    for seed in (0, 1, 2):
        r = replayed_in_own_order(PROMISE_ALL, strategy, seed)
        assert r.case.branch_latencies and all("/" in b for b in r.case.branch_latencies)
        assert r.follow.skipped == r.follow.extra == 0
        assert fingerprints(r.again.record) == fingerprints(r.record)
        assert judge(r.again.record) == judge(r.record)


@pytest.mark.parametrize("method", ["exhaustive", "pct", "random"])
def test_a_search_finds_the_race_and_its_trace_replays_it(tmp_path, method):
    strategy = load_strategy(PARALLEL)
    found = explore(ONE_JOB, strategy, method=method, seed=0, runs=200)
    ce = found.found
    assert ce is not None
    data = counterexample_data(ce.case, ce.run.record, ce.run.schedule, ce.violations, strategy=PARALLEL,
                               backend="memory", found_by={"method": method})
    path = tmp_path / "t.json"
    write(path, data)
    again = read(path)
    assert any(actor_of(n) != n for n in again["schedule"])
    assert replay_data(again, strategy).reproduced
    assert not replay_data(again, load_strategy(SPLIT)).reproduced  # the fix, as a regression test


def test_a_trace_naming_a_statement_of_no_actor_is_refused(tmp_path, capsys):
    found = explore(ONE_JOB, load_strategy(PARALLEL), method="exhaustive", seed=0, runs=50)
    ce = found.found
    assert ce is not None
    data = counterexample_data(ce.case, ce.run.record, ce.run.schedule, ce.violations, strategy=PARALLEL,
                               backend="memory", found_by={})
    data["schedule"] = [n if actor_of(n) == n else n.rpartition("/")[0] + "/x" for n in data["schedule"]]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "schedule: names" in err and "/x" in err


# --- live: a real BullMQ queue and a real PostgreSQL --------------------------------------------


def test_live_sends_them_at_once_on_connections_of_their_own():
    from test_live import REDIS_URL, short

    from sim.live.redis_server import RedisUnavailable, check_redis
    from sim.live.runs import run_batch

    try:
        asyncio.run(check_redis(REDIS_URL))
    except RedisUnavailable:
        pytest.skip(f"no Redis at {REDIS_URL}")
    batch = asyncio.run(run_batch(short(), load_strategy(PARALLEL), runs=1, seed=0, redis_url=REDIS_URL))
    assert batch.error == ""
    (run,) = batch.runs
    pairs: dict[str, list] = {}
    for s in run.result.record.steps:
        if s.kind == "db" and actor_of(s.actor) != s.actor:
            pairs.setdefault(actor_of(s.actor), []).append(s)
    assert sorted(pairs) == ["job-1.completed#1", "job-2.completed#1", "job-3.completed#1"]
    # Both statements are on the wire before either answer is read: no timing margin needed, the
    # driver starts both tasks before it awaits one.
    for first, second in (sorted(p, key=lambda s: s.actor) for p in pairs.values()):
        assert second.sent_us <= first.replied_us and first.sent_us <= second.replied_us
