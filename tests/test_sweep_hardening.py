"""Sweep input a tester found accepted, merged or crashing: each is now one line, exit 2, before
anything is written (duplicate names, a resume across a changed table, grid variants a file
could not be, seeds past the maximum, limits past the timer, empty values, flags that contradict
each other, messages naming the wrong flag or thing)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from interrupting import interrupt

from sim.cli import build_parser, main
from sim.cli.args import MAX_SEED, execution
from sim.engine import scenario as scenarios
from sim.engine.limits import wall_clock_limit
from sim.runs import sweep as sweep_module
from sim.runs.sweep import Sweep
from tracker.table_sql import load_table

BUNDLED_TABLE = Path(__file__).resolve().parents[1] / "tracker" / "schema.sql"
STRATEGIES = '''
from dataclasses import replace
from tracker.strategies import load_strategy

IMPOSTOR = replace(load_strategy("atomic"), name="naive")
MINE = replace(load_strategy("atomic"), name="mine")
ALSO_MINE = replace(load_strategy("naive"), name="mine")
'''


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racetrack"), err
    return err


@pytest.fixture
def user_strategies(tmp_path, monkeypatch):
    (tmp_path / "sweep_hardening_strategies.py").write_text(STRATEGIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sweep_hardening_strategies", raising=False)  # this test's file, not a cached one


# --- 1. two scenarios or strategies that rows would not tell apart -------------------------------


@pytest.mark.parametrize("strategies, said", [
    ("naive,naive", "strategy naive is given twice"),
    ("naive,tracker.strategies.naive:STRATEGY", "strategy naive (again as tracker.strategies.naive:STRATEGY) is given twice"),
    ("sweep_hardening_strategies:MINE,sweep_hardening_strategies:ALSO_MINE",
     "strategies sweep_hardening_strategies:MINE and sweep_hardening_strategies:ALSO_MINE are both named 'mine'"),
    ("atomic,sweep_hardening_strategies:IMPOSTOR", "strategy sweep_hardening_strategies:IMPOSTOR is named 'naive', as the built-in naive is"),
])
def test_strategies_rows_could_not_tell_apart_are_refused_naming_both(user_strategies, tmp_path, capsys, strategies, said):
    out = tmp_path / "r.parquet"
    assert main(["sweep", "seed-fast-jobs", "--runs", "3", "--workers", "1", "--strategies", strategies, "--out", str(out)]) == 2
    assert said in one_line(capsys)
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_strategies_of_their_own_names_still_sweep_side_by_side(user_strategies, capsys):
    assert main(["sweep", "seed-fast-jobs", "--runs", "3", "--workers", "1", "--json",
                 "--strategies", "naive,sweep_hardening_strategies:MINE"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["strategy"], r["runs"]) for r in rows] == [("naive", 3), ("mine", 3)]


def test_scenarios_of_one_name_are_refused_naming_both(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for folder, count in (("sc", 2), ("rd", 3)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ok.toml").write_text(f"[job]\ncount = {count}\n")
    assert main(["sweep", "sc/ok.toml", "rd/ok.toml", "--runs", "3", "--strategies", "atomic", "--workers", "1"]) == 2
    assert "scenarios sc/ok.toml and rd/ok.toml are both named 'ok'" in one_line(capsys)
    assert main(["sweep", "seed-fast-jobs", "seed-fast-jobs", "--runs", "3", "--strategies", "atomic", "--workers", "1"]) == 2
    assert "scenario scenarios/seed-fast-jobs.toml is given twice" in one_line(capsys)


# --- 2. --resume across a table whose SQL changed ---------------------------------------------


def _table_sweep(sql: Path) -> Sweep:
    scenario = scenarios.load("seed-fast-jobs").with_table(load_table(sql), str(sql))
    return Sweep((scenario,), ("naive",), runs=24)


def _interrupt(sweep: Sweep, out: Path, after: int = 8) -> None:
    assert 0 < interrupt(sweep, out, after) < sweep.total


def _add_a_check(sql: Path) -> None:
    text = sql.read_text()
    anchor = "CONSTRAINT job_status_pkey PRIMARY KEY (job_id),"
    assert anchor in text
    sql.write_text(text.replace(anchor, anchor + "\n    CONSTRAINT extra_check CHECK (attempts < 100),"))


def test_the_fingerprint_covers_the_tables_sql_and_only_when_there_is_one(tmp_path):
    sql = tmp_path / "tt.sql"
    sql.write_text(BUNDLED_TABLE.read_text())
    before = _table_sweep(sql).fingerprint()
    [entry] = before["scenarios"]
    assert entry["table_sha256"] == hashlib.sha256(load_table(sql).sql.encode()).hexdigest()
    _add_a_check(sql)
    assert _table_sweep(sql).fingerprint()["scenarios"][0]["table_sha256"] != entry["table_sha256"]
    # a sweep on the bundled table records what it recorded before: its results files keep their bytes
    plain = Sweep((scenarios.load("seed-fast-jobs"),), ("naive",), runs=3).fingerprint()
    assert [sorted(s) for s in plain["scenarios"]] == [["name", "params"]]


def test_resume_refuses_a_partial_whose_table_sql_changed(tmp_path, capsys):
    sql, out = tmp_path / "tt.sql", tmp_path / "tt.parquet"
    sql.write_text(BUNDLED_TABLE.read_text())
    _interrupt(_table_sweep(sql), out)
    partial = Path(f"{out}.partial")
    kept = partial.read_bytes()
    _add_a_check(sql)
    argv = ["sweep", "seed-fast-jobs", "--runs", "24", "--strategies", "naive", "--workers", "1",
            "--table-sql", str(sql), "--out", str(out), "--resume"]
    assert main(argv) == 2
    err = one_line(capsys)
    assert "is from a different sweep (the table SQL of seed-fast-jobs" in err and "changed since" in err
    assert partial.read_bytes() == kept and not out.exists()


def test_resume_of_a_partial_that_records_no_table_digest_is_refused(tmp_path, monkeypatch, capsys):
    sql, out = tmp_path / "old.sql", tmp_path / "old.parquet"
    sql.write_text(BUNDLED_TABLE.read_text())
    with monkeypatch.context() as m:  # as a racetrack before the digest wrote it
        m.setattr(sweep_module, "_scenario_fingerprint", lambda s: {"name": s.name, "params": s.to_toml_table()})
        _interrupt(_table_sweep(sql), out)
    argv = ["sweep", "seed-fast-jobs", "--runs", "24", "--strategies", "naive", "--workers", "1",
            "--table-sql", str(sql), "--out", str(out), "--resume"]
    assert main(argv) == 2
    assert "written by an older racetrack" in one_line(capsys)
    assert not out.exists()


# --- 3. a grid variant passes the checks a file gets ------------------------------------------


@pytest.mark.parametrize("grid, said", [
    ("network.pause_probability=0,0.5,1", "--grid network.pause_probability=0: in scenarios/seed-fast-jobs.toml "
                                          "network.pause_probability needs network.pause too"),
    ("listeners.miss_probability=0,0.9", '--grid listeners.miss_probability=0: in scenarios/seed-fast-jobs.toml '
                                         'listeners.miss_probability needs listeners.source = "queue-events"'),
])
def test_a_grid_variant_a_file_could_not_be_is_refused(tmp_path, capsys, grid, said):
    out = tmp_path / "g.parquet"
    assert main(["sweep", "seed-fast-jobs", "--runs", "2", "--strategies", "db-clock", "--grid", grid, "--out", str(out)]) == 2
    assert said in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_grid_over_a_key_whose_partner_is_set_still_sweeps(tmp_path):
    path = tmp_path / "paused.toml"
    path.write_text("[network]\npause = { fixed_ms = 2000 }\npause_probability = 0.1\n")
    variants = scenarios.grid_variants(scenarios.load(str(path)), [scenarios.parse_grid("network.pause_probability=0,1")])
    assert [v["network.pause_probability"] for v in variants] == [0.0, 1.0]


# --- 4. the last seed, not the first, must be within the maximum ------------------------------


@pytest.mark.parametrize("command", [["sweep", "seed-fast-jobs", "--strategies", "atomic"], ["check", "seed-fast-jobs"]])
def test_a_seed_whose_last_run_passes_the_maximum_is_refused_before_anything_is_written(tmp_path, capsys, command):
    out = tmp_path / "big.parquet"
    extra = ["--out", str(out)] if command[0] == "sweep" else ["--junit", str(tmp_path / "j.xml")]
    assert main([*command, "--runs", "2", "--seed", str(MAX_SEED), *extra]) == 2
    err = one_line(capsys)
    assert f"would use seeds up to {MAX_SEED + 1}" in err and f"--seed <= {MAX_SEED - 1}" in err
    assert list(tmp_path.iterdir()) == []


def test_the_largest_seeds_still_sweep(tmp_path, capsys):
    out = tmp_path / "big.parquet"
    assert main(["sweep", "seed-fast-jobs", "--strategies", "atomic", "--runs", "2", "--seed", str(MAX_SEED - 1),
                 "--workers", "1", "--out", str(out)]) == 0
    assert f"seeds {MAX_SEED - 1}..{MAX_SEED})" in capsys.readouterr().out
    assert out.exists() and not Path(f"{out}.partial").exists()


# --- 5. --max-run-seconds within what a timer can take ----------------------------------------


@pytest.mark.parametrize("command", [["run", "seed-fast-jobs"], ["sweep", "seed-fast-jobs", "--runs", "1"], ["check", "seed-fast-jobs", "--runs", "1"]])
@pytest.mark.parametrize("value, said", [("1e10", "must be <= 2592000 (30 days) (got 1e10)"),
                                         ("inf", "must be a finite number > 0 (got inf)"),
                                         ("nan", "must be a finite number > 0 (got nan)")])
def test_max_run_seconds_past_30_days_or_not_finite_is_one_line(capsys, command, value, said):
    assert main([*command, "--max-run-seconds", value]) == 2
    assert f"--max-run-seconds {said}" in one_line(capsys)


def test_the_wall_clock_limit_takes_a_limit_past_what_setitimer_takes():
    with wall_clock_limit(1e10, "a run"):  # OverflowError from setitimer before
        pass


# --- 6. an empty value is refused, not taken as "not given" -----------------------------------


@pytest.mark.parametrize("flags, flag", [
    (["--table-sql", ""], "--table-sql"),
    (["--report", ""], "--report"),
    (["--backend", "postgres", "--dsn", ""], "--dsn"),
    (["--backend", "postgres", "--schema", " "], "--schema"),
])
def test_an_empty_value_is_refused_naming_the_flag(tmp_path, monkeypatch, capsys, flags, flag):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--strategies", "atomic", *flags]) == 2
    assert f"argument {flag}: needs " in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


# --- 7. flags that contradict each other ------------------------------------------------------


def test_executor_local_with_a_scheduler_is_refused(tmp_path, capsys):
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--executor", "local", "--scheduler", "tcp://127.0.0.1:1",
                 "--out", str(tmp_path / "x.parquet")]) == 2
    assert "--executor local cannot use --scheduler tcp://127.0.0.1:1" in one_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_scheduler_alone_still_means_dask_and_nothing_means_local():
    parse = build_parser().parse_args
    assert execution(parse(["sweep", "--scheduler", "tcp://127.0.0.1:1"])).executor == "dask"
    assert execution(parse(["sweep", "--executor", "dask"])).executor == "dask"
    assert execution(parse(["sweep"])).executor == "local"


# --- 8. messages name the flag and the thing that is wrong ------------------------------------


def test_report_into_a_file_names_report(tmp_path, capsys):
    existing = tmp_path / "t.sh"
    existing.write_text("#!/bin/sh\n")
    for target in (existing, existing / "rep"):
        assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--strategies", "atomic", "--report", str(target)]) == 2
        err = one_line(capsys)
        assert f"argument --report: {target}: " in err and "--out" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.sh"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc, where no folder can be made")
def test_report_where_no_folder_can_be_made_names_report(capsys):
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--strategies", "atomic", "--workers", "1",
                 "--report", "/proc/racetrack-report"]) == 2
    err = one_line(capsys)
    assert err.startswith("racetrack: --report /proc/racetrack-report: cannot write") and "--out" not in err


def test_a_scenario_path_that_is_no_file_says_what_it_is(tmp_path, capsys):
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    assert main(["run", str(folder)]) == 2
    assert f"{folder}: is a folder, not a scenario file" in one_line(capsys)
    if os.path.exists("/dev/null"):
        assert main(["run", "/dev/null"]) == 2
        assert "/dev/null: is not a regular file" in one_line(capsys)
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no such scenario file" in one_line(capsys)
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--table-sql", str(tmp_path)]) == 2
    assert f"--table-sql {tmp_path}: is a folder" in one_line(capsys)
