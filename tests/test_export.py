"""Exports: a trace as an isolation tester spec with real SQL, as a pytest regression test, and
as a readable transcript."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.judge.timeline import transcript
from sim.search.explore import explore
from sim.search.export import isolation_spec, statement, timestamp_literal
from sim.search.trace import counterexample_data, read, write
from tracker import ops
from tracker.strategies import load_strategy

SEED_FAST = scenarios.load("seed-fast-jobs")


@pytest.fixture(scope="module")
def naive_trace(tmp_path_factory):
    found = explore(SEED_FAST, load_strategy("naive"), "hypothesis", seed=0, runs=100).found
    assert found is not None
    path = tmp_path_factory.mktemp("export") / "naive.json"
    write(path, counterexample_data(found.case, found.run.record, found.run.schedule, found.violations,
                                    strategy="naive", backend="memory", found_by={"method": "hypothesis"}))
    return path


def test_timestamps_are_written_as_timestamptz_literals() -> None:
    assert timestamp_literal(1_760_287_012_368_000) == "'2025-10-12 16:36:52.368000+00'::timestamptz"


def test_guarded_update_with_expressions_renders_as_sql() -> None:
    op = ops.Update(
        "job-1",
        {"status": ops.Case((ops.lt("attempts", 2),), "active", ops.Col("status")),
         "started_at": ops.Coalesce(ops.Col("started_at"), ops.DbNow())},
        where=(ops.not_in("status", ("completed", "failed")),),
    )
    sql = statement(op, db_now_us=1_760_287_012_000_000)
    assert sql == (
        "UPDATE job_status SET status = CASE WHEN attempts < 2 THEN 'active' ELSE status END, "
        "started_at = COALESCE(started_at, '2025-10-12 16:36:52.000000+00'::timestamptz /* now() */), "
        # The trigger's now() as the recorded database clock (the spec's trigger keeps it).
        "updated_at = '2025-10-12 16:36:52.000000+00'::timestamptz /* now() */ "
        "WHERE job_id = 'job-1' AND status NOT IN ('completed', 'failed') RETURNING *;"
    )
    assert statement(ops.Select("o'brien", for_update=True)) == "SELECT * FROM job_status WHERE job_id = 'o''brien' FOR UPDATE;"


def test_isolation_spec_has_the_schema_a_session_per_actor_and_the_traces_permutation(naive_trace) -> None:
    spec = isolation_spec(read(naive_trace), "naive.json")
    assert "CREATE TABLE job_status" in spec and "job_status_timestamps_check" in spec
    assert spec.count("\nsession ") == 3
    permutation = next(line for line in spec.splitlines() if line.startswith("permutation "))
    assert permutation.split()[1:] == [
        "job_1_created_1_1", "job_1_completed_1_1", "job_1_completed_1_2", "job_1_active_1_1", "job_1_active_1_2",
    ]
    # The insert pins created_at to the trace's database clock, so a real server agrees.
    assert "created_at, updated_at) VALUES ('job-1', 'waiting', 1, '2025-10-12 16:36:52" in spec


@pytest.mark.slow
def test_pytest_export_passes_for_a_fixed_strategy_and_fails_for_naive(naive_trace, tmp_path) -> None:
    fixed, broken = tmp_path / "test_fixed.py", tmp_path / "test_broken.py"
    assert main(["export", str(naive_trace), "--pytest", str(fixed), "--strategy", "atomic"]) == 0
    assert main(["export", str(naive_trace), "--pytest", str(broken)]) == 0

    def run(path):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
                              capture_output=True, text=True, cwd=tmp_path).returncode

    assert run(fixed) == 0
    assert run(broken) == 1


def test_export_needs_an_output_and_a_replayable_trace(naive_trace, tmp_path) -> None:
    assert main(["export", str(naive_trace)]) == 2
    assert main(["export", str(tmp_path / "missing.json"), "--isolation", str(tmp_path / "x.spec")]) == 2


def test_transcript_marks_the_rejected_write_and_shows_rows_before_and_after(naive_trace) -> None:
    data = read(naive_trace)
    from sim.search.trace import case_from_data, record_from_data

    record, violations = record_from_data(data)
    text = transcript(record, violations, case_from_data(data).clocks)
    marked = [line for line in text.splitlines() if "<-- VIOLATION no-rejected-writes" in line]
    assert len(marked) == 1
    assert "job-1.active#1" in marked[0] and "job_status_timestamps_check" in marked[0]
    assert "status=completed" in marked[0]  # the row before the rejected write
    assert "16:36:52.500000" in marked[0]  # the worker's clock reading
