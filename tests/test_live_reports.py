"""Live results and calibrations in reports: ``racetrack live --out`` writes a results file a
report reads beside a sweep's, the report shows each strategy's rates per mode side by side, and
``racetrack calibrate --out`` output becomes a calibration table.

Live runs use a real Redis (REDIS_URL, else 127.0.0.1:6379) and PostgreSQL (DATABASE_URL, else
embedded), and are short (tests/test_live.py's ``short`` scenario: three 20 ms jobs). Every expected
number is computed from the files the commands wrote, never typed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_live import REDIS_URL, needs_redis, short

from reports.inputs import ReportInputError, read_inputs
from reports.verdict import interval, pct
from sim.cli import main
from sim.judge.rates import wilson
from sim.live.calibrate import scenario_toml
from sim.runs.columns import COLUMN_NAMES


def _cell(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{pct(k / n)} [{interval(lo, hi)}] {k}/{n}"


def _md_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading`` in a report.md."""
    section = text.split(heading, 1)[1]
    lines = [ln for ln in section.split("\n\n") if ln.startswith("| ")][0].splitlines()
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


@pytest.fixture(scope="module")
def both_modes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short scenario swept in memory (naive and atomic) and run live (naive, two runs)."""
    folder = tmp_path_factory.mktemp("modes")
    scenario = folder / "short-live.toml"
    scenario.write_text(scenario_toml(short(), "three short jobs; 'active' handlers lag far behind the job"))
    assert main(["sweep", str(scenario), "--runs", "12", "--strategies", "naive,atomic", "--out", str(folder / "sim.parquet")]) == 0
    code = main(["live", str(scenario), "--strategy", "naive", "--runs", "2", "--redis", REDIS_URL,
                 "--out", str(folder / "live.csv")])
    assert code == 1  # naive's late 'active' write is rejected live too
    return folder


@needs_redis
def test_live_results_file_has_a_sweeps_columns_then_mode_and_seconds(both_modes: Path) -> None:
    live = pd.read_csv(both_modes / "live.csv")
    assert tuple(live.columns) == (*COLUMN_NAMES, "mode", "seconds")
    assert list(live["mode"]) == ["live", "live"] and (live["seconds"] > 0).all()
    assert list(live["seed"]) == [0, 1]
    assert "mode" not in pd.read_parquet(both_modes / "sim.parquet").columns  # a sweep's file is unchanged


@needs_redis
def test_reader_marks_a_file_without_mode_simulated(both_modes: Path) -> None:
    inputs = read_inputs([both_modes / "sim.parquet", both_modes / "live.csv"])
    assert inputs.results is not None
    counts = inputs.results.groupby("mode").size().to_dict()
    assert counts == {"sim": 24, "live": 2}


@needs_redis
def test_report_over_simulated_and_live_results_shows_each_mode_beside_the_other(both_modes: Path) -> None:
    out = both_modes / "report"
    assert main(["report", str(both_modes / "sim.parquet"), str(both_modes / "live.csv"), "-o", str(out)]) == 0
    sim = pd.read_parquet(both_modes / "sim.parquet")
    live = pd.read_csv(both_modes / "live.csv")
    naive_sim = sim[sim["strategy"] == "naive"]
    text = (out / "report.md").read_text()
    rows = {(r[0], r[1]): r[2:] for r in _md_rows(text, "### Simulated and live")}
    expected_any = [_cell(int(naive_sim["violating"].sum()), len(naive_sim)), _cell(int(live["violating"].sum()), len(live))]
    assert rows[("`naive`", "any invariant")] == expected_any
    k_live = int((live["no-rejected-writes"] > 0).sum())
    k_sim = int((naive_sim["no-rejected-writes"] > 0).sum())
    assert rows[("`naive`", "`no-rejected-writes`")] == [_cell(k_sim, len(naive_sim)), _cell(k_live, len(live))]
    assert ("`atomic`", "any invariant") not in rows  # atomic ran only simulated: nothing to set beside
    assert f"simulated {pct(naive_sim['violating'].mean())}" in text and "/ live" in text  # the verdict sentence
    html = (out / "index.html").read_text()
    assert "<th>simulated</th><th>live</th>" in html
    assert "`naive` (live)" in text and "`naive` (memory)" in text  # live runs never pooled with simulated ones


@needs_redis
def test_report_over_calibrate_output_shows_the_calibration_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "short-cal.toml"
    scenario.write_text(scenario_toml(short(**{"job.count": 2}), "two short jobs"))
    cal = tmp_path / "cal.json"
    code = main(["calibrate", str(scenario), "--strategy", "naive", "--runs", "2", "--sim-runs", "20", "--redis", REDIS_URL,
                 "--json", "--out", str(cal)])
    printed = capsys.readouterr().out
    data = json.loads(cal.read_text())
    assert data == json.loads(printed) and code == (0 if data["consistent"] else 1)
    out = tmp_path / "report"
    assert main(["report", str(cal), "-o", str(out)]) == 0
    text = (out / "report.md").read_text()
    rows = {r[0]: r[1:] for r in _md_rows(text, "### short-cal with naive")}
    assert len(rows) == len(data["invariants"])
    for inv in data["invariants"]:
        sim_k, live_k = round(inv["sim_rate"] * 20), round(inv["live_rate"] * 2)
        assert rows[f"`{inv['invariant']}`"] == [
            f"{pct(inv['sim_rate'])} [{interval(*inv['sim_ci'])}] {sim_k}/20",
            f"{pct(inv['live_rate'])} [{interval(*inv['live_ci'])}] {live_k}/2",
            data["paired"][inv["invariant"]],
            "yes" if inv["consistent"] else "NO",
        ]
    html = (out / "index.html").read_text()
    assert "Calibration: live against simulated" in html and html.count("<tr>") >= len(data["invariants"]) + 1
    assert not (out / "summary.csv").exists()  # no runs, nothing to sum up


def _calibration(**changes: object) -> dict:
    rows = [{"invariant": "no-rejected-writes", "sim_rate": 0.005, "sim_ci": [0.0009, 0.0277], "live_rate": 0.8,
             "live_ci": [0.3755, 0.9638], "consistent": False},
            {"invariant": "terminal-status", "sim_rate": 0.0, "sim_ci": [0.0, 0.0188], "live_rate": 0.0,
             "live_ci": [0.0, 0.4345], "consistent": True}]
    return {"scenario": "s", "strategy": "naive", "runs": {"sim": 200, "live": 5}, "invariants": rows,
            "consistent": False, **changes}


def test_calibration_table_says_which_invariants_are_not_consistent(tmp_path: Path) -> None:
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(_calibration()))
    assert main(["report", str(cal), "-o", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "**not consistent** for `no-rejected-writes`." in text
    rows = {r[0]: r[1:] for r in _md_rows(text, "### s with naive")}
    assert rows["`no-rejected-writes`"] == [f"0.5% [{interval(0.0009, 0.0277)}] 1/200", "80% [38%–96.4%] 4/5", "NO"]
    assert rows["`terminal-status`"][-1] == "yes"
    assert '<td class="bad">NO</td>' in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.parametrize(("change", "needle"), [
    ({"runs": {"sim": 200}}, "'runs.live'"),
    ({"consistent": "yes"}, "'consistent'"),
    ({"invariants": [{"invariant": "x", "sim_rate": 1.5, "sim_ci": [0, 1], "live_rate": 0, "live_ci": [0, 1],
                      "consistent": True}]}, "'invariants[0].sim_rate'"),
    ({"invariants": [{"invariant": "x", "sim_rate": 0, "sim_ci": [0.5, 0.1], "live_rate": 0, "live_ci": [0, 1],
                      "consistent": True}]}, "'invariants[0].sim_ci'"),
])
def test_bad_calibration_names_the_field(tmp_path: Path, change: dict, needle: str) -> None:
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(_calibration(**change)))
    with pytest.raises(ReportInputError) as caught:
        read_inputs([cal])
    assert needle in str(caught.value) and str(cal) in str(caught.value)
