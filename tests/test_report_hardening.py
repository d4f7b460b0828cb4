"""Reports refuse what they cannot count, and say what they cannot show.

A results file's cells are checked against their columns' kinds (a boolean that is not
true/false, a negative count), naming the cell; an unusable ``-o`` is one line; the verdict's
replay command replays what it describes (an explore trace by ``racetrack replay``, a scenario
read from a file never by a name that does not resolve); a trace the report does not show is
named in a warning.

The fixtures are produced by the harness itself (sweeps and an explore through the command
line); only the cell a test is about is edited.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from reports import inputs as report_inputs
from sim.cli import main
from sim.engine.scenario import bundled_dir
from sim.search.trace import READABLE_FORMATS


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tester's sweep: naive breaks in every run, atomic holds in every run."""
    out = tmp_path_factory.mktemp("hardening") / "s.csv"
    assert main(["sweep", "seed-fast-jobs", "--strategies", "naive,atomic", "--runs", "10", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def explore_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shrunk explore counterexample of naive (a ``racetrack-trace/2`` of one job)."""
    out = tmp_path_factory.mktemp("explore") / "t.json"
    assert main(["explore", "seed-fast-jobs", "--strategy", "naive", "--method", "hypothesis", "--no-database",
                 "--out", str(out)]) == 1
    return out


def _edited(source: Path, target: Path, column: str, value: str, row: int = 0) -> Path:
    """``source`` with one cell (``row`` counted from 0 after the header) replaced by ``value``
    as text, every other byte as the sweep wrote it."""
    with open(source, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    lines[row + 1][lines[0].index(column)] = value
    with open(target, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines)
    return target


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("racetrack: ") and "Traceback" not in err, err
    return err.strip()


# --- bug 1: every cell is checked against its column's kind ------------------------------------


BAD_CELLS = [
    # column, value, what the line must say after the column and row
    ("violating", "maybe", "holds 'maybe'; allowed: true or false"),
    ("violating", "", "is empty (the column is required); allowed: true or false"),
    ("violating", "1", "holds '1'; allowed: true or false"),
    ("no-rejected-writes", "-5", "holds -5; allowed: a whole number >= 0"),
    ("jobs", "2.5", "holds 2.5; allowed: a whole number >= 0"),
    ("ops", "", "is empty (the column is required); allowed: a whole number >= 0"),
    ("lock_wait_ms", "inf", "holds inf; allowed: a number >= 0"),
    ("disagreements", "x", "holds 'x'; allowed: a whole number >= 0, or empty"),
    ("backend", "oracle", "holds 'oracle'; allowed: memory, postgres or both"),
    ("scenario", "", "is empty (the column is required); allowed: a name (not empty)"),
    ("visibility_lags_ms", "[1,", "allowed: a JSON list of numbers"),
    ("params", "[]", "allowed: a JSON object"),
]


@pytest.mark.parametrize("column, value, said", BAD_CELLS, ids=[f"{c}={v or 'blank'}" for c, v, _ in BAD_CELLS])
def test_a_bad_cell_is_one_line_naming_file_column_row_seed_and_value(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str, value: str, said: str
) -> None:
    bad = _edited(results, tmp_path / "bad.csv", column, value)
    assert main(["report", str(bad), "-o", str(tmp_path / "rep")]) == 2
    line = _one_line(capsys)
    assert f"{bad}: column '{column}' in row 1 (naive, seed 0) " in line and said in line, line
    assert not (tmp_path / "rep" / "index.html").exists()  # no report from a file it cannot count


def test_a_seed_that_is_not_a_number_names_the_seed_column(results: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = _edited(results, tmp_path / "badseed.csv", "seed", "abc", row=12)
    assert main(["report", str(bad), "-o", str(tmp_path / "rep")]) == 2
    assert _one_line(capsys) == (f"racetrack: {bad}: column 'seed' in row 13 (atomic) holds 'abc'; "
                                 "allowed: a whole number >= 0")


def test_parquet_cells_are_checked_as_csv_cells_are(results: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(results)
    negative = frame.copy()
    negative.loc[3, "lock_waits"] = -2
    negative.to_parquet(tmp_path / "negative.parquet", index=False)
    texts = frame.copy()
    texts["violating"] = texts["violating"].map(str)
    texts.loc[11, "violating"] = "maybe"
    texts.to_parquet(tmp_path / "texts.parquet", index=False)
    nulls = frame.copy()
    nulls["violating"] = nulls["violating"].astype(object)
    nulls.loc[0, "violating"] = None
    nulls.to_parquet(tmp_path / "nulls.parquet", index=False)
    for name, said in [("negative", "column 'lock_waits' in row 4 (naive, seed 3) holds -2; allowed: a whole number >= 0"),
                       ("texts", "column 'violating' in row 12 (atomic, seed 1) holds 'maybe'; allowed: true or false"),
                       ("nulls", "column 'violating' in row 1 (naive, seed 0) is empty (the column is required)")]:
        assert main(["report", str(tmp_path / f"{name}.parquet"), "-o", str(tmp_path / name)]) == 2
        assert said in _one_line(capsys), name


def test_booleans_as_the_sweep_writes_them_read_as_before_in_any_case(results: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``true``/``false`` in any case is a boolean; the report is byte-identical to the sweep's
    own file, and counts exactly the runs the file marks violating."""
    raw = pd.read_csv(results, dtype=str, keep_default_na=False)
    assert set(raw["violating"]) == {"True", "False"}
    lower = results.read_text(encoding="utf-8").replace(",True,", ",true,").replace(",False,", ",false,")
    assert lower != results.read_text(encoding="utf-8")
    (tmp_path / "lower.csv").write_text(lower, encoding="utf-8")
    assert main(["report", str(results), "-o", str(tmp_path / "a")]) == 0
    assert main(["report", str(tmp_path / "lower.csv"), "-o", str(tmp_path / "b")]) == 0
    for name in ("summary.csv", "index.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes().replace(
            b"lower.csv", results.name.encode()), name
    typed = report_inputs.read_results(tmp_path / "lower.csv")
    assert typed["violating"].tolist() == (raw["violating"] == "True").tolist()
    summary = pd.read_csv(tmp_path / "b" / "summary.csv").set_index("strategy")
    assert summary.loc["atomic", "any:runs"] == 0 and summary.loc["naive", "any:runs"] == 10


# --- bug 2: an unusable -o is one line -------------------------------------------------------


def test_an_output_under_a_file_is_one_line_naming_o(results: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    assert main(["report", str(results), "-o", str(out)]) == 2
    assert _one_line(capsys) == f"racetrack: -o {out}: cannot create the directory ({tmp_path / 'afile'} is a file, not a directory)"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("out, said", [
    ("/proc/rep", "-o /proc/rep: cannot create the directory (/proc takes no new directory"),
    ("/proc", "-o /proc: cannot write report.md there"),
])
def test_an_output_the_system_refuses_is_one_line_naming_o(results: Path, out: str, said: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(results), "-o", out]) == 2
    assert _one_line(capsys).startswith(f"racetrack: {said}")


# --- bug 3: the verdict's replay command replays what it describes -----------------------------


def _verdict_commands(report: Path) -> list[str]:
    return re.findall(r"replay with `(racetrack [^`]+)`", (report / "report.md").read_text(encoding="utf-8"))


def test_an_explore_trace_is_replayed_by_racetrack_replay(
    results: Path, explore_trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(explore_trace, tmp_path / "t.json")
    assert main(["report", str(results), "t.json", "-o", "rep"]) == 0
    commands = _verdict_commands(tmp_path / "rep")
    assert commands == ["racetrack replay t.json"], commands
    capsys.readouterr()
    assert main(commands[0].split()[1:]) == 1  # as printed, from where the report was made: it reproduces
    assert "reproduced" in capsys.readouterr().out.lower()
    # given by an absolute path, the report names the file (a report holds no absolute path)
    assert main(["report", str(results), str(explore_trace), "-o", "abs"]) == 0
    assert _verdict_commands(tmp_path / "abs") == [f"racetrack replay {explore_trace.name}"]


def test_a_scenario_read_from_a_file_gets_no_command_that_would_fail(tmp_path: Path) -> None:
    fit = tmp_path / "fit.toml"
    shutil.copy(bundled_dir() / "seed-fast-jobs.toml", fit)
    assert main(["sweep", str(fit), "--strategies", "naive", "--runs", "3", "--out", str(tmp_path / "r.csv")]) == 0
    assert main(["report", str(tmp_path / "r.csv"), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "racetrack run fit" not in md and _verdict_commands(tmp_path / "rep") == []
    assert "the results name the scenario `fit` but not its file, and no bundled scenario has that name" in md
    # a file named as a bundled scenario, with other parameters: its name runs another world
    same_name = tmp_path / "mine" / "seed-fast-jobs.toml"
    same_name.parent.mkdir()
    same_name.write_text(fit.read_text(encoding="utf-8").replace("count = 10", "count = 4"), encoding="utf-8")
    assert "count = 4" in same_name.read_text(encoding="utf-8")
    assert main(["sweep", str(same_name), "--strategies", "naive", "--runs", "3", "--out", str(tmp_path / "m.csv")]) == 0
    assert main(["report", str(tmp_path / "m.csv"), "-o", str(tmp_path / "rep2")]) == 0
    md = (tmp_path / "rep2" / "report.md").read_text(encoding="utf-8")
    assert _verdict_commands(tmp_path / "rep2") == []
    assert "the bundled scenario `seed-fast-jobs` has other parameters than this run" in md


def test_a_bundled_scenario_keeps_its_run_command(results: Path, tmp_path: Path) -> None:
    assert main(["report", str(results), "-o", str(tmp_path / "rep")]) == 0
    raw = pd.read_csv(results)
    first = raw[raw["violating"]].sort_values(["ops", "seed"], kind="stable").iloc[0]
    assert _verdict_commands(tmp_path / "rep") == [f"racetrack run seed-fast-jobs --strategy naive --seed {first['seed']}"]


# --- bug 4: traces the report does not show are named; the docs say what is read -----------------


def test_a_trace_of_a_strategy_not_in_the_results_is_named_in_a_warning(
    results: Path, explore_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    atomic = tmp_path / "atomic.csv"
    pd.read_csv(results, dtype=str, keep_default_na=False).query("strategy == 'atomic'").to_csv(atomic, index=False)
    capsys.readouterr()
    assert main(["report", str(atomic), str(explore_trace), "-o", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"racetrack: warning: 1 trace(s) not shown in the report: {explore_trace} (the results hold "
                            "no runs of scenario seed-fast-jobs, strategy naive on backend memory)\n")
    assert captured.out.startswith("report: ")
    assert "Trace file" not in (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    # shown: no warning
    assert main(["report", str(results), str(explore_trace), "-o", str(tmp_path / "rep2")]) == 0
    assert capsys.readouterr().err == ""


def test_the_report_says_which_trace_formats_it_reads_as_the_docs_do(results: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert main(["report", str(results), str(other), "-o", str(tmp_path / "rep")]) == 2
    line = _one_line(capsys)
    docs = (Path(__file__).parent.parent / "docs" / "reports.md").read_text(encoding="utf-8")
    intro = docs.split("Writes into `DIR`", 1)[0]
    for version in READABLE_FORMATS:
        assert version in line and f"`{version}`" in intro, version


# --- round 2: no text read as a truthy boolean; required cells; -o that would overwrite an input ---


@pytest.mark.parametrize("value, row, who", [(" False", 11, "atomic, seed 1"), ("False ", 12, "atomic, seed 2"),
                                             (" True", 0, "naive, seed 0"), (" false", 13, "atomic, seed 3")])
def test_a_boolean_with_spaces_around_it_is_refused_never_read_as_violating(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, row: int, who: str
) -> None:
    """pandas keeps such a column as text; ``astype(bool)`` would make every non-empty text true
    (atomic "broke in 3 of 3 runs"): the cell is refused instead, naming it."""
    bad = _edited(results, tmp_path / "spaced.csv", "violating", value, row=row)
    assert main(["report", str(bad), "-o", str(tmp_path / "rep")]) == 2
    assert _one_line(capsys) == (f"racetrack: {bad}: column 'violating' in row {row + 1} ({who}) holds {value!r}; "
                                 "allowed: true or false (as the sweep writes them)")
    assert not (tmp_path / "rep").exists()


def test_a_parquet_violating_column_of_text_is_read_as_written_and_of_numbers_refused(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(results)
    assert frame["violating"].dtype == bool and int(frame["violating"].sum()) == 10
    frame.to_parquet(tmp_path / "typed.parquet", index=False)
    texts = frame.assign(violating=frame["violating"].map({True: "True", False: "False"}))
    texts.to_parquet(tmp_path / "texts.parquet", index=False)
    typed = report_inputs.read_results(tmp_path / "texts.parquet")
    assert typed["violating"].dtype == bool and typed["violating"].tolist() == frame["violating"].tolist()
    assert main(["report", str(tmp_path / "typed.parquet"), "-o", str(tmp_path / "a")]) == 0
    assert main(["report", str(tmp_path / "texts.parquet"), "-o", str(tmp_path / "b")]) == 0
    assert "20 runs, 10 violating" in capsys.readouterr().out.splitlines()[-1]
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (tmp_path / "b" / "summary.csv").read_bytes()
    summary = pd.read_csv(tmp_path / "b" / "summary.csv").set_index("strategy")
    assert summary.loc["atomic", "any:runs"] == 0 and summary.loc["naive", "any:runs"] == 10
    numbers = frame.assign(violating=frame["violating"].astype("int64"))
    numbers.to_parquet(tmp_path / "numbers.parquet", index=False)
    assert main(["report", str(tmp_path / "numbers.parquet"), "-o", str(tmp_path / "c")]) == 2
    assert "column 'violating' in row 1 (naive, seed 0) holds 1; allowed: true or false" in _one_line(capsys)
    listed = frame.assign(visibility_lags_ms=[[1.0, 2.0]] * len(frame))  # a list<double>, not JSON text
    listed.to_parquet(tmp_path / "listed.parquet", index=False)
    assert main(["report", str(tmp_path / "listed.parquet"), "-o", str(tmp_path / "d")]) == 2
    assert "column 'visibility_lags_ms' in row 1 (naive, seed 0) holds" in _one_line(capsys)


@pytest.mark.parametrize("column", ["params", "visibility_lags_ms", "timestamp_errors_ms"])
def test_a_required_json_cell_left_empty_in_csv_is_refused(results: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str], column: str) -> None:
    bad = _edited(results, tmp_path / "blank.csv", column, "", row=2)
    assert main(["report", str(bad), "-o", str(tmp_path / "rep")]) == 2
    assert _one_line(capsys) == (f"racetrack: {bad}: column '{column}' in row 3 (naive, seed 2) is empty (the column is "
                                 f"required); allowed: {report_inputs.BY_NAME[column].allowed}")


@pytest.mark.parametrize("column, value, said", [
    ("params", "", "column 'params' in row 5 (naive, seed 4) is empty (the column is required); allowed: a JSON object"),
    ("params", None, "column 'params' in row 5 (naive, seed 4) is empty (the column is required); allowed: a JSON object"),
    ("visibility_lags_ms", "", "column 'visibility_lags_ms' in row 5 (naive, seed 4) is empty (the column is required)"),
    ("strategy", "", "column 'strategy' in row 5 (seed 4) is empty (the column is required); allowed: a name (not empty)"),
    ("scenario", "", "column 'scenario' in row 5 (naive, seed 4) is empty (the column is required)"),
], ids=["params-blank", "params-null", "lags-blank", "strategy-blank", "scenario-blank"])
def test_a_required_cell_left_empty_in_parquet_is_refused(results: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          column: str, value: str | None, said: str) -> None:
    frame = pd.read_csv(results)
    frame[column] = frame[column].astype(object)
    frame.loc[4, column] = value
    frame.to_parquet(tmp_path / "blank.parquet", index=False)
    assert main(["report", str(tmp_path / "blank.parquet"), "-o", str(tmp_path / "rep")]) == 2
    assert said in _one_line(capsys)
    assert not (tmp_path / "rep").exists()


def test_an_output_directory_holding_an_input_under_a_name_the_report_writes_is_refused(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    io = tmp_path / "io"
    io.mkdir()
    shutil.copy(results, io / "summary.csv")
    original = results.read_bytes()
    assert main(["report", str(io / "summary.csv"), "-o", str(io)]) == 2
    assert _one_line(capsys) == (f"racetrack: -o {io}: the report would overwrite its input {io / 'summary.csv'} "
                                 "(it writes summary.csv there); give another directory")
    assert (io / "summary.csv").read_bytes() == original and sorted(p.name for p in io.iterdir()) == ["summary.csv"]
    # through a link, and by a relative path: the same file all the same
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "report.md").symlink_to(results)
    assert main(["report", str(results), "-o", str(linked)]) == 2
    assert f"the report would overwrite its input {results} (it writes report.md there)" in _one_line(capsys)
    hard = tmp_path / "hard"
    hard.mkdir()
    (hard / "index.html").hardlink_to(results)
    assert main(["report", str(results), "-o", str(hard)]) == 2
    assert "(it writes index.html there)" in _one_line(capsys)
    assert results.read_bytes() == original
    # the sweep's --report directory holds results.parquet: not a name the report writes
    assert main(["report", str(results), "-o", str(io / "again")]) == 0
    assert main(["report", str(results), "-o", str(io / "again")]) == 0  # writing over its own report is fine


def test_every_file_a_report_writes_is_one_it_guards(results: Path, explore_trace: Path, tmp_path: Path) -> None:
    from reports.compose import written_by_report
    assert main(["report", str(results), str(explore_trace), "-o", str(tmp_path / "rep")]) == 0
    names = sorted(p.name for p in (tmp_path / "rep").iterdir())
    assert any(n.startswith("timeline-") for n in names) and "summary.csv" in names, names
    assert all(written_by_report(n) for n in names), names
    assert not written_by_report("results.parquet") and not written_by_report("s.csv")


def test_an_empty_output_directory_is_refused(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for flag in (["-o", ""], ["--out="]):
        assert main(["report", str(results), *flag]) == 2
        assert _one_line(capsys) == "racetrack: -o '': empty; give the directory to write the report into"
    assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_results_the_report_would_write_over_before_any_run(tmp_path, capsys):
    from sim.cli import main

    rep = tmp_path / "rep"
    assert main(["sweep", "process-success", "--runs", "1", "--report", str(rep), "--out", str(rep / "summary.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the report writes summary.csv into --report" in err
    assert not rep.exists()  # refused before anything ran or was written
