"""The Dask executor gives the same rows as the local one (small LocalClusters, CI-sized), and
without the ``racetrack[dask]`` extra it says how to install it. The ``dev`` extra includes Dask,
so these tests run (not skip) wherever the test suite does."""

from __future__ import annotations

import sys

import distributed
import pytest

from sim.cli import main
from sim.engine.scenario import load
from sim.runs.sweep import Execution, Sweep, SweepRun


def _rows(execution: Execution) -> list[dict]:
    sweep = Sweep((load("seed-fast-jobs"),), ("naive", "atomic"), runs=6, seed=3)
    with SweepRun(sweep, execution) as run:
        return list(run.rows())


@pytest.mark.slow  # starts a Dask cluster
def test_dask_cluster_rows_equal_local_rows():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        on_dask = _rows(Execution(executor="dask", scheduler=cluster.scheduler_address))
    assert on_dask == _rows(Execution(workers=1))
    assert [r["seed"] for r in on_dask] == [3, 4, 5, 6, 7, 8] * 2


@pytest.mark.slow  # starts a Dask cluster
def test_executor_dask_starts_a_local_cluster_and_writes_the_same_file(tmp_path, capsys):
    argv = ["sweep", "seed-fast-jobs", "--strategies", "naive", "--runs", "8", "--json"]
    assert main([*argv, "--executor", "dask", "--workers", "1", "--out", str(tmp_path / "d.parquet")]) == 0
    on_dask = capsys.readouterr().out
    assert main([*argv, "--workers", "1", "--out", str(tmp_path / "l.parquet")]) == 0
    assert capsys.readouterr().out == on_dask
    assert (tmp_path / "d.parquet").read_bytes() == (tmp_path / "l.parquet").read_bytes()


def test_without_dask_the_executor_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what an install without the extra sees
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--executor", "dask", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "racetrack[dask]"' in err
