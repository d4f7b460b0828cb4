"""Reports: tables against a pandas computation, Wilson bounds, figures, Markdown, bad input,
parameter grids, and the sweep's shortest-counterexample traces.

The fixtures are produced by the harness itself (a small sweep through the command line),
never hand-edited numbers.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports import inputs as report_inputs
from reports.plots import focus
from reports.stats import grid_axes, wilson, with_base
from sim.cli import main
from sim.judge.invariants import INVARIANT_IDS
from sim.runs.runner import RESULT_COLUMNS, RESULTS_FORMAT

Z = 1.959963984540054
STRATEGIES = "naive,row-lock,atomic"


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sweep --report`` over a 2 x 2 grid: results, traces and the report in one directory."""
    out = tmp_path_factory.mktemp("grid-report")
    code = main(["sweep", "seed-fast-jobs", "--runs", "6", "--strategies", STRATEGIES,
                 "--grid", "job.duration.median_ms=10,100", "--grid", "network.db_rtt.median_ms=1,20",
                 "--report", str(out)])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def plain_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "results.csv"
    assert main(["sweep", "seed-fast-jobs", "--runs", "8", "--strategies", STRATEGIES, "--out", str(out)]) == 0
    return out


# --- Wilson intervals ---------------------------------------------------------------------------


def test_wilson_zero_successes_starts_at_zero_with_closed_form_upper_bound() -> None:
    for n in (1, 7, 20, 1000):
        low, high = wilson(0, n)
        assert low == 0.0
        assert high == pytest.approx(Z * Z / (n + Z * Z), rel=1e-12)


def test_wilson_all_successes_ends_at_one_with_closed_form_lower_bound() -> None:
    for n in (1, 7, 20, 1000):
        low, high = wilson(n, n)
        assert high == 1.0
        assert low == pytest.approx(n / (n + Z * Z), rel=1e-12)


def test_wilson_matches_known_values_and_is_symmetric() -> None:
    assert wilson(1, 10) == pytest.approx((0.0179, 0.4042), abs=1e-4)  # textbook 95% Wilson for 1/10
    low, high = wilson(5, 10)
    assert low + high == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson(0, 0))


# --- tables against pandas ---------------------------------------------------------------------


def test_summary_rates_match_a_pandas_computation(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    summary = pd.read_csv(sweep_report / "summary.csv").set_index("strategy")
    assert set(summary["scenario"]) == {"seed-fast-jobs"}  # grid variants pooled under their base
    for strategy, group in raw.groupby("strategy"):
        row = summary.loc[strategy]
        assert row["runs"] == len(group)
        assert row["any:runs"] == int(group["violating"].sum())
        for inv in INVARIANT_IDS:
            k = int((group[inv] > 0).sum())
            assert row[f"{inv}:runs"] == k
            assert row[f"{inv}:rate"] == pytest.approx(k / len(group), abs=1e-6)
            lo, hi = wilson(k, len(group))
            assert (row[f"{inv}:lo"], row[f"{inv}:hi"]) == pytest.approx((lo, hi), abs=1e-6)


def test_summary_costs_match_a_pandas_computation(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    summary = pd.read_csv(sweep_report / "summary.csv").set_index("strategy")
    for strategy, group in raw.groupby("strategy"):
        row = summary.loc[strategy]
        jobs = group["jobs"].sum()
        assert row["round_trips_per_job"] == pytest.approx(group["round_trips"].sum() / jobs, abs=1e-6)
        assert row["statements_per_job"] == pytest.approx(group["statements"].sum() / jobs, abs=1e-6)
        assert row["lock_waits_per_job"] == pytest.approx(group["lock_waits"].sum() / jobs, abs=1e-6)
        lags = [v for text in group["visibility_lags_ms"] for v in json.loads(text)]
        assert row["lag_p50_ms"] == pytest.approx(np.percentile(lags, 50), abs=1e-5)
        assert row["lag_p99_ms"] == pytest.approx(np.percentile(lags, 99), abs=1e-5)


def test_markdown_rate_cells_show_the_counts_of_the_results(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    md = (sweep_report / "report.md").read_text()
    for strategy, group in raw.groupby("strategy"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| `{strategy}` | {len(group)} |"))
        any_cell = line.split(" | ")[2]
        assert any_cell.endswith(f"{int(group['violating'].sum())}/{len(group)}")


# --- files -------------------------------------------------------------------------------------


def test_every_figure_is_a_png_that_decodes(sweep_report: Path) -> None:
    pngs = sorted(sweep_report.glob("*.png"))
    names = {p.name.split("-")[0] for p in pngs}
    assert {"rates", "grid", "errors", "timeline"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png.name
        with Image.open(png) as image:
            image.load()
            assert image.width > 100 and image.height > 100, png.name


def _md_cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_markdown_tables_have_one_column_count_per_table(sweep_report: Path) -> None:
    lines = (sweep_report / "report.md").read_text().splitlines()
    tables, current = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 3  # rates, cost, invariants
    for table in tables:
        widths = {len(_md_cells(row)) for row in table}
        assert len(widths) == 1, table[0]
        assert all(re.fullmatch(r"\s*-{3,}\s*", c) for c in _md_cells(table[1]))


def test_markdown_images_exist_and_html_embeds_them_all(sweep_report: Path) -> None:
    md = (sweep_report / "report.md").read_text()
    html = (sweep_report / "index.html").read_text()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert referenced and all((sweep_report / f).is_file() for f in referenced)
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(referenced)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from a network


def test_report_bytes_do_not_change_between_runs(sweep_report: Path, tmp_path: Path) -> None:
    inputs = [str(sweep_report / "results.parquet"), *map(str, sorted((sweep_report / "traces").glob("*.json")))]
    assert main(["report", *inputs, "-o", str(tmp_path / "a")]) == 0
    assert main(["report", *inputs, "-o", str(tmp_path / "b")]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "index.html" in files and "summary.csv" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# --- verdict -----------------------------------------------------------------------------------


def test_verdict_states_who_held_and_who_broke_with_the_counts(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    md = (sweep_report / "report.md").read_text()
    verdict = md.split("## Verdict", 1)[1].split("\n## ", 1)[0]
    for strategy, group in raw.groupby("strategy"):
        k, n = int(group["violating"].sum()), len(group)
        if k:
            assert f"`{strategy}` broke in {k} of {n} runs" in verdict
            shortest = group[group["violating"]].sort_values(["ops", "seed"]).iloc[0]
            assert f"{shortest['ops']} database operations" in verdict
        else:
            assert re.search(rf"`{strategy}`[^.]* held", verdict)


def test_report_over_zero_violations_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "clean.parquet"
    assert main(["sweep", "seed-fast-jobs", "--runs", "3", "--strategies", "atomic", "--out", str(results)]) == 0
    capsys.readouterr()
    assert main(["report", str(results), "-o", str(tmp_path / "rep")]) == 0
    assert "0 violating" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "No run violated any invariant" in md
    assert "Shortest counterexamples" not in md
    assert (tmp_path / "rep" / "rates-seed-fast-jobs.png").is_file()


# --- the sweep side: grids and traces ----------------------------------------------------------


def test_grid_sweeps_the_cross_product_and_records_the_values(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    assert len(raw) == 4 * 3 * 6
    assert raw["scenario"].nunique() == 4
    assert "seed-fast-jobs[job.duration.median_ms=10,network.db_rtt.median_ms=20]" in set(raw["scenario"])
    for name, group in raw.groupby("scenario"):
        params = json.loads(group["params"].iloc[0])
        duration = float(re.search(r"job.duration.median_ms=(\d+)", name).group(1))
        rtt = float(re.search(r"network.db_rtt.median_ms=(\d+)", name).group(1))
        assert params["job.duration"]["median_ms"] == duration
        assert params["network.db_rtt"]["median_ms"] == rtt
        # the log-normal keeps its spread: the seed's p99/median is 150/50 and 30/3
        assert params["job.duration"]["p99_ms"] == pytest.approx(duration * 3)
        assert params["network.db_rtt"]["p99_ms"] == pytest.approx(rtt * 10)


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        ("job.nope=1,2", "unknown parameter"),
        ("job.fail_probability=0.1,1.5", "job.fail_probability=1.5"),
        ("job.count=0", "job.count must be >= 1"),
        ("network.db_rtt.fixed_ms=3", "fields allowed: network.db_rtt.median_ms, network.db_rtt.p99_ms"),
        ("job.duration.median_ms=-5", "must be >= 0"),
        ("job.duration.bogus_ms=5", "allowed: fixed_ms, min_ms, max_ms, median_ms, p99_ms"),
        ("backoff.type=linear", "must be one of none, fixed, exponential"),
        ("job.count", "expected path=value"),
    ],
)
def test_bad_grid_is_one_line_exit_2_naming_the_value(grid: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--grid", grid]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_grid_p99_below_median_names_both_values(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "seed-fast-jobs", "--runs", "1", "--grid", "job.duration.median_ms=10,500",
                 "--grid", "job.duration.p99_ms=300"])
    assert code == 2
    err = capsys.readouterr().err
    assert "job.duration.median_ms=500" in err and "p99_ms must be >= median_ms" in err


def test_sweep_report_keeps_the_shortest_violating_run_per_strategy(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    traces = {json.loads(p.read_text())["strategy"]: json.loads(p.read_text()) for p in (sweep_report / "traces").glob("*.json")}
    broken = {s for s, g in raw.groupby("strategy") if g["violating"].any()}
    assert set(traces) == broken
    for strategy, trace in traces.items():
        bad = raw[(raw["strategy"] == strategy) & raw["violating"]]
        ops = sum(1 for s in trace["steps"] if s["kind"] == "db")
        assert ops == bad["ops"].min()
        row = bad[(bad["seed"] == trace["seed"]) & (bad["scenario"] == trace["scenario"])].iloc[0]
        assert row["ops"] == ops
        first = trace["violations"][0]
        assert row["first_violation"] == f"{first['invariant']}: {first['job']}: {first['detail']}"


# --- bad input ---------------------------------------------------------------------------------


def _bad_inputs(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp / "empty.csv"
    empty.write_text("")
    foreign = tmp / "foreign.csv"
    foreign.write_text("a,b\n1,2\n")
    old = tmp / "old.csv"
    frame = pd.read_csv(good)
    frame["format"] = "racetrack-results/0"
    frame.to_csv(old, index=False)
    header_only = tmp / "header.csv"
    header_only.write_text(",".join(RESULT_COLUMNS) + "\n")
    not_parquet = tmp / "fake.parquet"
    not_parquet.write_text("hello")
    trace = tmp / "trace.json"
    trace.write_text(json.dumps({"format": "racetrack-trace/0"}))
    other = tmp / "notes.txt"
    other.write_text("x")
    return {
        "missing": (tmp / "nope.parquet", "no such results file"),
        "empty": (empty, "empty file"),
        "foreign": (foreign, "not a racetrack results file"),
        "incompatible version": (old, "'racetrack-results/0' is not supported"),
        "header only": (header_only, "no runs"),
        "not parquet": (not_parquet, "not a readable Parquet"),
        "old trace": (trace, "not supported"),
        "other kind": (other, "not a report input"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "foreign", "incompatible version", "header only", "not parquet",
                                  "old trace", "other kind"])
def test_bad_results_input_is_one_line_exit_2(case: str, plain_results: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, needle = _bad_inputs(tmp_path, plain_results)[case]
    assert main(["report", str(plain_results), str(path), "-o", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert needle in err and path.name in err and "Traceback" not in err


def test_report_from_csv_matches_report_from_parquet(plain_results: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "same.parquet"
    pd.read_csv(plain_results).to_parquet(parquet, index=False)
    assert main(["report", str(plain_results), "-o", str(tmp_path / "csv")]) == 0
    assert main(["report", str(parquet), "-o", str(tmp_path / "pq")]) == 0
    assert (tmp_path / "csv" / "summary.csv").read_bytes() == (tmp_path / "pq" / "summary.csv").read_bytes()


# --- boundaries --------------------------------------------------------------------------------


def test_reports_read_a_results_file_written_before_the_unknown_column(plain_results: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(plain_results)
    assert list(frame.columns) == list(RESULT_COLUMNS) and (frame["format"] == RESULTS_FORMAT).all()
    older = tmp_path / "older.csv"
    frame.drop(columns=["unknown"]).to_csv(older, index=False)
    assert len(report_inputs.read_results(older)) == len(frame)
    lacking = tmp_path / "lacking.csv"
    frame.drop(columns=["params"]).to_csv(lacking, index=False)
    with pytest.raises(report_inputs.ReportInputError, match="without column.s. params"):
        report_inputs.read_results(lacking)


def test_reports_never_import_the_simulation() -> None:
    code = ("import sys, reports.compose, reports.inputs, reports.plots, reports.stats, reports.verdict; "
            "print(sorted(m for m in sys.modules if m == 'simpy' or m in ('sim.engine.world', 'sim.runs.runner', 'sim.engine.driver')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_same_results_file_twice_is_refused(plain_results: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(plain_results), str(plain_results), "-o", str(tmp_path / "rep")]) == 2
    assert "given twice" in capsys.readouterr().err


def test_grid_axes_are_the_swept_paths_in_grid_order(sweep_report: Path) -> None:
    frame = with_base(report_inputs.read_results(sweep_report / "results.parquet"))
    # the p99s vary too (scaled with their medians) but are not axes
    assert grid_axes(frame) == ["job.duration.median_ms", "network.db_rtt.median_ms"]


def test_swimlane_highlights_the_step_the_first_violation_names(sweep_report: Path) -> None:
    for path in (sweep_report / "traces").glob("*.json"):
        trace = json.loads(path.read_text())
        job, marks = focus(trace)
        first = trace["violations"][0]
        assert job == first["job"]
        if first["step"] is not None:
            assert first["invariant"] in marks[first["step"]]
            assert trace["steps"][first["step"]]["job_id"] == job
        else:
            assert any(first["invariant"] in m for ms in marks.values() for m in ms)


def test_grid_table_counts_match_a_pandas_computation(sweep_report: Path) -> None:
    raw = pd.read_parquet(sweep_report / "results.parquet")
    params = raw["params"].map(json.loads)
    raw["duration"] = params.map(lambda p: p["job.duration"]["median_ms"])
    raw["rtt"] = params.map(lambda p: p["network.db_rtt"]["median_ms"])
    md = (sweep_report / "report.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(md) if ln.startswith("| `job.duration.median_ms` | `network.db_rtt.median_ms` |"))
    header = [c.strip().strip("`") for c in _md_cells(md[start])]
    end = next(i for i in range(start, len(md)) if not md[i].startswith("|"))
    rows = [_md_cells(ln) for ln in md[start + 2:end]]
    assert len(rows) == 4
    for cells in rows:
        duration, rtt = float(cells[0]), float(cells[1])
        for strategy, cell in zip(header[2:], cells[2:], strict=True):
            group = raw[(raw["strategy"] == strategy) & (raw["duration"] == duration) & (raw["rtt"] == rtt)]
            assert cell.strip().endswith(f"{int(group['violating'].sum())}/{len(group)}")


def test_the_verdicts_replay_command_reproduces_the_first_violation(
    plain_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(plain_results), "-o", str(tmp_path / "rep")]) == 0
    raw = pd.read_csv(plain_results)
    commands = re.findall(r"replay with `racetrack (run \S+ --strategy \S+ --seed \d+)`", (tmp_path / "rep" / "report.md").read_text())
    assert len(commands) == raw.groupby("strategy")["violating"].any().sum()
    for command in commands:
        capsys.readouterr()
        args = command.split()
        assert main([*args, "--json"]) == 1
        ran = json.loads(capsys.readouterr().out)
        first = ran["violations"][0]
        row = raw[(raw["strategy"] == ran["strategy"]) & (raw["seed"] == ran["seed"])].iloc[0]
        assert row["first_violation"] == f"{first['invariant']}: {first['job']}: {first['detail']}"


def test_runs_that_could_not_finish_are_left_out_and_counted(plain_results: Path, tmp_path: Path) -> None:
    from sim.engine.scenario import load
    from sim.runs.runner import SweepItem, error_row
    from tracker.strategies import load_strategy

    rows = pd.read_csv(plain_results)
    failed = error_row(SweepItem(load("seed-fast-jobs"), load_strategy("naive"), 99), "postgres", "server closed the connection")
    mixed = tmp_path / "mixed.csv"
    pd.concat([rows, pd.DataFrame([failed], columns=list(RESULT_COLUMNS))], ignore_index=True).to_csv(mixed, index=False)
    assert main(["report", str(mixed), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "1 more run(s) could not finish" in md
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert summary["runs"].sum() == len(rows)
    only_failed = tmp_path / "failed.csv"
    pd.DataFrame([failed], columns=list(RESULT_COLUMNS)).to_csv(only_failed, index=False)
    assert main(["report", str(only_failed), "-o", str(tmp_path / "rep2")]) == 2


def test_a_results_file_whose_runs_had_no_jobs_still_gives_a_report(plain_results: Path, tmp_path: Path) -> None:
    """A hand-made file with jobs = 0 has no cost per job: the verdict leaves the cost sentence out
    instead of failing with an internal error."""
    frame = pd.read_csv(plain_results)
    frame["jobs"] = 0
    edited = tmp_path / "nojobs.csv"
    frame.to_csv(edited, index=False)
    out = tmp_path / "report"
    assert main(["report", str(edited), "-o", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "fewest database round trips per job" not in text and "held" in text


def test_coverage_curves_count_distinct_conflict_orders_in_run_order() -> None:
    from reports.stats import coverage_curves, last_new

    frame = pd.DataFrame({
        "strategy": ["a", "a", "a", "a", "b"], "backend": ["memory"] * 5,
        "conflict_orders": ["x,y", "", "y", "z", "x"],
    })
    curves = coverage_curves(frame)
    assert curves == {("a", "memory"): [2, 2, 2, 3], ("b", "memory"): [1]}
    assert last_new(curves[("a", "memory")]) == 4 and last_new([0, 0]) == 0 and last_new([2, 2, 2]) == 1
    assert coverage_curves(frame.drop(columns=["conflict_orders"])) == {}


def test_the_report_shows_coverage_with_the_counts_of_its_results(plain_results: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(plain_results, keep_default_na=False)
    out = tmp_path / "report"
    assert main(["report", str(plain_results), "-o", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "### Coverage: distinct conflict orders" in text and (out / "coverage-seed-fast-jobs.png").is_file()
    for strategy, rows in frame.groupby("strategy", sort=False):
        distinct = {d for cell in rows["conflict_orders"] for d in str(cell).split(",") if d}
        assert f"| {strategy} | {len(rows)} | {len(distinct)} |" in text
