"""``racetrack check`` searches: a clean expectation is judged by the sweep and a search, a
``violates:`` one holds when either finds the invariant, and the verdict (and JUnit) says what
was searched."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sim.cli import main
from sim.engine import scenario as scenarios
from sim.engine.scenario import ScenarioError


def _scenario(tmp_path: Path, expect: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(f"[job]\ncount = 3\n[expect]\n{expect}")
    return path


def test_a_clean_expectation_fails_when_the_search_finds_what_the_sweep_missed(tmp_path, capsys) -> None:
    # db-clock's late now() needs a statement held back: 3 seeded runs miss it, a search does not.
    path = _scenario(tmp_path, 'db-clock = "clean"\n')
    assert main(["check", str(path), "--runs", "3", "--search", "0"]) == 0
    capsys.readouterr()
    code = main(["check", str(path), "--runs", "3", "--search", "200", "--traces", str(tmp_path / "traces")])
    out = capsys.readouterr().out
    assert code == 1
    assert "search (" in out and "found faithful-timestamps" in out
    assert "searched: exhaustive" in out and "interleavings" in out
    (trace,) = (tmp_path / "traces").glob("*.json")
    assert f"racetrack replay {trace.resolve()}" in out
    assert main(["replay", str(trace)]) == 1  # the written counterexample reproduces


def test_a_violates_expectation_holds_when_the_search_finds_the_invariant(tmp_path, capsys) -> None:
    path = _scenario(tmp_path, 'db-clock = "violates:faithful-timestamps"\n')
    assert main(["check", str(path), "--runs", "3", "--search", "0"]) == 1
    capsys.readouterr()
    junit = tmp_path / "check.xml"
    code = main(["check", str(path), "--runs", "3", "--search", "200", "--traces", str(tmp_path / "traces"),
                 "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0
    assert "missed by the sweep, found by search" in out
    case = ET.parse(junit).getroot().find(".//testcase")
    assert case is not None and case.find("failure") is None
    searched = [p.get("value") for p in case.iter("property") if p.get("name") == "searched"]
    assert searched and "exhaustive" in searched[0]


def test_the_search_budget_comes_from_expect_unless_the_command_line_says(tmp_path, capsys) -> None:
    path = _scenario(tmp_path, 'atomic = "clean"\nsearch = 0\n')
    assert scenarios.load(str(path)).search == 0
    assert main(["check", str(path), "--runs", "3"]) == 0
    assert "searched:" not in capsys.readouterr().out
    assert main(["check", str(path), "--runs", "3", "--search", "40"]) == 0
    out = capsys.readouterr().out
    assert "(3 runs + search)" in out and "searched: " in out and "pct" in out and "depth" in out


def test_expect_search_must_be_a_whole_number(tmp_path) -> None:
    path = _scenario(tmp_path, 'atomic = "clean"\nsearch = "lots"\n')
    with pytest.raises(ScenarioError, match="expect.search must be a whole number"):
        scenarios.load(str(path))


def test_traces_naming_a_file_is_refused_before_any_run(tmp_path, capsys) -> None:
    taken = tmp_path / "afile"
    taken.write_text("mine")
    assert main(["check", "seed-fast-jobs", "--runs", "1", "--traces", str(taken)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--traces" in err and "is a file, not a folder" in err
    assert taken.read_text() == "mine"


def test_a_skipped_exhaustive_part_names_no_option_check_lacks(capsys) -> None:
    # row-lock's 35 interleavings exceed exhaustive's share of 100 search runs: said, without
    # explore's --method/--budget, which check does not have
    assert main(["check", "seed-fast-jobs", "--runs", "1", "--search", "100"]) == 1
    out = capsys.readouterr().out
    assert "exhaustive skipped (exhaustive: seed-fast-jobs with 1 job(s) has 35 interleavings of 8 database operations, " \
           "more than its share of the runs, 25)" in out
    assert "--method" not in out and "--budget" not in out


STRATS = '''
from dataclasses import replace
from tracker.ops import Select
from tracker.strategies import Strategy, load_strategy

def _crash(job, ctx):
    yield Select(job.id)
    raise RuntimeError("boom")

CRASH = Strategy(name="crash", summary="crashes", on_active=_crash)

def _picky(job, ctx):  # crashes only in the order where completed is written before active
    row = yield Select(job.id)
    if row and row["status"] == "completed":
        raise RuntimeError("saw completed before active")
    yield from load_strategy("atomic").on_active(job, ctx)

PICKY = replace(load_strategy("atomic"), name="picky", on_active=_picky)
'''


def _gate(tmp_path, monkeypatch, expect: str) -> Path:
    (tmp_path / "check_strats.py").write_text(STRATS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "check_strats", raising=False)
    path = tmp_path / "gate.toml"
    path.write_text('description = "x"\n[job]\ncount = 3\n[expect]\nnaive = "violates:no-rejected-writes"\n' + expect)
    return path


def test_a_strategy_whose_runs_crash_is_an_error_exit_2_not_a_pass_or_a_failure(tmp_path, monkeypatch, capsys) -> None:
    path = _gate(tmp_path, monkeypatch, '"check_strats:CRASH" = "clean"\nsearch = 0\n')
    junit = tmp_path / "j.xml"
    assert main(["check", str(path), "--runs", "3", "--junit", str(junit)]) == 2
    out, err = capsys.readouterr()
    assert 'ERROR  gate  check_strats:CRASH = "clean"' in out and "3/3 runs were not judged" in out
    assert 'PASS  gate  naive' in out  # the other verdicts still come
    assert err.count("\n") == 1 and "could not be judged" in err
    xml = ET.parse(junit).getroot()
    assert xml.get("errors") == "1" and xml.get("failures") == "0"
    assert xml.find(".//error").get("type") == "StrategyNotJudged"


def test_a_strategy_that_crashes_only_in_the_search_is_an_error_of_its_verdict(tmp_path, monkeypatch, capsys) -> None:
    path = _gate(tmp_path, monkeypatch, '"check_strats:PICKY" = "clean"\nsearch = 100\n')
    junit = tmp_path / "j.xml"
    code = main(["check", str(path), "--runs", "2", "--junit", str(junit)])
    out, _ = capsys.readouterr()
    assert code == 2, out
    assert 'ERROR  gate  check_strats:PICKY = "clean"' in out and "saw completed before active" in out
    assert 'PASS  gate  naive' in out and junit.exists()


def test_two_scenarios_of_one_name_are_refused_before_any_run(tmp_path, capsys) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.toml").write_text('description = "x"\n[expect]\natomic = "clean"\n')
    assert main(["check", str(tmp_path / "a" / "s.toml"), str(tmp_path / "b" / "s.toml"), "--runs", "1"]) == 2
    assert "are both named 's'" in capsys.readouterr().err


def test_a_misspelt_strategy_marked_any_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "s.toml"
    path.write_text('description = "x"\n[expect]\natomic = "clean"\nnaiv = "any"\n')
    assert main(["check", str(path), "--runs", "1"]) == 2
    assert "naiv" in capsys.readouterr().err
