"""Exported specs checked by PostgreSQL's own isolation tester: every spec runs through
``isolationtester`` against the machine's server (lock waits included), and its transcript says
what the trace says: the same steps in the same order, the same rejected writes, the same rows,
and ``updated_at`` on the trace's database clock, not the server's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sim.engine import scenario as scenarios
from sim.engine.ordered import FollowPrefix, run_ordered
from sim.search.explore import case_for, explore
from sim.search.export import isolation_spec
from sim.search.trace import counterexample_data
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy

psycopg = pytest.importorskip("psycopg")

ONE_JOB = scenarios.load("seed-fast-jobs").with_values({"job.count": 1})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _isolationtester() -> str:
    found = shutil.which("isolationtester")
    if found:
        return found
    for candidate in Path("/usr/lib/postgresql").glob("*/lib/pgxs/src/test/isolation/isolationtester"):
        return str(candidate)
    pytest.skip("PostgreSQL's isolationtester is not installed (Debian: postgresql-client-NN)")


def _us(text: str) -> int:
    return round((datetime.fromisoformat(text.strip()) - EPOCH).total_seconds() * 1_000_000)


def transcript_steps(text: str) -> list[tuple[str, dict[str, str] | None, str | None]]:
    """(step, the row it returned or None, the error or None), in the order steps completed."""
    out: list[tuple[str, dict[str, str] | None, str | None]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"step (\S+): (.*)$", lines[i])
        i += 1
        if not m or m.group(2).endswith("<waiting ...>"):
            continue
        name, row, error = m.group(1), None, None
        while i < len(lines) and not lines[i].startswith("step ") and not lines[i].startswith("starting permutation"):
            if lines[i].startswith("ERROR:"):
                error = lines[i]
            elif "|" in lines[i] and row is None and i + 2 < len(lines) and lines[i + 1].startswith("---"):
                header = [c.strip() for c in lines[i].split("|")]
                if "|" in lines[i + 2]:
                    row = dict(zip(header, (c.strip() for c in lines[i + 2].split("|")), strict=True))
            i += 1
        out.append((name, row, error))
    return out


def run_spec(spec: str, dsn: str) -> str:
    schema = f"racetrack_isolationtester_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            conninfo = psycopg.conninfo.make_conninfo(dsn, options=f"-c search_path={schema} -c TimeZone=UTC")
            done = subprocess.run([_isolationtester(), conninfo], input=spec, capture_output=True, text=True, timeout=120)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    assert done.returncode == 0, done.stderr
    return done.stdout


def compare(data: dict, transcript: str) -> None:
    """The transcript's steps, rows and errors are the trace's."""
    record_steps = [s for s in data["steps"] if s["kind"] == "db"]
    by_name: dict[str, dict] = {}
    nth: dict[str, int] = {}
    for s in record_steps:
        nth[s["actor"]] = nth.get(s["actor"], 0) + 1
        by_name[f"{re.sub(r'[^A-Za-z0-9]+', '_', s['actor']).strip('_').lower()}_{nth[s['actor']]}"] = s
    ran = transcript_steps(transcript)
    assert sorted(n for n, _, _ in ran) == sorted(by_name)
    # Steps complete in the trace's execution order (a lock wait completes when released).
    executed = sorted(by_name, key=lambda n: (by_name[n]["executed_us"], by_name[n]["index"]))
    assert [n for n, _, _ in ran] == executed
    for name, row, error in ran:
        step = by_name[name]
        if step["error"]:
            assert error is not None and step["error"][1] in error, (name, error, step["error"])
            continue
        assert error is None, (name, error)
        expected = step["result"]
        if expected is None:
            assert row is None, (name, row)
            continue
        assert row is not None, name
        assert row["status"] == expected["status"] and int(row["attempts"]) == expected["attempts"], (name, row, expected)
        # The trace's database clock, not the server's date.
        assert _us(row["updated_at"]) == expected["updated_at"], (name, row["updated_at"], expected["updated_at"])


def _data(case, run, strategy: str) -> dict:
    return counterexample_data(case, run.record, run.schedule, run.violations(), strategy=strategy, backend="memory",
                               found_by={"method": "test"})


def traces() -> list[tuple[str, dict]]:
    out = []
    for strategy in ("naive", "three-layer", "row-lock", "atomic", "db-clock"):
        found = explore(ONE_JOB, load_strategy(strategy), "exhaustive", seed=1, worlds=1).found
        if found is not None:
            out.append((f"{strategy}-exhaustive", _data(found.case, found.run, strategy)))
    found = explore(scenarios.load("seed-fast-jobs").with_values({"job.count": 2}), load_strategy("naive"), "pct",
                    seed=0, runs=50).found
    assert found is not None
    out.append(("naive-pct", _data(found.case, found.run, "naive")))
    return out


def lock_wait_trace() -> dict:
    """A row-lock run in which a statement waits for another session's row lock."""
    st = load_strategy("row-lock")
    case = case_for(ONE_JOB, st, 1)
    prefix: list[str] = []
    while True:
        run = run_ordered(case, st, MemoryTracker(), FollowPrefix(prefix))
        if any(s.blocked_by for s in run.record.steps):
            return _data(case, run, "row-lock")
        i = len(run.schedule) - 1
        while i >= 0 and run.choices[i].index(run.schedule[i]) + 1 >= len(run.choices[i]):
            i -= 1
        assert i >= 0, "no order of row-lock's handlers waits for a lock"
        prefix = list(run.schedule[:i]) + [run.choices[i][run.choices[i].index(run.schedule[i]) + 1]]


@pytest.mark.postgres
def test_every_exported_spec_runs_in_isolationtester_as_the_trace_ran(dsn) -> None:
    checked = 0
    for label, data in traces():
        transcript = run_spec(isolation_spec(data, label), dsn)
        compare(data, transcript)
        checked += 1
    assert checked >= 4


@pytest.mark.postgres
def test_a_spec_with_a_lock_wait_waits_in_isolationtester_as_in_the_trace(dsn) -> None:
    data = lock_wait_trace()
    transcript = run_spec(isolation_spec(data, "row-lock-wait"), dsn)
    assert "<waiting ...>" in transcript and "<... completed>" in transcript
    compare(data, transcript)


@pytest.mark.postgres
def test_updated_at_in_the_spec_is_the_traces_clock_not_the_servers(dsn) -> None:
    data = traces()[0][1]
    transcript = run_spec(isolation_spec(data, "naive"), dsn)
    year = datetime.now(UTC).year  # wall-clock ok: the server's real date must not show
    assert all(not str(row["updated_at"]).startswith(str(year)) for _, row, _ in transcript_steps(transcript) if row)
