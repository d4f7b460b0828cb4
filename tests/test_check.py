"""racetrack check: expectations judged over seeded runs, counterexamples, JUnit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from sim.cli import main
from sim.engine.scenario import bundled_dir, load
from sim.runs.check import Expectation, Tally, judge_expectation
from sim.runs.runner import run_one
from tracker.strategies import load_strategy

SEED_FAST = (bundled_dir() / "seed-fast-jobs.toml").read_text()


def _scenario_with(tmp_path: Path, expect: str) -> Path:
    body = SEED_FAST.split("[expect]")[0]
    path = tmp_path / "gate.toml"
    path.write_text(body + "[expect]\n" + expect)
    return path


def test_bundled_expectations_hold_and_junit_has_one_case_per_strategy(tmp_path, capsys):
    junit = tmp_path / "reports" / "check.xml"
    assert main(["check", "seed-fast-jobs", "--runs", "20", "--workers", "1", "--junit", str(junit)]) == 0
    out = capsys.readouterr().out
    assert "PASS  seed-fast-jobs  naive" in out and "0 failed" in out
    root = ET.parse(junit).getroot()
    cases = root.findall("./testsuite/testcase")
    expected = sorted(f"{strategy}: {expect}" for strategy, expect in load("seed-fast-jobs").expect.items())
    assert sorted(c.get("name") for c in cases) == expected and len(expected) == 5
    assert root.get("failures") == "0" and root.get("tests") == "5"
    assert len(root.findall("./testsuite/testcase/skipped")) == 1  # db-clock = "any"


def test_broken_expectation_names_strategy_invariant_rate_and_the_shortest_replay(tmp_path, capsys):
    path = _scenario_with(tmp_path, 'naive = "clean"\natomic = "violates:ordered-timestamps"\nthree-layer = "any"\n')
    junit = tmp_path / "check.xml"
    assert main(["check", str(path), "--runs", "12", "--workers", "2", "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    # the counterexample is the violating run with the fewest operations (ties: lowest seed)
    scenario, naive = load(str(path)), load_strategy("naive")
    results = [run_one(scenario, naive, seed) for seed in range(12)]
    shortest = min((r for r in results if any(v.invariant == "no-rejected-writes" for v in r.violations)), key=lambda r: (r.ops, r.seed))
    violating = sum(1 for r in results if any(v.invariant == "no-rejected-writes" for v in r.violations))
    expected = f"no-rejected-writes violated in {violating}/12 runs; shortest counterexample ({shortest.ops} ops): racetrack run {path} --strategy naive --seed {shortest.seed}"
    assert expected in out
    assert "FAIL  gate  naive = \"clean\"" in out
    assert "ordered-timestamps violated in 0/12 runs" in out
    assert "SKIP  gate  three-layer" in out
    assert main(["run", str(path), "--strategy", "naive", "--seed", str(shortest.seed)]) == 1  # the command replays it
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("3", "2", "1")
    failure = root.find("./testsuite/testcase[@name='naive: clean']/failure")
    assert failure is not None and "--seed" in failure.get("message")


def test_violates_passes_when_other_invariants_also_fire():
    e = Expectation("s", load("seed-fast-jobs"), "naive", "violates:no-rejected-writes")
    tallies = {i: Tally(i, 0, None) for i in ("no-rejected-writes", "faithful-timestamps")}
    assert not judge_expectation(e, tallies, 10, 0).passed
    tallies["no-rejected-writes"] = Tally("no-rejected-writes", 3, None)
    tallies["faithful-timestamps"] = Tally("faithful-timestamps", 10, None)
    verdict = judge_expectation(e, tallies, 10, 0)
    assert verdict.passed
    assert any("faithful-timestamps" in n and "not judged" in n for n in verdict.notes)


def test_named_scenario_without_expect_is_exit_2(tmp_path, capsys):
    path = tmp_path / "plain.toml"
    path.write_text("[job]\ncount = 2\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "no [expect] table" in err and err.count("\n") == 1


def test_unknown_strategy_in_expect_is_exit_2(tmp_path, capsys):
    path = _scenario_with(tmp_path, 'nosuch = "clean"\n')
    assert main(["check", str(path), "--runs", "2"]) == 2
    err = capsys.readouterr().err
    assert "[expect] nosuch" in err and err.count("\n") == 1


def test_expect_may_name_a_users_module_strategy_found_from_the_current_directory(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gate_handlers.py").write_text("from tracker.strategies.atomic import STRATEGY as HANDLERS\n")
    path = _scenario_with(tmp_path, '"gate_handlers:HANDLERS" = "clean"\n')
    assert main(["check", str(path), "--runs", "4", "--workers", "2"]) == 0
    assert 'PASS  gate  gate_handlers:HANDLERS = "clean"' in capsys.readouterr().out
