"""The upsert (``Insert(on_conflict_update=...)``): the memory model against a real PostgreSQL,
statement by statement, on PostgreSQL's semantics (EXCLUDED, the guard, waiting for a concurrent
insert or lock, the proposed row's constraints first, the lock a failed guard keeps)."""

from __future__ import annotations

import pytest
from test_postgres import MS, T, both, drive

from sim.search.export import statement
from sim.search.trace import decode_op, encode_op
from tracker.memory import MemoryTracker
from tracker.ops import (
    Begin,
    Col,
    Commit,
    DbNow,
    Excluded,
    Greatest,
    Insert,
    Rollback,
    Update,
    describe,
    lt,
    not_in,
)
from tracker.pg_server import choose_server
from tracker.postgres import PostgresTracker


@pytest.fixture(scope="module")
def pg():
    tracker = PostgresTracker(choose_server().dsn)
    yield tracker
    tracker.close()


#: Insert a row or move it forward: never back from a terminal status.
UPSERT = Insert(
    "j", {"status": "active", "attempts": 1, "max_attempts": 3, "started_at": DbNow()},
    on_conflict_update={"status": Excluded("status"), "attempts": Greatest(Col("attempts"), Excluded("attempts")),
                        "started_at": Col("started_at")},
    conflict_where=(not_in("status", ("completed", "failed")),),
)


@pytest.mark.postgres
def test_upsert_inserts_then_updates_with_excluded_and_keeps_a_guarded_row(pg):
    steps = [
        ("a", UPSERT, T + 2 * MS),  # no row: inserted
        ("b", Insert("j", {"status": "delayed", "attempts": 2, "max_attempts": 3}, on_conflict_update={"status": Excluded("status"),
                     "attempts": Greatest(Col("attempts"), Excluded("attempts"))}), T + 3 * MS),
        ("c", Update("j", {"status": "completed", "completed_at": T + 4 * MS}), T + 4 * MS),
        ("d", UPSERT, T + 5 * MS),  # the guard keeps the completed row
        ("d", Insert("j", {"status": "active"}, on_conflict_update={"completed_at": DbNow()}), T + 6 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[0][0]["status"] == "active"
    assert (postgres[1][0]["status"], postgres[1][0]["attempts"], postgres[1][0]["updated_at"]) == ("delayed", 2, T + 3 * MS)
    assert postgres[3] == (None, None)
    assert postgres[4][0]["completed_at"] == T + 6 * MS


@pytest.mark.postgres
def test_upsert_checks_the_proposed_row_first_and_the_updated_row_after(pg):
    steps = [
        ("a", UPSERT, T + 2 * MS),
        # the proposed row breaks a CHECK: rejected even though it would only update
        ("b", Insert("j", {"status": "completed"}, on_conflict_update={"attempts": 1}), T + 3 * MS),
        # the proposed row is fine, the updated one is not
        ("b", Insert("j", {}, on_conflict_update={"status": "completed"}), T + 4 * MS),
        ("b", Insert("j", {}, on_conflict_update={"status": "nonsense"}), T + 5 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[1][1] == ("23514", "job_status_completed_check")
    assert postgres[2][1] == ("23514", "job_status_completed_check")
    assert postgres[3][1] == ("23514", "job_status_status_check")


@pytest.mark.postgres
def test_upsert_waits_for_a_concurrent_insert_then_updates_what_it_committed(pg):
    steps = [
        ("a", Begin(), T + MS),
        ("a", Insert("j", {"status": "waiting"}), T + 2 * MS),
        ("b", UPSERT, T + 3 * MS),  # waits on the uncommitted row
        ("a", Commit(), T + 4 * MS),
        ("b", "resume", 0),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[2] == ("blocked", ("a",))
    assert postgres[4][0]["status"] == "active" and postgres[4][0]["created_at"] == T + MS


@pytest.mark.postgres
def test_upsert_after_a_rolled_back_insert_inserts(pg):
    steps = [
        ("a", Begin(), T + MS),
        ("a", Insert("j", {"status": "waiting"}), T + 2 * MS),
        ("b", UPSERT, T + 3 * MS),
        ("a", Rollback(), T + 4 * MS),
        ("b", "resume", 0),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[4][0]["created_at"] == T + 3 * MS  # b's own insert


@pytest.mark.postgres
def test_upsert_whose_guard_fails_keeps_the_row_locked_in_its_transaction(pg):
    steps = [
        ("a", Insert("j", {"status": "completed", "completed_at": DbNow(), "started_at": DbNow()}), T + MS),
        ("b", Begin(), T + 2 * MS),
        ("b", UPSERT, T + 3 * MS),  # guard false: no row back, but the row is locked
        ("c", Update("j", {"error_message": "x"}), T + 4 * MS),
        ("b", Commit(), T + 5 * MS),
        ("c", "resume", 0),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[2] == (None, None)
    assert postgres[3] == ("blocked", ("b",))
    assert postgres[5][0]["error_message"] == "x"


@pytest.mark.postgres
def test_upsert_waits_for_a_row_lock_and_evaluates_its_guard_on_the_committed_version(pg):
    steps = [
        ("a", Insert("j", {"status": "waiting"}), T + MS),
        ("b", Begin(), T + 2 * MS),
        ("b", Update("j", {"status": "failed", "failed_at": T + 3 * MS}), T + 3 * MS),
        ("c", UPSERT, T + 4 * MS),
        ("b", Commit(), T + 5 * MS),
        ("c", "resume", 0),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[3] == ("blocked", ("b",))
    assert postgres[5] == (None, None)


def test_excluded_outside_an_upsert_is_refused():
    tracker = MemoryTracker()
    tracker.execute("a", Insert("j", {"status": "waiting"}), T)
    with pytest.raises(ValueError, match="EXCLUDED.status is only known in an upsert"):
        tracker.execute("a", Update("j", {"status": Excluded("status")}), T + MS)
    with pytest.raises(ValueError, match="not both"):
        Insert("j", on_conflict_do_nothing=True, on_conflict_update={})
    with pytest.raises(ValueError, match="give on_conflict_update too"):
        Insert("j", conflict_where=(lt("attempts", 1),))


def test_an_upsert_round_trips_through_a_trace_and_reads_as_sql():
    assert decode_op(encode_op(UPSERT)) == UPSERT
    assert "on_conflict_update" not in encode_op(Insert("j", {"status": "waiting"}))  # older traces unchanged
    sql = statement(UPSERT, T)
    assert "ON CONFLICT (job_id) DO UPDATE SET status = EXCLUDED.status" in sql
    assert "GREATEST(job_status.attempts, EXCLUDED.attempts)" in sql
    assert "WHERE job_status.status NOT IN ('completed', 'failed')" in sql
    assert describe(UPSERT).startswith("INSERT (status='active'") and "ON CONFLICT DO UPDATE" in describe(UPSERT)


@pytest.mark.postgres
def test_every_write_answers_what_returning_star_gives_the_whole_row_in_table_order(pg):
    """The answer of each write is the stored row after it, every column in table order, on both
    backends (the model builds what PostgreSQL's RETURNING * sends)."""
    from tracker.ops import COLUMNS, Select

    writes = [
        ("a", Insert("j", {"status": "waiting", "max_attempts": 3, "progress": {"p": [1]}}), T),
        ("a", Update("j", {"status": "active", "started_at": DbNow(), "attempts": 1}), T + MS),
        ("a", UPSERT, T + 2 * MS),
        ("a", Insert("k", {}, on_conflict_update={"status": "failed"}), T + 3 * MS),
    ]
    for backend in both(pg):
        for session, op, at in writes:
            answer = backend.execute(session, op, at).value
            assert list(answer) == list(COLUMNS)
            assert backend.execute(session, Select(op.job_id), at).value == answer
        backend.end_session("a")
