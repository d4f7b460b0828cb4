"""Invariants that follow the user's table: a column mapping and statuses, invariants switched off,
row invariants (judged by the model, and by PostgreSQL on its backend), and handler writes checked
against the table before any run."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from test_invariants import CLEAN, TRUTH, record, ts, write

from sim.engine import scenario as scenarios
from sim.judge.invariants import judge, judged_ids, verdict_lines
from sim.judge.timeline import render
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.check import check_scenario
from sim.runs.runner import run_one
from tracker.handler_columns import UnknownColumnWrite, check_writes, literal_writes
from tracker.lifecycle import DEFAULT_LIFECYCLE, Lifecycle
from tracker.ops import Insert, Update
from tracker.strategies import Strategy, load_strategy
from tracker.table_sql import TableSqlError, bundled_table, parse_condition, parse_table

DSN = os.environ.get("DATABASE_URL")
needs_postgres = pytest.mark.skipif(not DSN, reason="needs DATABASE_URL")

RENAMED_SQL = """
CREATE TYPE job_state AS ENUM ('queued', 'running', 'done', 'broken', 'cancelled');
CREATE TABLE jobs (
    job_id       text PRIMARY KEY,
    state        job_state NOT NULL DEFAULT 'queued',
    tries        integer NOT NULL DEFAULT 0,
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    began_at     timestamptz,
    finished_at  timestamptz,
    amount       integer
);
"""
RENAMED = parse_table(RENAMED_SQL, "renamed.sql")
LIFECYCLE = Lifecycle(
    status="state", attempts="tries", created_at="inserted_at", started_at="began_at", completed_at="finished_at",
    failed_at="", cancelled="", cancelled_at="",
    waiting=("queued",), delayed=(), active=("running",), completed=("done",), failed=("broken",), removed=("cancelled",),
)


def renamed_row(**changes):
    base = {"job_id": "job-1", "state": "queued", "tries": 0, "inserted_at": ts(0), "began_at": None,
            "finished_at": None, "amount": None}
    base.update(changes)
    return base


def renamed_record(steps, final, lifecycle=LIFECYCLE):
    return replace(record(steps, final), lifecycle=lifecycle)


R_CREATED = renamed_row()
R_ACTIVE = renamed_row(state="running", tries=1, began_at=ts(10))
R_DONE = renamed_row(state="done", tries=1, began_at=ts(10), finished_at=ts(60))


def ids(rec, verdicts=None):
    return [v.invariant for v in judge(rec, verdicts).violations]


# --- the mapping -----------------------------------------------------------------------------


def test_the_invariants_hold_on_a_clean_history_of_a_renamed_table():
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                          write(1, 12, R_ACTIVE, R_CREATED), write(2, 62, R_DONE, R_ACTIVE, actor="job-1.completed#1")], R_DONE)
    assert ids(rec) == []


def test_a_regression_of_the_mapped_status_is_caught_on_the_mapped_columns():
    late = renamed_row(state="running", tries=1, began_at=ts(70), finished_at=ts(60))
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                          write(1, 62, R_DONE, R_CREATED, actor="job-1.completed#1"), write(2, 80, late, R_DONE)], late)
    found = judge(rec).violations
    assert {v.invariant for v in found} >= {"ordered-timestamps", "terminal-status", "monotonic-status", "first-start-kept"}
    ordered = next(v for v in found if v.invariant == "ordered-timestamps")
    assert (ordered.facts["earlier"], ordered.facts["later"]) == ("began_at", "finished_at")
    kept = next(v for v in found if v.invariant == "first-start-kept")
    assert "changed began_at" in kept.detail
    assert next(v for v in found if v.invariant == "terminal-status").facts["expected"] == ["done"]


def test_a_removed_job_is_judged_by_its_status_when_the_table_has_no_cancelled_flag():
    truth = replace(TRUTH, attempts=(), transitions=((0, "waiting"), (5000, "removed")), outcome="removed", outcome_us=5000)
    cancelled = renamed_row(state="cancelled")
    good = replace(renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                                   write(1, 6, cancelled, R_CREATED, actor="job-1.removed#1")], cancelled),
                   truth={"job-1": truth})
    assert ids(good) == []
    bad = replace(good, rows={"job-1": R_CREATED})
    assert ids(bad) == ["terminal-status"]


def test_the_seed_table_judged_with_the_default_mapping_is_unchanged():
    assert CLEAN.lifecycle is DEFAULT_LIFECYCLE and ids(CLEAN) == []
    assert DEFAULT_LIFECYCLE.shown == ("status", "attempts", "started_at", "completed_at", "failed_at", "cancelled")


def test_the_timeline_shows_the_mapped_columns_with_their_timestamps():
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                          write(1, 12, R_ACTIVE, R_CREATED)], R_ACTIVE)
    text = render(rec, [])
    assert "state:queued->running" in text and "began_at:NULL->16:36:52" in text
    assert "status" not in text.replace("job_status", "")


def test_an_invariant_switched_off_is_not_judged_and_not_counted():
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                          write(1, 12, R_ACTIVE, R_CREATED)], R_ACTIVE)
    assert "terminal-status" in ids(rec)
    off = replace(rec, lifecycle=replace(LIFECYCLE, off=("terminal-status",)))
    assert "terminal-status" not in ids(off)
    assert len(judged_ids(off.lifecycle)) == 6
    assert verdict_lines([], [], len(judged_ids(off.lifecycle))) == ["verdict: all 6 invariants held"]


# --- row invariants --------------------------------------------------------------------------


def rule(sql, table=RENAMED):
    from tracker.lifecycle import RowInvariant

    shown, expr, reads = parse_condition(table, sql)
    return RowInvariant("paid", shown, expr, reads, tuple(c for c in reads if c.endswith("_at")))


def test_a_row_invariant_is_violated_by_the_version_where_it_is_false():
    paid = rule("state <> 'done' OR amount IS NOT NULL")
    lc = replace(LIFECYCLE, rows=(paid,))
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                          write(1, 12, R_ACTIVE, R_CREATED), write(2, 62, R_DONE, R_ACTIVE, actor="job-1.completed#1")],
                         R_DONE, lc)
    (found,) = judge(rec).violations
    assert found.invariant == "row:paid" and found.step == 2
    assert found.facts["values"] == {"state": "done", "amount": None}
    assert "state <> 'done' OR amount IS NOT NULL is false" in found.detail
    paid_row = dict(R_DONE, amount=3)
    clean = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {})),
                            write(1, 62, paid_row, R_CREATED, actor="job-1.completed#1")], paid_row, lc)
    assert ids(clean) == []


def test_a_row_invariant_that_is_null_passes_like_a_check():
    lc = replace(LIFECYCLE, rows=(rule("amount > 0"),))
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {}))], R_CREATED, lc)
    assert "row:paid" not in ids(rec)  # amount is NULL: unknown, not false


def test_the_judge_takes_the_servers_verdicts_when_given():
    lc = replace(LIFECYCLE, rows=(rule("amount > 0"),))
    rec = renamed_record([write(0, 1, R_CREATED, actor="job-1.created#1", op=Insert("job-1", {}))], R_CREATED, lc)
    assert "row:paid" not in ids(rec)
    assert "row:paid" in ids(rec, {(0, 0): (False,)})


def test_a_row_invariant_compares_enum_values_in_label_order():
    later = rule("state >= 'done' OR began_at IS NULL")
    assert later.expr is not None
    from tracker.table import evaluate

    assert evaluate(later.expr, renamed_row(state="cancelled", began_at=ts(1)), 0) is True  # cancelled comes after done
    assert evaluate(later.expr, renamed_row(state="running", began_at=ts(1)), 0) is False


@pytest.mark.parametrize("sql", ["amount +", "amount + 1 > 0", "state IN (SELECT 1)", "began_at < now()", "nope IS NULL",
                                 "true; DROP TABLE jobs", "amount", "x.amount IS NULL"])
def test_a_row_invariant_the_model_cannot_evaluate_exactly_is_refused(sql):
    with pytest.raises(TableSqlError):
        parse_condition(RENAMED, sql)


# --- scenarios -------------------------------------------------------------------------------


def write_scenario(tmp_path, text, sql=RENAMED_SQL):
    (tmp_path / "t.sql").write_text(sql)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


MAPPED = """
[table]
sql = "t.sql"

[table.columns]
status = "state"
attempts = "tries"
created_at = "inserted_at"
started_at = "began_at"
completed_at = "finished_at"
failed_at = ""
cancelled = ""
cancelled_at = ""

[table.statuses]
waiting = ["queued"]
delayed = []
active = ["running"]
completed = ["done"]
failed = ["broken"]
removed = ["cancelled"]

[invariants]
off = ["faithful-timestamps"]

[invariants.rows]
paid = "state <> 'done' OR amount IS NOT NULL"
"""


def test_a_scenario_declares_its_mapping_its_off_list_and_its_rows(tmp_path):
    loaded = scenarios.load(str(write_scenario(tmp_path, MAPPED)))
    lc = loaded.lifecycle
    assert (lc.status, lc.attempts, lc.started_at, lc.failed_at) == ("state", "tries", "began_at", "")
    assert lc.removed == ("cancelled",) and lc.off == ("faithful-timestamps",)
    assert [r.id for r in lc.rows] == ["row:paid"] and lc.rows[0].reads == ("state", "amount")
    assert json.loads(json.dumps(loaded.to_toml_table()))["invariants.rows"] == {"paid": "state <> 'done' OR amount IS NOT NULL"}


def test_a_mapping_naming_a_missing_column_is_refused_at_load_with_its_line(tmp_path):
    path = write_scenario(tmp_path, MAPPED.replace('started_at = "began_at"', 'started_at = "begun_at"'))
    with pytest.raises(scenarios.ScenarioError, match=r"s.toml: line 9: table.columns.started_at names column 'begun_at'"):
        scenarios.load(str(path))


def test_table_sql_checks_the_scenarios_mapping_against_the_new_table(tmp_path):
    loaded = scenarios.load(str(write_scenario(tmp_path, MAPPED)))
    with pytest.raises(scenarios.ScenarioError, match="table.columns.status names column 'state'"):
        loaded.with_table(bundled_table(), "tracker/schema.sql")


def test_the_bundled_own_table_scenario_has_its_table_statuses_and_row_invariant():
    loaded = scenarios.load("own-table")
    assert loaded.table is not None and loaded.table.column("queue_name").not_null
    assert "cancelled" in loaded.table.column("status").labels
    assert "cancelled" in loaded.lifecycle.removed
    assert [r.id for r in loaded.lifecycle.rows] == ["row:active-not-finished"]


def test_a_run_counts_row_invariants_in_violations_and_in_their_own_column():
    loaded = scenarios.load("own-table")
    row_ = run_one(loaded, load_strategy("naive"), 1).row()
    own = json.loads(row_["row_invariants"])
    assert own["active-not-finished"] > 0
    assert row_["violations"] == sum(row_[i] for i in judged_ids(DEFAULT_LIFECYCLE)) + own["active-not-finished"]
    assert row_["first_violation"]
    plain = run_one(scenarios.load("seed-fast-jobs"), load_strategy("naive"), 1).row()
    assert "row_invariants" not in plain


def test_check_judges_an_expectation_on_a_row_invariant():
    verdicts = check_scenario("own-table", scenarios.load("own-table"), runs=10)
    naive = next(v for v in verdicts if v.expectation.strategy == "naive")
    assert naive.passed and naive.tallies["row:active-not-finished"].violating_runs > 0
    atomic = next(v for v in verdicts if v.expectation.strategy == "atomic")
    assert atomic.passed and atomic.tallies["row:active-not-finished"].violating_runs == 0


def test_results_files_get_the_row_invariants_column_only_when_a_scenario_has_row_invariants(tmp_path):
    import pyarrow.parquet as pq

    from sim.runs.sweep import Execution, Sweep, SweepRun

    for name, expected in (("own-table", True), ("process-success", False)):
        out = tmp_path / f"{name}.parquet"
        with SweepRun(Sweep((scenarios.load(name),), ("naive",), 2, 0), Execution(workers=1), out) as run:
            list(run.rows())
        table = pq.read_table(out)
        assert ("row_invariants" in table.column_names) is expected
        if expected:
            assert all(json.loads(v)["active-not-finished"] >= 0 for v in table.column("row_invariants").to_pylist())


# --- handlers against the table -------------------------------------------------------------


def writes_owner(job, ctx):
    yield Update(job.id, {"status": "active", "owner_id": ctx})


def writes_owner_on_insert(job, ctx):
    yield Insert(job.id, values={"owner_id": 1})


def test_literal_column_writes_are_read_from_the_handlers_source():
    found = list(literal_writes(writes_owner))
    assert [(w.operation, w.column) for w in found] == [("Update", "status"), ("Update", "owner_id")]
    assert found[0].file.endswith("test_table_rules.py") and found[0].line == writes_owner.__code__.co_firstlineno + 1
    assert [w.column for w in literal_writes(writes_owner_on_insert)] == ["owner_id"]


def test_a_handler_writing_a_column_the_table_lacks_is_refused_before_any_run():
    strategy = Strategy("owner", "writes owner_id", on_active=writes_owner)
    with pytest.raises(UnknownColumnWrite, match=r"test_table_rules.py:\d+: strategy owner: handler writes_owner \(active\) Update writes column 'owner_id'"):
        check_writes(strategy, bundled_table())
    with_owner = parse_table("CREATE TABLE job_status (job_id text PRIMARY KEY, status text, max_attempts int, owner_id text);", "o.sql")
    check_writes(strategy, with_owner)  # the same handler against a table that has the column


def test_every_builtin_strategy_writes_only_columns_of_the_seed_table_and_the_bundled_own_table():
    for name in ("naive", "three-layer", "atomic", "row-lock", "db-clock"):
        check_writes(load_strategy(name), bundled_table())
        check_writes(load_strategy(name), scenarios.load("own-table").table)


# --- PostgreSQL ------------------------------------------------------------------------------


@needs_postgres
def test_postgres_evaluates_row_invariants_like_the_model_on_tricky_rows():
    from tracker.postgres import PostgresTracker
    from tracker.table import evaluate

    rules = [rule(s) for s in ("state <> 'done' OR amount IS NOT NULL", "state >= 'done' OR began_at IS NULL",
                               "COALESCE(amount, 0) BETWEEN 0 AND 5", "began_at <= finished_at",
                               "CASE state WHEN 'broken' THEN tries > 0 ELSE true END", "amount IS DISTINCT FROM 3")]
    rows = [renamed_row(), R_ACTIVE, R_DONE, dict(R_DONE, amount=3), renamed_row(state="cancelled", began_at=ts(5)),
            renamed_row(state="broken", tries=0, amount=9), dict(R_DONE, finished_at=ts(1))]
    tracker = PostgresTracker(DSN, "racetrack_rowrules", table=RENAMED)
    try:
        theirs = tracker.row_verdicts(tuple(r.sql for r in rules), rows)
    finally:
        tracker.close()
    mine = [tuple(evaluate(r.expr, row_, 0) for r in rules) for row_ in rows]
    assert theirs == mine
    assert {v for answer in theirs for v in answer} == {True, False, None}


@needs_postgres
def test_the_postgres_backend_judges_row_invariants_with_the_servers_verdicts(monkeypatch):
    from tracker.postgres import PostgresTracker

    loaded = scenarios.load("own-table")
    memory = run_one(loaded, load_strategy("naive"), 1)
    asked: list[int] = []
    original = PostgresTracker.row_verdicts

    def spy(self, conditions, rows):
        asked.append(len(rows))
        return original(self, conditions, rows)

    monkeypatch.setattr(PostgresTracker, "row_verdicts", spy)
    backend = open_backend(BackendSpec("postgres", DSN), loaded.table)
    try:
        postgres = run_one(loaded, load_strategy("naive"), 1, backend)
    finally:
        close_backend(backend)
    assert asked and asked[0] > 0
    rows_of = [v.line() for v in postgres.violations if v.invariant.startswith("row:")]
    assert rows_of and rows_of == [v.line() for v in memory.violations if v.invariant.startswith("row:")]


@needs_postgres
def test_memory_and_postgres_agree_on_the_bundled_own_table_scenario():
    loaded = scenarios.load("own-table")
    backend = open_backend(BackendSpec("both", DSN), loaded.table)
    try:
        for strategy in ("naive", "three-layer", "atomic", "row-lock", "db-clock"):
            for seed in range(3):
                result = run_one(loaded, load_strategy(strategy), seed, backend)
                assert result.disagreements == (), (strategy, seed, result.disagreements[:1])
    finally:
        close_backend(backend)

