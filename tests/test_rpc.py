"""A server-side function call (``Rpc``): its body runs atomically in one round trip, in a
transaction of its own or the caller's; the memory model against a real PostgreSQL, statement by
statement; and the call as one operation in traces, exports and a SimPy run."""

from __future__ import annotations

import pytest
from test_postgres import MS, T, both, drive

from sim.engine import scenario as scenarios
from sim.engine.world import World
from sim.search.export import statement
from sim.search.trace import decode_op, encode_op
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Commit, Insert, Rollback, Rpc, Select, Update, describe, lt
from tracker.pg_server import choose_server
from tracker.postgres import PostgresTracker
from tracker.strategies import load_strategy


@pytest.fixture(scope="module")
def pg():
    tracker = PostgresTracker(choose_server().dsn)
    yield tracker
    tracker.close()


SEEDED = ("a", Insert("j", {"status": "waiting", "max_attempts": 3}), T)
#: Lock the row, then move it to active: the row-lock decision as one call.
ACTIVATE = Rpc("mark_job_active", (Select("j", for_update=True), Update("j", {"status": "active", "attempts": 1}, (lt("attempts", 1),))))
#: A first statement that succeeds and a second the CHECK refuses (completed needs completed_at).
HALF_BAD = Rpc("complete", (Update("j", {"attempts": 2}), Update("j", {"status": "completed"})))
LOOK = ("z", Select("j"), T + 50 * MS)


@pytest.mark.postgres
def test_a_call_commits_its_body_at_once_and_answers_each_statement(pg):
    memory, postgres = drive(both(pg), [SEEDED, ("b", ACTIVATE, T + 2 * MS), LOOK])
    assert memory == postgres
    (answers, error), (row, _) = postgres[1], postgres[2]
    assert error is None and answers[0]["status"] == "waiting" and answers[1]["status"] == "active"
    assert row["status"] == "active" and row["updated_at"] == T + 2 * MS  # now() is the call's arrival


@pytest.mark.postgres
def test_an_error_in_the_body_rolls_all_of_it_back(pg):
    memory, postgres = drive(both(pg), [SEEDED, ("b", HALF_BAD, T + 2 * MS), LOOK])
    assert memory == postgres
    assert postgres[1] == (None, ("23514", "job_status_completed_check"))
    assert postgres[2][0]["attempts"] == 0  # the first statement went with the call


@pytest.mark.postgres
def test_inside_a_transaction_the_call_is_part_of_it(pg):
    steps = [SEEDED, ("b", Begin(), T + MS), ("b", ACTIVATE, T + 2 * MS), ("z", Select("j"), T + 3 * MS),
             ("b", Rollback(), T + 4 * MS), LOOK]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[3][0]["status"] == "waiting"  # not committed by the call
    assert postgres[5][0]["status"] == "waiting"  # rolled back with the caller's transaction


@pytest.mark.postgres
def test_a_call_waits_for_a_lock_mid_body_and_goes_on_after_it(pg):
    steps = [
        SEEDED,
        ("a", Begin(), T + MS), ("a", Select("j", for_update=True), T + 2 * MS),
        ("b", ACTIVATE, T + 3 * MS),  # its SELECT ... FOR UPDATE waits for a
        ("a", Update("j", {"attempts": 1}), T + 4 * MS), ("a", Commit(), T + 5 * MS),
        ("b", "resume", 0),  # the guard now sees attempts = 1: nothing to update
        LOOK,
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[3] == ("blocked", ("a",))
    answers, _ = postgres[6]
    assert answers[0]["attempts"] == 1 and answers[1] is None
    assert postgres[7][0]["status"] == "waiting"


def test_a_body_holds_only_statements():
    with pytest.raises(ValueError, match="non-empty tuple of Select, Insert and Update"):
        Rpc("f", (Begin(),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        Rpc("f", ())


def test_traces_exports_and_timelines_keep_the_call_whole():
    assert decode_op(encode_op(ACTIVATE)) == ACTIVATE
    assert describe(ACTIVATE).startswith("RPC mark_job_active(SELECT * FOR UPDATE; UPDATE SET status='active'")
    sql = statement(ACTIVATE, T)
    assert sql.count(";") == 2 and sql.startswith("SELECT * FROM job_status WHERE job_id = 'j' FOR UPDATE; UPDATE")


def test_a_simulated_run_records_the_call_as_one_operation_and_its_writes_as_committed():
    world = World(scenarios.load("supabase-rpc"), load_strategy("tracker.strategies.row_lock:RPC"), MemoryTracker(), 0)
    record = world.run()
    calls = [s for s in record.steps if s.kind == "db" and isinstance(s.op, Rpc)]
    assert calls and all(isinstance(s.result, tuple) and len(s.result) == 2 for s in calls if s.error is None)
    wrote = [s for s in calls if s.error is None and s.result[1] is not None]
    assert wrote and all(s.committed == (s.result[1],) for s in wrote)
