"""The in-memory tracker enforces the schema file's rules and READ COMMITTED's locking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.backend import Blocked, Done
from tracker.memory import CHECKS, NOT_NULL_COLUMNS, MemoryTracker, check_row
from tracker.ops import (
    COLUMNS,
    Begin,
    Coalesce,
    Col,
    Commit,
    DbNow,
    Greatest,
    Insert,
    Rollback,
    Select,
    Update,
    lt,
    ne,
)

SCHEMA = (Path(__file__).resolve().parents[1] / "tracker" / "schema.sql").read_text()
T0 = 1_760_287_012_000_000


def schema_table_body() -> str:
    return SCHEMA[SCHEMA.index("CREATE TABLE job_status (") : SCHEMA.index(");")]


def test_schema_columns_match_the_operations_column_list_in_order():
    names = re.findall(r"^\s{4}(\w+)\s+(text|integer|timestamptz|jsonb|boolean)", schema_table_body(), re.M)
    assert [(n, t) for n, t in names] == list(COLUMNS.items())


def test_every_check_constraint_of_the_schema_is_enforced_by_the_model_and_no_other():
    in_schema = set(re.findall(r"CONSTRAINT (\w+)\s+CHECK", SCHEMA))
    assert in_schema == set(CHECKS)


def test_not_null_columns_match_the_schema():
    columns = re.findall(r"^\s{4}(\w+)\s+(?:text|integer|timestamptz|jsonb|boolean)\s+(.*)$", schema_table_body(), re.M)
    in_schema = {name for name, rest in columns if "NOT NULL" in rest}
    assert in_schema == set(NOT_NULL_COLUMNS)


def done(outcome):
    assert isinstance(outcome, Done), outcome
    return outcome


def fresh(**values):
    tracker = MemoryTracker()
    done(tracker.execute("producer", Insert("j", values), T0))
    return tracker


VIOLATING_UPDATES = {
    "job_status_status_check": {"status": "running"},
    "job_status_attempts_check": {"attempts": 4},
    "job_status_timestamps_check": {"started_at": T0 - 1},
    "job_status_completed_check": {"status": "completed"},
    "job_status_failed_check": {"status": "failed"},
    "job_status_cancelled_check": {"cancelled": True},
}


@pytest.mark.parametrize("constraint", sorted(VIOLATING_UPDATES))
def test_each_check_rejects_a_violating_update_with_its_postgres_name(constraint):
    tracker = fresh(max_attempts=3)
    outcome = done(tracker.execute("s", Update("j", VIOLATING_UPDATES[constraint]), T0 + 10))
    assert outcome.error is not None
    assert (outcome.error.sqlstate, outcome.error.constraint) == ("23514", constraint)
    assert f'violates check constraint "{constraint}"' in outcome.error.message
    assert tracker.rows()["j"]["status"] == "pending"  # nothing was written


def test_completed_before_started_is_rejected_but_completed_without_started_is_allowed():
    tracker = fresh()
    ok = done(tracker.execute("s", Update("j", {"status": "completed", "completed_at": T0 + 5}), T0 + 6))
    assert ok.error is None
    bad = done(tracker.execute("s", Update("j", {"started_at": T0 + 9}), T0 + 10))  # the seed's failing row
    assert bad.error is not None and bad.error.constraint == "job_status_timestamps_check"


def test_not_null_and_primary_key_are_enforced():
    tracker = fresh()
    nn = done(tracker.execute("s", Update("j", {"status": None}), T0))
    assert nn.error is not None and (nn.error.sqlstate, nn.error.constraint) == ("23502", "job_status_status_not_null")
    dup = done(tracker.execute("s", Insert("j", {}), T0))
    assert dup.error is not None and (dup.error.sqlstate, dup.error.constraint) == ("23505", "job_status_pkey")
    assert done(tracker.execute("s", Insert("j", {}, on_conflict_do_nothing=True), T0)).value is None


def test_defaults_and_the_updated_at_trigger_use_the_database_clock():
    tracker = MemoryTracker()
    row = done(tracker.execute("s", Insert("j", {"status": "waiting"}), T0)).value
    assert row["created_at"] == row["updated_at"] == T0 and row["attempts"] == 0 and row["cancelled"] is False
    row = done(tracker.execute("s", Update("j", {"attempts": 1}), T0 + 7)).value
    assert row["updated_at"] == T0 + 7 and row["created_at"] == T0


def test_expressions_see_the_row_before_the_statement():
    tracker = fresh(max_attempts=5)
    row = done(tracker.execute("s", Update("j", {
        "started_at": Coalesce(Col("started_at"), Greatest(Col("created_at"), T0 - 100)),
        "attempts": Greatest(Col("attempts"), 2),
        "completed_at": DbNow(),
    }), T0 + 50)).value
    assert row["started_at"] == T0 and row["attempts"] == 2 and row["completed_at"] == T0 + 50


def test_a_guard_comparing_with_null_does_not_match():
    tracker = fresh()
    assert done(tracker.execute("s", Update("j", {"attempts": 1}, where=(lt("started_at", T0 + 1),)), T0)).value is None


def test_uncommitted_writes_are_invisible_to_other_sessions_and_visible_after_commit():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Update("j", {"status": "active"}), T0))
    assert done(tracker.execute("b", Select("j"), T0)).value["status"] == "pending"
    assert done(tracker.execute("a", Select("j"), T0)).value["status"] == "active"
    done(tracker.execute("a", Commit(), T0))
    assert done(tracker.execute("b", Select("j"), T0)).value["status"] == "active"


def test_now_is_the_transaction_start_inside_a_transaction():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0 + 100))
    row = done(tracker.execute("a", Update("j", {"completed_at": DbNow()}), T0 + 900)).value
    assert row["completed_at"] == T0 + 100 and row["updated_at"] == T0 + 100


def test_select_for_update_waits_for_the_lock_holder_and_sees_its_commit():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Select("j", for_update=True), T0))
    done(tracker.execute("b", Begin(), T0))
    assert tracker.execute("b", Select("j", for_update=True), T0) == Blocked(("a",))
    done(tracker.execute("a", Update("j", {"status": "active"}), T0))
    assert isinstance(tracker.resume("b"), Blocked)  # still held until a ends
    done(tracker.execute("a", Commit(), T0))
    assert done(tracker.resume("b")).value["status"] == "active"


def test_a_blocked_update_rechecks_its_guard_on_the_version_the_blocker_committed():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Update("j", {"status": "completed", "completed_at": T0}), T0))
    guarded = Update("j", {"status": "active"}, where=(ne("status", "completed"),))
    assert isinstance(tracker.execute("b", guarded, T0), Blocked)  # pending matches the guard: waits
    done(tracker.execute("a", Commit(), T0))
    assert done(tracker.resume("b")).value is None  # EvalPlanQual: completed now, no match
    assert tracker.rows()["j"]["status"] == "completed"


def test_an_error_aborts_the_transaction_until_rollback_and_commit_then_rolls_back():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Update("j", {"attempts": 0, "status": "waiting"}), T0))
    assert done(tracker.execute("a", Update("j", {"status": "nope"}), T0)).error.constraint == "job_status_status_check"
    assert done(tracker.execute("a", Select("j"), T0)).error.sqlstate == "25P02"
    done(tracker.execute("a", Commit(), T0))
    assert tracker.rows()["j"]["status"] == "pending"  # the good update was rolled back too
    assert tracker.lock_holders() == {}


def test_an_insert_waits_for_another_sessions_uncommitted_insert_of_the_same_key():
    tracker = MemoryTracker()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Insert("j", {}), T0))
    assert tracker.execute("b", Insert("j", {}), T0) == Blocked(("a",))
    done(tracker.execute("a", Rollback(), T0))
    assert done(tracker.resume("b")).value["job_id"] == "j"


def test_ending_a_session_rolls_back_its_open_transaction_and_frees_its_locks():
    tracker = fresh()
    done(tracker.execute("a", Begin(), T0))
    done(tracker.execute("a", Update("j", {"status": "active"}), T0))
    tracker.end_session("a")
    assert tracker.rows()["j"]["status"] == "pending" and tracker.lock_holders() == {}


values = st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(["pending", "waiting", "active", "completed", "failed", "delayed", "bogus"]),
    "attempts": st.integers(-1, 4),
    "started_at": st.one_of(st.none(), st.integers(T0 - 5, T0 + 5)),
    "completed_at": st.one_of(st.none(), st.integers(T0 - 5, T0 + 5)),
    "failed_at": st.one_of(st.none(), st.integers(T0 - 5, T0 + 5)),
    "cancelled": st.booleans(),
    "cancelled_at": st.one_of(st.none(), st.integers(T0, T0 + 5)),
})


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(values, max_size=8))
def test_committed_rows_always_satisfy_every_constraint(updates):
    tracker = fresh(max_attempts=3)
    for i, change in enumerate(updates):
        outcome = done(tracker.execute("s", Update("j", change), T0 + i))
        assert (outcome.error is None) == (outcome.value is not None)
        assert check_row(tracker.rows()["j"]) is None
