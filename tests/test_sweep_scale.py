"""Sweeps that scale: worker count, streaming to a partial file, resume, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from interrupting import interrupt

from sim.cli import main
from sim.engine.scenario import load
from sim.runs import results_file
from sim.runs.sweep import Chunk, Execution, Sweep, SweepError, SweepRun, _in_order

RACETRACK = [sys.executable, "-c", "from sim.cli import entry; entry()"]
SWEEP = ["sweep", "seed-fast-jobs", "--strategies", "naive,atomic", "--runs", "24"]


def _sweep(tmp_path: Path, name: str, *extra: str) -> bytes:
    out = tmp_path / name
    assert main([*SWEEP, "--out", str(out), "--json", *extra]) == 0
    return out.read_bytes()


def test_two_workers_write_the_same_bytes_as_one(tmp_path, capsys):
    one = _sweep(tmp_path, "one.parquet", "--workers", "1")
    json_one = capsys.readouterr().out
    two = _sweep(tmp_path, "two.parquet", "--workers", "2")
    json_two, progress = capsys.readouterr()
    assert progress == ""  # not a terminal (and --json): no progress bar
    assert one == two
    assert json_one == json_two
    table = pq.read_table(tmp_path / "two.parquet")
    assert table.num_rows == 48
    assert table.column("seed").to_pylist() == list(range(24)) * 2  # plan order: strategy, then seed
    assert table.column("strategy").to_pylist() == ["naive"] * 24 + ["atomic"] * 24


def test_csv_is_identical_across_worker_counts_and_leaves_no_partial(tmp_path):
    assert _sweep(tmp_path, "a.csv", "--workers", "1") == _sweep(tmp_path, "b.csv", "--workers", "2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_chunks_cover_the_plan_once_and_skip_what_is_done():
    sweep = Sweep((load("seed-fast-jobs"),), ("naive", "atomic"), runs=10, seed=5)
    def seeds(chunks: list[Chunk]) -> list[tuple[str, int]]:
        return [(c.strategy, s) for c in chunks for s in range(c.seed, c.seed + c.count)]
    everything = seeds(list(sweep.chunks(3)))
    assert everything == [(st, 5 + i) for st in ("naive", "atomic") for i in range(10)]
    assert seeds(list(sweep.chunks(3, skip=13))) == everything[13:]
    assert max(c.count for c in sweep.chunks(3)) == 3


def test_in_order_keeps_a_bounded_number_of_chunks_in_flight():
    class Recorder:
        window = 3
        def __init__(self):
            self.submitted = self.collected = self.most = 0
        def submit(self, chunk):
            self.submitted += 1
            self.most = max(self.most, self.submitted - self.collected)
            recorder = self
            class Done:
                def result(self):
                    recorder.collected += 1
                    return [chunk]
                def cancel(self):
                    return True
            return Done()
    recorder = Recorder()
    out = [rows[0] for rows in _in_order(recorder, range(100))]
    assert out == list(range(100))
    assert recorder.most <= 3


def _interrupted(out: Path, after: int, runs: int = 24) -> int:
    """Run the SWEEP into ``out`` and interrupt it (as Ctrl-C would) once ``after`` rows are in."""
    return interrupt(Sweep((load("seed-fast-jobs"),), ("naive", "atomic"), runs=runs), out, after)


def test_resume_after_interrupt_ends_with_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(results_file, "ROW_GROUP_ROWS", 10)  # several row groups in a small file
    whole = _sweep(tmp_path, "whole.parquet", "--workers", "1")
    out = tmp_path / "cut.parquet"
    done = _interrupted(out, after=20)
    assert 0 < done < 48
    assert not out.exists() and (tmp_path / "cut.parquet.partial").exists()
    assert main([*SWEEP, "--out", str(out), "--json", "--workers", "2", "--resume"]) == 0
    assert out.read_bytes() == whole
    assert not (tmp_path / "cut.parquet.partial").exists()
    assert [rg.num_rows for rg in (pq.ParquetFile(out).metadata.row_group(i) for i in range(5))] == [10, 10, 10, 10, 8]


def test_resume_after_a_kill_drops_the_cut_off_batch_and_still_matches(tmp_path, capsys):
    whole = _sweep(tmp_path, "whole.csv", "--workers", "1")
    whole_summary = capsys.readouterr().out
    out = tmp_path / "killed.csv"
    _interrupted(out, after=30)
    partial = tmp_path / "killed.csv.partial"
    data = partial.read_bytes()
    partial.write_bytes(data[: len(data) - 700])  # a kill -9 mid-write leaves a torn last batch
    assert main([*SWEEP, "--out", str(out), "--json", "--workers", "1", "--resume"]) == 0
    assert out.read_bytes() == whole
    assert capsys.readouterr().out == whole_summary  # the summary counts resumed rows too


def test_resume_from_a_different_sweep_is_one_line_exit_2_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "r.parquet"
    _interrupted(out, after=10)
    partial = tmp_path / "r.parquet.partial"
    before = partial.read_bytes()
    for change in (["--seed", "3"], ["--runs", "25"], ["--strategies", "naive"]):
        assert main([*SWEEP, "--out", str(out), "--resume", *change]) == 2  # the last --flag wins
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "different sweep" in err and "nothing was changed" in err
    assert partial.read_bytes() == before
    assert not out.exists()


def test_a_fresh_sweep_never_writes_over_an_interrupted_ones_partial(tmp_path, capsys):
    out = tmp_path / "r.parquet"
    _interrupted(out, after=10)
    partial = tmp_path / "r.parquet.partial"
    before = partial.read_bytes()
    assert main([*SWEEP, "--out", str(out)]) == 2  # the same sweep, --resume forgotten
    err = capsys.readouterr().err
    assert err == (f"racetrack: --out {out}: {partial} holds the finished runs of an interrupted sweep; add --resume "
                   "to continue it, or delete r.parquet.partial to start again\n")
    assert partial.read_bytes() == before and not out.exists()


def test_resume_without_a_partial_is_exit_2(tmp_path, capsys):
    assert main([*SWEEP, "--out", str(tmp_path / "none.csv"), "--resume"]) == 2
    assert "no " in capsys.readouterr().err


def test_bad_workers_and_resume_without_out_are_exit_2(capsys):
    assert main([*SWEEP, "--workers", "0"]) == 2
    assert "--workers must be >= 1 (got 0)" in capsys.readouterr().err
    assert main([*SWEEP, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


@pytest.mark.slow
def test_unreachable_scheduler_is_one_line_exit_2_before_any_file_is_written(tmp_path, capsys):
    out = tmp_path / "x.parquet"
    assert main([*SWEEP, "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sweep_run_refuses_unreachable_scheduler_quickly():
    sweep = Sweep((load("seed-fast-jobs"),), ("naive",), runs=1)
    with pytest.raises(SweepError, match="cannot reach"):
        SweepRun(sweep, Execution(executor="dask", scheduler="tcp://127.0.0.1:9", connect_timeout_s=0.5)).__enter__()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_says_how_to_resume(tmp_path):
    out = tmp_path / "c.parquet"
    argv = ["sweep", "seed-fast-jobs", "--strategies", "naive", "--runs", "100000", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen([*RACETRACK, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "c.parquet.partial"
    deadline = time.monotonic() + 60
    while (not partial.exists() or partial.stat().st_size < 20_000) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert f"kept in {partial}" in err and "--resume" in err
    assert err.strip().count("\n") == 0
    fingerprint = results_file.read_fingerprint(partial)
    assert fingerprint["runs"] == 100000 and fingerprint["strategies"] == ["naive"]


def test_results_do_not_depend_on_the_hash_seed():
    outputs = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        done = subprocess.run([*RACETRACK, *SWEEP, "--runs", "5", "--json", "--workers", "1"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert json.loads(outputs.pop())["results"][0]["runs"] == 5


def test_unwritable_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*SWEEP, "--out", str(blocker / "x.parquet"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"argument --out: {blocker / 'x.parquet'}: {blocker} is not a folder" in err


@pytest.mark.postgres
def test_postgres_sweep_on_two_workers_writes_the_same_bytes_as_one(tmp_path):
    from tracker.pg_server import choose_server

    dsn = choose_server().dsn  # the machine's server, or the embedded one (started once here)
    argv = ["sweep", "seed-fast-jobs", "--strategies", "naive,atomic", "--runs", "3", "--backend", "postgres", "--json"]
    if dsn:
        argv += ["--dsn", dsn]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "one.parquet")]) == 0
    assert main([*argv, "--workers", "2", "--out", str(tmp_path / "two.parquet")]) == 0
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    assert pq.read_table(tmp_path / "two.parquet").column("backend").to_pylist() == ["postgres"] * 6
