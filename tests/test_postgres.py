"""The PostgreSQL backend against a real server, chosen as the tool chooses it: DATABASE_URL if
set, else libpq's PG* variables, else the embedded server. CI runs this file both ways."""

from __future__ import annotations

import json
import os
import resource

import psycopg
import pytest
from psycopg import sql

from sim.cli import main
from sim.engine.scenario import bundled_names, load
from sim.runs import sweep
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.runner import plan, run_one, summarize
from tracker.differential import DifferentialTracker
from tracker.memory import CHECKS, NOT_NULL_COLUMNS, MemoryTracker
from tracker.ops import (
    Begin,
    Col,
    Commit,
    DbNow,
    Greatest,
    Insert,
    Select,
    Update,
    ge,
    is_in,
    lt,
    not_in,
)
from tracker.pg_server import choose_server, describe_server, mask_password
from tracker.postgres import ConnectionLost, PostgresTracker
from tracker.strategies import builtin_strategies, load_strategy

T = 1_760_287_012_000_000  # the seed's instant, in microseconds
MS = 1000


@pytest.fixture(scope="module")
def pg(dsn: str):
    tracker = PostgresTracker(dsn)
    yield tracker
    tracker.close()


def both(pg: PostgresTracker) -> list:
    pg.reset()
    return [MemoryTracker(), pg]


def answer(outcome):
    """What must agree: the row, or the error's SQLSTATE and constraint, or whom it waits for."""
    if hasattr(outcome, "blockers"):
        return ("blocked", outcome.blockers)
    return (outcome.value, outcome.error.key() if outcome.error else None)


def drive(backends, steps):
    """The same (session, op, db time) steps on each backend; the answers of each, per backend."""
    results = []
    for backend in backends:
        answers = []
        for session, op, at in steps:
            answers.append(answer(backend.execute(session, op, at) if op != "resume" else backend.resume(session)))
        for session in {s for s, _, _ in steps}:
            backend.end_session(session)
        results.append(answers)
    return results


# --- constraint parity -------------------------------------------------------------------------

SEEDED = ("a", Insert("j", {"status": "waiting", "max_attempts": 2}), T)

#: Every constraint of schema.sql, with a write it rejects.
REJECTED = {
    "job_status_status_check": Update("j", {"status": "paused"}),
    "job_status_attempts_check": Update("j", {"attempts": 3}),
    "job_status_timestamps_check": Update("j", {"started_at": T - 1}),
    "job_status_completed_check": Update("j", {"status": "completed"}),
    "job_status_failed_check": Update("j", {"status": "failed"}),
    "job_status_cancelled_check": Update("j", {"cancelled": True}),
    "job_status_pkey": Insert("j", {"status": "waiting"}),
    # an INSERT: an UPDATE's updated_at = NULL is overwritten by the trigger
    **{f"job_status_{c}_not_null": Insert("k", {c: None}) for c in NOT_NULL_COLUMNS if c != "job_id"},
    "job_status_job_id_not_null": Insert(None, {}),  # type: ignore[arg-type]
}


def test_every_constraint_of_the_schema_has_a_parity_case():
    names = set(CHECKS) | {f"job_status_{c}_not_null" for c in NOT_NULL_COLUMNS} | {"job_status_pkey"}
    assert names == set(REJECTED)


@pytest.mark.postgres
@pytest.mark.parametrize("constraint", sorted(REJECTED))
def test_constraint_rejection_matches_memory(pg, constraint):
    steps = [SEEDED, ("b", REJECTED[constraint], T + 5 * MS)]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[1][1][1] == constraint


@pytest.mark.postgres
def test_more_rejections_match_memory(pg):
    steps = [
        SEEDED,
        ("b", Update("j", {"status": "active", "started_at": T + 5}), T + MS),
        ("b", Update("j", {"completed_at": T + 4}), T + 2 * MS),  # completed before started
        ("b", Update("j", {"failed_at": T + 4}), T + 3 * MS),
        ("b", Update("j", {"attempts": -1}), T + 4 * MS),
        ("c", Insert("k", {"status": "active", "started_at": T - 1}), T),  # started before created
        ("c", Insert("j", {"status": "waiting"}, on_conflict_do_nothing=True), T),
        ("d", Begin(), T + 5 * MS),
        ("d", Update("j", {"status": "completed"}), T + 6 * MS),
        ("d", Select("j"), T + 7 * MS),  # 25P02: the transaction is aborted
        ("d", Commit(), T + 8 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[9][1] == ("25P02", None)


@pytest.mark.postgres
def test_expressions_and_guards_match_memory(pg):
    steps = [
        SEEDED,
        ("b", Update("j", {"attempts": Greatest(Col("attempts"), 1), "status": "active",
                           "started_at": DbNow()}, where=(not_in("status", ("completed", "failed")),)), T + MS),
        ("b", Update("j", {"status": "waiting"}, where=(is_in("status", ()),)), T + 2 * MS),
        ("b", Update("j", {"status": "completed", "completed_at": T + 3 * MS},
                     where=(ge("started_at", T),)), T + 3 * MS),
        ("b", Update("j", {"progress": {"percent": 50, "steps": [1, 2]}}), T + 4 * MS),
        ("b", Update("j", {"error_message": None}, where=(ge("completed_at", None),)), T + 5 * MS),
        # a guard reading now(): it sees the statement's clock, not the previous one
        ("b", Update("j", {"error_message": "late"}, where=(lt("completed_at", DbNow()),)), T + 6 * MS),
        ("b", Update("j", {"error_message": "early"}, where=(ge("updated_at", DbNow()),)), T + 7 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[1][0]["started_at"] == T + MS  # now() is the simulated database clock
    assert postgres[6][0]["updated_at"] == T + 6 * MS and postgres[7] == (None, None)


# --- the simulated clock -----------------------------------------------------------------------


@pytest.mark.postgres
def test_defaults_and_trigger_follow_the_simulated_clock_at_transaction_start(pg):
    pg.reset()
    row = pg.execute("a", Insert("j", {"status": "waiting"}), T).value
    assert (row["created_at"], row["updated_at"]) == (T, T)
    pg.execute("b", Begin(), T + 7 * MS)
    row = pg.execute("b", Update("j", {"status": "active"}), T + 9 * MS).value
    assert row["updated_at"] == T + 7 * MS  # now() is the transaction's start, not the statement's
    pg.execute("b", Commit(), T + 10 * MS)
    assert pg.rows()["j"]["updated_at"] == T + 7 * MS


# --- lock waits --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_update_waits_on_a_row_lock_and_rechecks_its_guard_when_the_blocker_commits(pg):
    steps = [
        SEEDED,
        ("b", Begin(), T + MS),
        ("b", Select("j", for_update=True), T + 2 * MS),
        ("c", Update("j", {"status": "active"}, where=(not_in("status", ("completed",)),)), T + 3 * MS),
        ("b", Update("j", {"status": "completed", "completed_at": T + 4 * MS}), T + 4 * MS),
        ("b", Commit(), T + 5 * MS),
        ("c", "resume", 0),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[3] == ("blocked", ("b",))
    assert postgres[6] == (None, None)  # the guard no longer matches the committed version


@pytest.mark.postgres
def test_a_transactions_first_statement_waits_on_a_row_lock_and_lets_the_blocker_go_on(pg):
    # The first statement goes out with its BEGIN and clock in one pipeline (run_pipeline). Its
    # thread waits there for the lock; were the wait to hold the GIL, the polling thread could
    # not see it wait, nor could b commit: it would end at lock_timeout as a lost connection.
    steps = [
        SEEDED,
        ("b", Begin(), T + MS),
        ("b", Select("j", for_update=True), T + 2 * MS),
        ("c", Begin(), T + 3 * MS),
        ("c", Update("j", {"status": "active", "started_at": DbNow()}), T + 4 * MS),
        ("b", Update("j", {"attempts": 1}), T + 5 * MS),
        ("b", Commit(), T + 6 * MS),
        ("c", "resume", 0),
        ("c", Commit(), T + 7 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[4] == ("blocked", ("b",))
    assert postgres[7][0]["attempts"] == 1 and postgres[7][0]["started_at"] == T + 3 * MS


@pytest.mark.postgres
def test_a_transactions_refused_first_statement_is_its_error_and_the_connection_serves_on(pg):
    # A refusal inside the opening pipeline is the statement's, with its constraint; the
    # transaction is aborted as on the server; the same session's next transaction runs.
    steps = [
        SEEDED,
        ("c", Begin(), T + MS),
        ("c", Update("j", {"status": "completed"}), T + 2 * MS),  # completed without completed_at
        ("c", Select("j"), T + 3 * MS),
        ("c", Commit(), T + 4 * MS),
        ("c", Begin(), T + 5 * MS),
        ("c", Select("j", for_update=True), T + 6 * MS),
        ("c", Update("j", {"status": "active", "started_at": DbNow()}), T + 7 * MS),
        ("c", Commit(), T + 8 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[2][1] is not None and postgres[2][1][1] == "job_status_completed_check"
    assert postgres[3][1] is not None and postgres[3][1][0] == "25P02"  # in a failed transaction
    assert postgres[7][0]["status"] == "active" and postgres[7][0]["started_at"] == T + 5 * MS


@pytest.mark.postgres
def test_a_transaction_opens_on_a_connection_numbered_past_fd_setsize(dsn):
    # A long sweep holds many sockets; select() cannot wait on one numbered 1024 or more.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit[1] != resource.RLIM_INFINITY and limit[1] < 1100:
        pytest.skip(f"the hard limit of open files ({limit[1]}) keeps socket numbers below 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(limit[0], 1100), limit[1]))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    tracker = PostgresTracker(dsn, "racetrack_t_fds")
    try:
        assert tracker.execute("a", Begin(), T).error is None
        assert tracker.execute("a", Insert("j", {"status": "waiting"}), T + MS).value["created_at"] == T
        assert tracker._session("a").conn.fileno() >= 1024
        assert tracker.execute("a", Commit(), T + 2 * MS).error is None
    finally:
        tracker.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)


@pytest.mark.postgres
def test_an_error_in_a_transaction_releases_its_locks_at_once(pg):
    steps = [
        SEEDED,
        ("b", Begin(), T + MS),
        ("b", Select("j", for_update=True), T + 2 * MS),
        ("c", Update("j", {"status": "active"}), T + 3 * MS),
        ("b", Update("j", {"status": "completed"}), T + 4 * MS),  # rejected: aborts b
        ("c", "resume", 0),
        ("d", Update("j", {"status": "delayed"}), T + 5 * MS),
        ("b", Commit(), T + 6 * MS),
    ]
    memory, postgres = drive(both(pg), steps)
    assert memory == postgres
    assert postgres[5][0]["status"] == "active"


@pytest.mark.postgres
def test_row_lock_strategy_really_waits_on_postgres(dsn):
    backend = open_backend(BackendSpec("both", dsn=dsn))
    try:
        waits = 0
        for name, seed in [("progress-tracking", 0), ("progress-tracking", 1), ("cancel-waiting", 0)]:
            result = run_one(load(name), load_strategy("row-lock"), seed, backend)
            assert result.disagreements == ()
            waits += result.row()["lock_waits"]
        assert waits > 0
    finally:
        close_backend(backend)


# --- differential agreement --------------------------------------------------------------------


@pytest.mark.postgres
def test_every_bundled_scenario_and_strategy_agrees_with_memory(dsn):
    items = list(plan([load(n) for n in bundled_names()], builtin_strategies(), runs=2, seed=0))
    rows = list(sweep.execute(items, BackendSpec("both", dsn=dsn)))
    assert len(rows) == len(items)
    disagreeing = [(r["scenario"], r["strategy"], r["seed"], r["first_disagreement"]) for r in rows if r["disagreements"]]
    assert disagreeing == []
    assert all(r["error"] == "" for r in rows)


@pytest.mark.postgres
def test_postgres_results_equal_memory_results(dsn):
    item = next(plan([load("seed-fast-jobs")], [load_strategy("naive")], runs=1, seed=3))
    memory_row = next(sweep.execute([item]))
    postgres_row = next(sweep.execute([item], BackendSpec("postgres", dsn=dsn)))
    ignore = {"backend", "disagreements", "first_disagreement"}
    assert {k: v for k, v in memory_row.items() if k not in ignore} == {
        k: v for k, v in postgres_row.items() if k not in ignore
    }


@pytest.mark.postgres
def test_differential_reports_the_first_disagreement(pg):
    class Lying(MemoryTracker):
        def execute(self, session, op, db_now_us):
            outcome = super().execute(session, op, db_now_us)
            if isinstance(op, Update) and outcome.value is not None:
                return type(outcome)(value={**outcome.value, "attempts": 99})
            return outcome

    diff = DifferentialTracker(Lying(), pg)
    diff.reset()
    diff.execute("a", SEEDED[1], T)
    diff.execute("b", Update("j", {"status": "active"}), T + MS)
    assert len(diff.disagreements) == 1
    assert "attempts=99" in diff.disagreements[0].line() and "attempts=0" in diff.disagreements[0].line()


# --- isolation and safety ----------------------------------------------------------------------


@pytest.mark.postgres
def test_a_sweep_leaves_other_schemas_untouched_and_drops_its_own(dsn):
    canary = f"canary_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(canary)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(canary)))
        # A user's own table with the same name as racetrack's, and the same default now().
        conn.execute(sql.SQL("CREATE TABLE {}.job_status (job_id text PRIMARY KEY, status text, created_at timestamptz DEFAULT now())").format(sql.Identifier(canary)))
        conn.execute(sql.SQL("INSERT INTO {}.job_status VALUES ('job-1', 'mine', '2001-01-01Z')").format(sql.Identifier(canary)))
        try:
            backend = open_backend(BackendSpec("postgres", dsn=dsn))
            schema = backend.schema
            items = list(plan([load("seed-fast-jobs")], builtin_strategies(), runs=1, seed=0))
            list(sweep.execute(items, BackendSpec("postgres", dsn=dsn)))
            close_backend(backend)
            rows = conn.execute(sql.SQL("SELECT job_id, status, created_at FROM {}.job_status").format(sql.Identifier(canary))).fetchall()
            assert [(r[0], r[1], r[2].year) for r in rows] == [("job-1", "mine", 2001)]
            left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
            assert left == (0,)
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(canary)))


@pytest.mark.postgres
def test_two_backends_on_one_server_get_their_own_schemas(dsn):
    first, second = PostgresTracker(dsn), PostgresTracker(dsn)
    try:
        assert first.schema != second.schema
        first.reset()
        second.reset()
        first.execute("a", Insert("j", {"status": "waiting"}), T)
        assert second.rows() == {}
    finally:
        first.close()
        second.close()


def test_server_is_chosen_from_dsn_then_database_url_then_pg_variables():
    env = {"DATABASE_URL": "postgresql://u@db1/x", "PGHOST": "db2"}
    assert choose_server("postgresql://u@db0/x", env).source == "--dsn"
    assert choose_server(None, env) == choose_server(None, {"DATABASE_URL": "postgresql://u@db1/x"})
    assert choose_server(None, {"PGHOST": "db2"}).source == "PG* variables"


@pytest.mark.postgres
def test_run_json_under_both_lists_no_disagreements(dsn, capsys):
    code = main(["run", "seed-fast-jobs", "--strategy", "atomic", "--backend", "both", "--dsn", dsn, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["backend"], out["disagreements"]) == (0, "both", [])


@pytest.mark.postgres
def test_sweep_out_file_has_the_backend_columns(dsn, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code = main(["sweep", "seed-fast-jobs", "--strategies", "db-clock", "--runs", "2", "--backend", "both",
                 "--dsn", dsn, "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)["results"][0]
    assert code == 0 and summary["disagreements"] == 0 and summary["errors"] == 0
    header = out.read_text().splitlines()[0].split(",")
    assert {"error", "disagreements", "first_disagreement"} <= set(header)


def test_password_is_masked_in_descriptions_and_messages():
    url = "postgresql://alice:s3cr3t-pw@db.example.com:6543/jobs"
    assert "s3cr3t" not in describe_server(url)
    assert "db.example.com" in describe_server(url)
    text = f"could not connect with {url} (password=s3cr3t-pw)"
    assert "s3cr3t" not in mask_password(text, url)
    keyvalue = "host=db.example.com password=hunter2 user=bob"
    assert "hunter2" not in mask_password(f"failed: {keyvalue}", keyvalue)


@pytest.mark.parametrize("command", ["run seed-fast-jobs", "sweep seed-fast-jobs --runs 1"])
def test_unreachable_server_exits_2_with_one_line_naming_the_host(capsys, command):
    dsn = "postgresql://alice:s3cr3t-pw@127.0.0.1:1/jobs?connect_timeout=3"
    code = main([*command.split(), "--backend", "postgres", "--dsn", dsn])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "127.0.0.1" in err and "Traceback" not in err
    assert "s3cr3t" not in err


@pytest.mark.postgres
def test_missing_permission_exits_2(dsn, capsys):
    role = f"racetrack_noperm_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            weak = psycopg.conninfo.make_conninfo(dsn, user=role)
            code = main(["run", "seed-fast-jobs", "--backend", "postgres", "--dsn", weak])
            err = capsys.readouterr().err
            assert code == 2
            assert "permission denied" in err and err.count("\n") == 1
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.postgres
def test_bad_schema_prefix_exits_2(dsn, capsys):
    code = main(["run", "seed-fast-jobs", "--backend", "postgres", "--dsn", dsn, "--schema", "Bad-Name"])
    assert code == 2
    assert "--schema" in capsys.readouterr().err
    # a prefix the server reserves is said so, not blamed on the table SQL
    for prefix in ("pg_x", "pg"):  # pg too: racetrack's suffix makes it pg_<pid>_<n>
        assert main(["run", "seed-fast-jobs", "--backend", "postgres", "--dsn", dsn, "--schema", prefix]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"racetrack: --schema {prefix!r}: schema names starting with pg_ are reserved by PostgreSQL")
        assert err.count("\n") == 1


# --- a server that goes away -------------------------------------------------------------------


@pytest.mark.postgres
def test_runs_that_lose_the_server_become_errors_and_the_sweep_goes_on(dsn):
    items = list(plan([load("seed-fast-jobs")], [load_strategy("atomic")], runs=4, seed=0))
    prefix = f"rtkill{os.getpid()}"
    spec = BackendSpec("postgres", dsn=dsn, schema=prefix)
    killed = []

    def kill_racetrack_sessions(row):
        if killed:
            return
        with psycopg.connect(dsn, autocommit=True) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", [prefix + "\\_%"]
            ).fetchall()
            for (pid,) in pids:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        killed.append(len(pids))

    rows = list(sweep.execute(items, spec, on_row=kill_racetrack_sessions))
    assert len(rows) == 4
    assert rows[0]["error"] == ""
    errors = [r for r in rows if r["error"]]
    assert errors and "lost the connection" in errors[0]["error"]
    assert rows[-1]["error"] == ""  # reconnected
    assert summarize(rows)[0]["errors"] == len(errors)


@pytest.mark.postgres
def test_sweep_shows_runs_that_lost_the_server_as_errors_not_as_held(dsn, capsys, monkeypatch):
    real_run_one = sweep.run_one

    def lose_seed_1(scenario, strategy, seed, backend, **limits):
        if seed == 1:
            raise ConnectionLost("lost the connection to PostgreSQL")
        return real_run_one(scenario, strategy, seed, backend, **limits)

    monkeypatch.setattr(sweep, "run_one", lose_seed_1)  # --workers 1 runs the chunks in this process
    code = main(["sweep", "seed-fast-jobs", "--strategies", "atomic", "--runs", "3", "--workers", "1",
                 "--backend", "postgres", "--dsn", dsn])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("racetrack sweep on PostgreSQL: ")
    assert "seed-fast-jobs: could not finish: atomic 1/3 runs" in out.splitlines()
    assert "held" not in out and "errors: 1 run(s) could not finish" in out


@pytest.mark.postgres
def test_connection_lost_is_raised_not_hung(dsn):
    tracker = PostgresTracker(dsn)
    try:
        tracker.reset()
        tracker.execute("a", Insert("j", {"status": "waiting"}), T)
        pid = tracker._sessions["a"].pid
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(ConnectionLost):
            tracker.execute("a", Update("j", {"status": "active"}), T + MS)
    finally:
        tracker.close()
