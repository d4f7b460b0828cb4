"""Faults on a real server become error rows, and --resume retries exactly those.

Each fault hits the run after the first of an in-process sweep (one run per chunk, so the sweep's
``on_rows`` callback runs between runs): its sessions killed by ``pg_terminate_backend`` from
another connection, ``statement_timeout`` hit (set through the DSN's ``options``; a trigger in
racetrack's own schema sleeps past it), a full disk (SQLSTATE 53100, raised by such a trigger).
The sweep finishes; the hit run is an error row naming what happened; the rest equal a sweep
without faults; ``--resume`` reruns that one run only and then everything equals it.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from sim.engine.scenario import load
from sim.runs import sweep
from sim.runs.backends import BackendSpec
from sim.runs.sweep import Execution, Sweep, SweepRun
from tracker.pg_server import choose_server

pytestmark = pytest.mark.postgres
RUNS = 4
HIT = 1  # the run the fault lands on


@pytest.fixture(scope="module")
def dsn() -> str:
    return choose_server().dsn


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


def sweep_rows(dsn: str, prefix: str, out, resume: bool = False, between=None) -> list[dict]:
    job = Sweep((load("seed-fast-jobs"),), ("atomic",), RUNS, 0, BackendSpec("postgres", dsn, prefix))
    run = SweepRun(job, Execution(workers=1), out, resume, on_rows=between)
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
