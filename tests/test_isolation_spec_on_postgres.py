"""The exported isolation tester spec is real SQL for a real PostgreSQL: run its setup, then its
steps in the permutation's order, one connection per session (as the isolation tester does for a
permutation without lock waits), and the server rejects the same write the trace recorded."""

from __future__ import annotations

import os
import re

import pytest

from sim.engine import scenario as scenarios
from sim.search.explore import explore
from sim.search.export import isolation_spec
from sim.search.trace import counterexample_data
from tracker.strategies import load_strategy

psycopg = pytest.importorskip("psycopg")


def parse_spec(spec: str) -> tuple[str, dict[str, tuple[str, str]], list[str]]:
    """(setup SQL, step name -> (session, SQL), permutation)."""
    setup = re.search(r"^setup\n\{\n(.*?)\n\}", spec, re.S | re.M)
    assert setup is not None
    steps, session = {}, None
    for line in spec.splitlines():
        if line.startswith("session "):
            session = line.split()[1]
        m = re.match(r"step (\S+) \{ (.*) \}$", line)
        if m:
            steps[m.group(1)] = (session, m.group(2))
    permutation = next(line for line in spec.splitlines() if line.startswith("permutation ")).split()[1:]
    return setup.group(1), steps, permutation


@pytest.mark.postgres
def test_naive_counterexample_spec_reproduces_the_check_violation_on_postgresql(dsn) -> None:
    found = explore(scenarios.load("seed-fast-jobs"), load_strategy("naive"), "hypothesis", seed=0, runs=100).found
    assert found is not None
    data = counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                               strategy="naive", backend="memory", found_by={"method": "hypothesis"})
    setup, steps, permutation = parse_spec(isolation_spec(data))
    schema = f"racetrack_isolation_{os.getpid()}"  # the spec's SQL is unqualified: its own search_path
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            admin.execute(f"SET search_path = {schema}")
            admin.execute(setup)
            options = f"-c search_path={schema}"
            sessions = {s: psycopg.connect(dsn, autocommit=True, options=options) for s, _ in steps.values()}
            errors = {}
            try:
                for name in permutation:
                    session, sql = steps[name]
                    try:
                        sessions[session].execute(sql)
                    except psycopg.errors.CheckViolation as exc:
                        errors[name] = exc.diag.constraint_name
            finally:
                for conn in sessions.values():
                    conn.close()
            expected = {s.actor for s in found.run.record.steps if s.error and s.error[0] == "23514"}
            assert [steps[n][0] for n in errors] == [re.sub(r"[^a-z0-9]+", "_", a) for a in expected]
            assert set(errors.values()) == {"job_status_timestamps_check"}
            row = admin.execute("SELECT status, completed_at IS NOT NULL, started_at FROM job_status").fetchone()
            memory_row = found.run.record.rows["job-1"]
            assert row == (memory_row["status"], True, None)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
