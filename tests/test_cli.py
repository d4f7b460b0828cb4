"""The command line as a user meets it: exit codes, JSON shapes, bad input, determinism."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from sim import cli
from sim.cli import main
from sim.cli.output import INVARIANT_COLUMNS, verdict_lines
from sim.judge.invariants import INVARIANT_IDS
from sim.runs.runner import RESULT_COLUMNS
from sim.search.trace import TraceError
from tracker.errors import UserError


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_a_timeline_and_exits_1_on_a_violation(capsys):
    code, out, _ = run_cli(capsys, "run", "seed-fast-jobs", "--strategy", "naive", "--seed", "7")
    assert code == 1
    assert "<-- no-rejected-writes" in out and "ERROR job_status_timestamps_check" in out
    assert "verdict:" in out and "violation(s)" in out


def test_run_exits_0_when_every_invariant_holds(capsys):
    code, out, _ = run_cli(capsys, "run", "seed-fast-jobs", "--strategy", "atomic", "--seed", "7")
    assert code == 0 and "verdict: all 7 invariants held" in out


def test_run_json_has_the_documented_shape(capsys):
    code, out, _ = run_cli(capsys, "run", "seed-fast-jobs", "--strategy", "naive", "--seed", "7", "--json")
    data = json.loads(out)
    assert code == 1
    assert list(data) == ["scenario", "strategy", "backend", "seed", "violations", "ops"]
    assert data["seed"] == 7 and data["backend"] == "memory" and data["ops"] > 0
    assert {"invariant", "job", "detail"} == set(data["violations"][0])


def test_sweep_json_has_the_documented_shape_and_exits_0(capsys):
    code, out, _ = run_cli(capsys, "sweep", "seed-fast-jobs", "--strategies", "naive,atomic", "--runs", "5", "--json")
    data = json.loads(out)
    assert code == 0
    assert [(r["strategy"], r["runs"]) for r in data["results"]] == [("naive", 5), ("atomic", 5)]
    for r in data["results"]:
        assert set(r) == {"scenario", "strategy", "backend", "runs", "violating_runs", "violations"}
        assert set(r["violations"]) == set(INVARIANT_IDS)
    assert data["results"][0]["violating_runs"] == 5 and data["results"][1]["violating_runs"] == 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_sweep_results_files_are_byte_identical_for_the_same_seed(capsys, tmp_path, suffix):
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}{suffix}"
        code, stdout, _ = run_cli(capsys, "sweep", "timestamps", "clock-skew", "--runs", "3", "--seed", "5",
                                  "--json", "--out", str(out))
        assert code == 0
        outputs.append((stdout, out.read_bytes()))
    assert outputs[0] == outputs[1]
    frame = pd.read_parquet(tmp_path / f"a{suffix}") if suffix == ".parquet" else pd.read_csv(tmp_path / f"a{suffix}")
    assert list(frame.columns) == list(RESULT_COLUMNS) and len(frame) == 2 * 5 * 3
    assert set(frame["seed"]) == {5, 6, 7}


def test_listings_name_every_builtin(capsys):
    assert "three-layer" in run_cli(capsys, "strategies")[1]
    assert "seed-fast-jobs" in run_cli(capsys, "scenarios")[1]
    listed = run_cli(capsys, "invariants")[1]
    assert all(i in listed for i in INVARIANT_IDS)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


BAD_SCENARIOS = {
    "syntax": ("[job]\ncount = \n", "invalid TOML"),
    "unknown key": ("[job]\ncount = 2\nspeed = 3\n", "line 3: unknown key job.speed"),
    "unknown section": ("[jobs]\ncount = 2\n", "unknown key 'jobs'"),
    "wrong type": ('[job]\ncount = "ten"\n', "line 2: job.count must be a whole number"),
    "negative delay": ("[handlers]\nactive_delay_ms = -5\n", "line 2: handlers.active_delay_ms must be >= 0 (got -5)"),
    "probability above 1": ("[job]\nfail_probability = 1.5\n", "job.fail_probability must be a probability between 0 and 1"),
    "bad distribution": ("[network]\ndb_rtt = { median_ms = -3, p99_ms = 10 }\n", "line 2: network.db_rtt median_ms must be > 0 (got -3)"),
    "distribution form": ("[job]\nduration = { mean_ms = 3 }\n", "allowed forms"),
    "bad expectation": ('[expect]\natomic = "violates:no-such"\n', "unknown invariant 'no-such'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_a_bad_scenario_file_is_one_line_naming_file_line_and_key_exit_2(capsys, tmp_path, case):
    text, expected = BAD_SCENARIOS[case]
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, "run", path)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"racetrack: {path}: ") and expected in err


@pytest.mark.parametrize("argv, expected", [
    (["run", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
    (["run", "seed-fast-jobs", "--strategy", "nope"], "unknown strategy 'nope'"),
    (["run", "seed-fast-jobs", "--strategy", "no_such_module:X"], "cannot import module 'no_such_module'"),
    (["run", "seed-fast-jobs", "--strategy", "tracker.ops:Select"], "not a tracker.strategies.Strategy"),
    (["run", "seed-fast-jobs", "--strategy", "tracker.ops:Nothing"], "has no attribute 'Nothing'"),
    (["sweep", "--runs", "0"], "--runs must be >= 1 (got 0)"),
    (["sweep", "--runs", "many"], "--runs must be a whole number"),
    (["run", "seed-fast-jobs", "--seed", "-1"], "--seed must be >= 0"),
    (["sweep", "seed-fast-jobs", "--out", "results.txt"], "must end in .parquet or .csv"),
    (["frobnicate"], "invalid choice"),
    (["run", "missing.toml"], "missing.toml: no such scenario file"),
    (["run", "seed-fast-jobs", "--strategy", ""], "--strategy needs a name: one of naive"),
    (["explore", "seed-fast-jobs", "--strategy", " "], "--strategy needs a name"),
    (["sweep", "--strategies", ""], "--strategies needs at least one name"),
    (["sweep", "--strategies", ","], "--strategies needs at least one name"),
    (["sweep", "--strategies", "naive,nope"], "unknown strategy 'nope'"),
])
def test_bad_arguments_are_one_line_exit_2(capsys, argv, expected):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err


def test_the_installed_command_prints_no_traceback_for_bad_input(tmp_path):
    path = write(tmp_path, "[job]\ncount = -1\n")
    proc = subprocess.run([sys.executable, "-m", "sim", "run", path], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"racetrack: {path}: line 2: job.count must be >= 1 (got -1)"


# --- one error type, caught once -----------------------------------------------------------------


USER_ERRORS = [
    "tracker.strategies:StrategyNotFound", "tracker.pg_server:ServerUnavailable", "tracker.postgres:ConnectionLost",
    "sim.engine.scenario:ScenarioError", "sim.runs.sweep:SweepError", "sim.runs.results_file:ResultsError",
    "sim.runs.backends:BackendUnavailable", "sim.search.trace:TraceError", "sim.search.explore:ExploreError",
    "reports.inputs:ReportInputError", "sim.cli.args:UsageError",
]


@pytest.mark.parametrize("ref", USER_ERRORS)
def test_every_user_facing_error_is_a_user_error(ref):
    module, _, name = ref.partition(":")
    assert issubclass(getattr(importlib.import_module(module), name), UserError)


@pytest.mark.parametrize("argv, message", [
    # a bad value found deep in the scenario layer, while building a grid variant
    (["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.count=0"], "--grid job.count=0: job.count must be >= 1 (got 0)"),
    # the search layer refusing a search it cannot finish
    (["explore", "seed-fast-jobs", "--method", "exhaustive", "--jobs", "5", "--budget", "1"], "exhaustive: seed-fast-jobs with 5 job(s)"),
    # the sweep layer, on a resume with nothing to resume
    (["sweep", "seed-fast-jobs", "--runs", "1", "--resume", "--out", "{tmp}/none.parquet"], "none.parquet.partial to resume"),
])
def test_a_user_error_raised_deep_inside_is_exactly_one_stderr_line_and_exit_2(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("racetrack: ") and message in err


def test_a_user_error_from_any_layer_is_caught_once_by_main(capsys, monkeypatch):
    def broken_run(*args, **kwargs):
        raise TraceError("somewhere deep: a message for the user")

    monkeypatch.setattr("sim.runs.runner.run_one", broken_run)  # sim.cli.run imports it when it runs
    code, out, err = run_cli(capsys, "run", "seed-fast-jobs")
    assert (code, out, err) == (2, "", "racetrack: somewhere deep: a message for the user\n")


# --- --version ---------------------------------------------------------------------------------


def test_version_prints_the_version_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "sim", "--version"], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"racetrack {cli.version()}\n", "")
    assert re.fullmatch(r"racetrack \d+\.\d+\S*\n", proc.stdout)


def test_the_version_printed_is_the_one_pyproject_declares():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert cli.version() == pyproject["project"]["version"]


def test_the_installed_distribution_has_the_version_printed():
    try:
        installed = metadata.version("racetrack")
    except metadata.PackageNotFoundError:
        pytest.skip("racetrack is not installed (run from a source tree)")
    assert cli.version() == installed


# --- the sweep says what it found ----------------------------------------------------------------


def test_every_invariant_has_a_sweep_column_heading_of_its_own():
    assert list(INVARIANT_COLUMNS) == list(INVARIANT_IDS)
    assert len(set(INVARIANT_COLUMNS.values())) == len(INVARIANT_IDS)


def test_sweep_names_backend_runs_and_seeds_and_gives_one_verdict_line_per_scenario(capsys):
    argv = ["sweep", "seed-fast-jobs", "timestamps", "--strategies", "naive,atomic", "--runs", "4", "--seed", "3"]
    code, out, _ = run_cli(capsys, *argv)
    _, as_json, _ = run_cli(capsys, *argv, "--json")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "racetrack sweep on the memory model: 2 scenarios x 2 strategies, 4 runs each (seeds 3..6)"
    assert all(INVARIANT_COLUMNS[i] in out for i in INVARIANT_IDS) and "columns:" not in out
    assert max(len(line) for line in lines) <= 120
    for scenario in ("seed-fast-jobs", "timestamps"):
        entries = [e for e in json.loads(as_json)["results"] if e["scenario"] == scenario]
        held = [e["strategy"] for e in entries if not e["violating_runs"]]
        broke = [f"{e['strategy']} {e['violating_runs']}/{e['runs']}" for e in entries if e["violating_runs"]]
        assert held and broke  # the pair shows both kinds of verdict
        (verdict,) = [line for line in lines if line.startswith(f"{scenario}:")]
        assert verdict.split(None, 1)[1] == f"held: {', '.join(held)}; broke: {broke[0]} runs" + "".join(f", {b}" for b in broke[1:])


def test_a_strategy_whose_runs_could_not_finish_is_not_called_held():
    summary = [
        {"scenario": "s", "strategy": "naive", "runs": 10, "violating_runs": 7},
        {"scenario": "s", "strategy": "atomic", "runs": 10, "violating_runs": 0},
        {"scenario": "s", "strategy": "db-clock", "runs": 10, "violating_runs": 0},
    ]
    (line,) = verdict_lines(summary, {("s", "atomic"): 2})
    assert line == "s: held: db-clock; broke: naive 7/10 runs; could not finish: atomic 2/10 runs"


def _broken_ordered_timestamps(monkeypatch):
    from sim.judge import invariants

    def raises(record):
        raise ValueError("checker bug")

    broken = tuple(invariants.Invariant(i.id, i.summary, raises) if i.id == "ordered-timestamps" else i
                   for i in invariants.INVARIANTS)
    monkeypatch.setattr(invariants, "INVARIANTS", broken)


def test_run_with_a_crashing_checker_prints_unknown_and_does_not_claim_every_invariant_held(capsys, monkeypatch):
    _broken_ordered_timestamps(monkeypatch)
    code, out, _ = run_cli(capsys, "run", "seed-fast-jobs", "--strategy", "atomic", "--seed", "7")
    assert code == 3  # an invariant that cannot be judged is a bug in racetrack: the internal-error code
    assert "unknown: ordered-timestamps: ValueError: checker bug" in out
    assert "invariants held" not in out
    code, out, _ = run_cli(capsys, "run", "seed-fast-jobs", "--strategy", "naive", "--seed", "7")
    assert code == 1 and "unknown: ordered-timestamps: ValueError: checker bug" in out


def test_a_crashing_checker_fills_the_unknown_column_and_the_summary_count(monkeypatch):
    from sim.engine.scenario import load as load_scenario
    from sim.runs.runner import run_one, summarize
    from tracker.strategies import load_strategy

    row = run_one(load_scenario("seed-fast-jobs"), load_strategy("naive"), 7).row()
    assert list(row) == list(RESULT_COLUMNS) and row["unknown"] == ""
    assert "unknown" not in summarize([row])[0]
    _broken_ordered_timestamps(monkeypatch)
    broken = run_one(load_scenario("seed-fast-jobs"), load_strategy("naive"), 7).row()
    assert broken["unknown"] == "ordered-timestamps" and broken["ordered-timestamps"] == 0
    assert broken["no-rejected-writes"] == row["no-rejected-writes"] > 0
    assert summarize([row, broken])[0]["unknown"] == 1


def test_sweep_does_not_call_a_strategy_held_when_a_checker_crashed(capsys, monkeypatch):
    _broken_ordered_timestamps(monkeypatch)
    code, out, _ = run_cli(capsys, "sweep", "seed-fast-jobs", "--strategies", "atomic", "--runs", "2", "--workers", "1")
    verdict = out.splitlines()[-1]
    assert "held" not in verdict
    assert verdict.endswith("an invariant's checker crashed (unknown): atomic 2 time(s)")


def test_check_does_not_pass_a_clean_expectation_its_checker_could_not_judge(capsys, monkeypatch, tmp_path):
    _broken_ordered_timestamps(monkeypatch)
    scenario = tmp_path / "mine.toml"
    scenario.write_text('description = "x"\n[job]\ncount = 2\n[expect]\natomic = "clean"\n')
    code, out, _ = run_cli(capsys, "check", str(scenario), "--runs", "3", "--workers", "1")
    assert code == 1
    assert "FAIL" in out and "ordered-timestamps could not be judged in 3/3 runs (its checker crashed)" in out


def test_an_internal_error_is_exit_3_one_line_and_a_log_without_secrets(capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("an assumption broke at postgresql://u:s3cret@db/x")

    monkeypatch.setattr("sim.runs.runner.run_one", bug)
    code, out, err = run_cli(capsys, "run", "seed-fast-jobs")
    assert (code, out) == (3, "")
    assert err.count("\n") == 1 and err.startswith("racetrack: internal error: RuntimeError: ")
    assert "s3cret" not in err and "a bug in racetrack" in err
    log = Path(err.rsplit("the full report is in ", 1)[1].rstrip(")\n"))
    text = log.read_text()
    log.unlink()
    assert "Traceback" in text and "RuntimeError" in text and "s3cret" not in text


def test_redact_hides_passwords_in_urls_and_parameters():
    from tracker.errors import redact

    assert redact("--dsn postgresql://me:pa:ss@h/db x") == "--dsn postgresql://me:***@h/db x"
    assert redact("host=h password=secret dbname=d") == "host=h password=*** dbname=d"
    assert redact("redis://:tok@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("postgresql://me@h/db") == "postgresql://me@h/db"
    # mistyped URLs, which no parser takes apart: the password is hidden all the same
    assert redact("'redis:/user:s3cr@127.0.0.1:6379/0'") == "'redis:/user:***@127.0.0.1:6379/0'"
    assert redact("redis//user:s3cr@h") == "redis//user:***@h"
    assert redact("user:s3cr@127.0.0.1:6379") == "user:***@127.0.0.1:6379"
    assert redact("redis://h:99999/0?password=s3cr&db=1") == "redis://h:99999/0?password=***&db=1"
    assert redact('after "postgresql:/postgres:s3cr@h:5432/test" in') == 'after "postgresql:/postgres:***@h:5432/test" in'
    assert redact("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    # and nothing else is touched
    assert redact("job-1.active#1 at 16:36:52.509 via mymod:STRATEGY, a@b") == "job-1.active#1 at 16:36:52.509 via mymod:STRATEGY, a@b"


@pytest.mark.parametrize("argv", [
    ("live", "seed-fast-jobs", "--redis", "redis:/user:s3cr@127.0.0.1:6379/0"),
    ("live", "seed-fast-jobs", "--redis", "user:s3cr@127.0.0.1:6379"),
    ("live", "seed-fast-jobs", "--redis", "redis://127.0.0.1:99999/0?password=s3cr"),
    ("run", "seed-fast-jobs", "--backend", "postgres", "--dsn", "postgresql:/postgres:s3cr@127.0.0.1:5432/test"),
])
def test_a_mistyped_url_is_refused_without_its_password(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("racetrack: ")
    assert "s3cr" not in err and "***" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [("run", "seed-fast-jobs"), ("strategies",)])
def test_a_full_disk_is_one_line_and_exit_2_not_an_internal_error(argv):
    # a long output fails while the command prints, a short one when it is flushed at the end
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "sim", *argv], stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "racetrack: cannot write the output (standard output): No space left on device\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("argv", [("--help",), ("sweep", "--help"), ("--version",)])
def test_help_into_a_full_disk_is_one_line_and_exit_2(argv):
    # argparse prints, then exits 0 from inside the parser: the failure comes at the final flush
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "sim", *argv], stdout=full, stderr=subprocess.PIPE, text=True)
    assert (proc.returncode, proc.stderr) == (2, "racetrack: cannot write the output (standard output): No space left on device\n")


@pytest.mark.parametrize("argv", [
    ("report", "{long}.csv", "-o", "out"),
    ("run", "{long}.toml"),
    ("sweep", "seed-fast-jobs", "--runs", "1", "--out", "{long}.csv"),
])
def test_a_path_name_longer_than_the_system_allows_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    long = "x" * 300
    code, out, err = run_cli(capsys, *[a.format(long=long) for a in argv])
    assert code == 2 and err.count("\n") == 1 and err.startswith("racetrack") and "internal error" not in err


def test_a_password_in_a_handlers_own_error_is_masked_in_the_sweeps_lines(tmp_path, monkeypatch, capsys):
    (tmp_path / "pw_in_error.py").write_text(
        "from tracker.ops import Select\nfrom tracker.strategies import Strategy\n"
        "def on_active(job, ctx):\n    yield Select(job.id)\n"
        "    raise RuntimeError('cannot reach postgresql://app:hunter2@db/x')\n"
        "S = Strategy(name='pw', summary='x', on_active=on_active)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pw_in_error", raising=False)
    code, out, err = run_cli(capsys, "sweep", "process-success", "--strategies", "pw_in_error:S", "--runs", "2", "--workers", "1")
    assert code == 2 and "postgresql://app:***@db/x" in err + out
    assert "hunter2" not in out + err


def test_the_run_header_is_the_command_that_runs_it_again(tmp_path, monkeypatch, capsys):
    import shlex

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my scenario.toml").write_text('description = "x"\n[job]\ncount = 2\n')
    (tmp_path / "t.sql").write_text((Path(__file__).resolve().parents[1] / "tracker" / "schema.sql").read_text())
    argv = ["run", "my scenario.toml", "--strategy", "tracker.strategies.atomic:STRATEGY", "--seed", "4", "--table-sql", "t.sql"]
    code, out, _ = run_cli(capsys, *argv)
    header = out.splitlines()[0]
    assert header == "racetrack run 'my scenario.toml' --strategy tracker.strategies.atomic:STRATEGY --seed 4 --table-sql t.sql  (backend memory)"
    again = shlex.split(header.split("  (backend")[0])[1:]
    assert run_cli(capsys, *again) == (code, out, "")


def test_a_table_sql_of_one_relative_name_in_another_folder_is_read_again(tmp_path, monkeypatch, capsys):
    # the table is read once per file, not per name: a later command in the same process (the
    # pytest plugin, a test suite) naming t.sql in another folder, or after an edit, gets that file
    schema = (Path(__file__).resolve().parents[1] / "tracker" / "schema.sql").read_text()
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / "t.sql").write_text(schema)
    (bad / "t.sql").write_text("CREATE TABLE job_status (job_id text PRIMARY KEY,, status text);\n")
    monkeypatch.chdir(good)
    assert run_cli(capsys, "run", "process-success", "--table-sql", "t.sql", "--strategy", "atomic")[0] == 0
    monkeypatch.chdir(bad)
    code, _, err = run_cli(capsys, "run", "process-success", "--table-sql", "t.sql", "--strategy", "atomic")
    assert code == 2 and "SQL syntax error" in err
    monkeypatch.chdir(good)
    (good / "t.sql").write_text(schema + "CREATE ROLE leak;\n")  # edited in place, same name
    code, _, err = run_cli(capsys, "run", "process-success", "--table-sql", "t.sql", "--strategy", "atomic")
    assert code == 2 and "CREATE ROLE" in err
