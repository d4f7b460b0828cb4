"""A whole report: read the inputs, compute the tables, draw the figures, write
``index.html`` (self-contained), ``report.md``, the PNGs and ``summary.csv`` into one directory.
Live runs are kept apart from simulated ones (under the backend ``live``) and shown beside them;
calibrations (``racetrack calibrate`` output) are shown as tables, as given.

The document is built once as a list of blocks (headings, paragraphs, tables, images,
transcripts) and rendered twice, so the HTML and the Markdown always show the same tables. The
output holds no timestamp and no absolute path: the same inputs give the same bytes.
May import pandas, matplotlib (through :mod:`reports.plots`), the trace readers of ``sim`` and
its scenario loader (to tell whether a recorded scenario name runs the recorded world); never
SimPy, ``sim.engine.world`` or ``sim.runs.runner``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports import plots
from reports.drawing import Figures
from reports.inputs import CalibrationDoc, Inputs, TraceDoc, read_inputs
from reports.stats import (
    cost_table,
    coverage_curves,
    grid_axes,
    grid_table,
    last_new,
    pooled_errors,
    violation_table,
    with_base,
)
from reports.verdict import ShortestRun, interval, overview, pct, scenario_verdict
from sim.engine.scenario import base_name, bundled_names
from sim.engine.scenario import load as load_scenario
from sim.judge.invariants import INVARIANT_IDS, INVARIANTS
from sim.judge.timeline import step_line
from sim.search.trace import TRACE_FORMAT, record_from_data
from tracker.errors import UserError

# --- blocks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str  # `code` spans and **bold** allowed


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: per row, per cell: a CSS class ('' for none) to shade rates in the HTML
    shades: tuple[tuple[str, ...], ...] = field(default=())


@dataclass(frozen=True)
class Image:
    file: str
    alt: str


@dataclass(frozen=True)
class Pre:
    text: str


Block = Heading | Para | Table | Image | Pre


@dataclass(frozen=True)
class Report:
    blocks: tuple[Block, ...]
    summary: pd.DataFrame
    images: tuple[str, ...]
    violations: int  # violating runs over all inputs
    calibrations: int = 0  # calibration tables shown
    #: Traces given but not shown, each ``path (why)``: no results of their scenario, strategy
    #: and backend, no violation, or a shorter counterexample shown instead. The command says
    #: so (a warning): a trace left out without a word looks like a trace that was read.
    unshown: tuple[str, ...] = ()


# --- building --------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _rate_cell(k: int, n: int, rate: float, lo: float, hi: float) -> str:
    return f"{pct(rate)} [{interval(lo, hi)}] {k}/{n}"


def _shade(k: int) -> str:
    return "bad" if k > 0 else "ok"


def shortest_counterexamples(frame: pd.DataFrame, traces: tuple[TraceDoc, ...]) -> dict[tuple[str, str, str], ShortestRun]:
    """Per (base scenario, strategy, backend) the violating run with the fewest operations,
    from the results rows and any traces given (a trace wins a tie: it can be drawn)."""
    best: dict[tuple[str, str, str], ShortestRun] = {}
    named: dict[tuple[str, str], str] = {}
    bad = frame[frame["violating"]].sort_values(["ops", "seed", "variant"], kind="stable")
    for _, row in bad.iterrows():
        key = (str(row["scenario"]), str(row["strategy"]), str(row["backend"]))
        if key not in best:
            best[key] = ShortestRun(key[0], key[1], key[2], str(row["variant"]), int(row["seed"]), int(row["ops"]),
                                       str(row["first_violation"]), violations=int(row["violations"]),
                                       unnamed=unnamed(str(row["variant"]), row["params"], named))
    for trace in sorted(traces, key=lambda t: (t.ops, t.seed, t.path.name)):
        if not trace.violations:
            continue
        key = (base_name(trace.scenario), trace.strategy, trace.backend)
        current = best.get(key)
        if current is None or trace.ops < current.ops or (trace.ops == current.ops and current.trace is None):
            first = trace.violations[0]
            replayable = trace.data.get("format") == TRACE_FORMAT
            best[key] = ShortestRun(key[0], key[1], key[2], trace.scenario, trace.seed, trace.ops,
                                       f"{first['invariant']}: {first['job']}: {first['detail']}",
                                       trace=str(trace.path), violations=len(trace.violations),
                                       replay=shown_path(trace.path) if replayable else None,
                                       unnamed="" if replayable else unnamed(trace.scenario, trace.data.get("params"), named))
    return best


def shown_path(path: Path) -> str:
    """A file as a command in the report names it: as it was given when that was relative (the
    command then runs where the report was made), else by its name alone: a report holds no
    absolute path."""
    return path.name if path.is_absolute() else path.as_posix()


def unnamed(variant: str, params: object, known: dict[tuple[str, str], str]) -> str:
    """'' when ``racetrack run VARIANT`` runs the world a run recorded: VARIANT is a bundled
    scenario and its parameters are the recorded ones. Else why not, in words: a results file
    records a scenario by its name and parameters, not by the file it was read from (a sweep of
    ``path/fit.toml`` writes ``fit``). ``known`` keeps the answers (loading a scenario reads its
    file). Grid variants get no command at all."""
    if "[" in variant:
        return ""
    key = (variant, json.dumps(params, sort_keys=True, default=str))
    if key not in known:
        if variant not in bundled_names():
            known[key] = f"the results name the scenario `{variant}` but not its file, and no bundled scenario has that name"
        else:
            try:
                same = json.loads(load_scenario(variant).params_json) == params
            except UserError:  # a bundled file that does not load here: no command that would work
                same = False
            known[key] = "" if same else (f"the bundled scenario `{variant}` has other parameters than this run: it came "
                                          "from a file of that name, or was changed since")
    return known[key]


def transcript(trace: dict, job: str) -> str:
    """The focused job's steps as isolation-tester-style lines: time, actor, what it did."""
    record, violations = record_from_data(trace)
    marks: dict[int, list[str]] = {}
    for v in violations:
        if v.step is not None:
            marks.setdefault(v.step, []).append(v.invariant)
    events = [(t, 0, f"{'[queue]':<24} {job} {state}") for t, state in record.truth[job].transitions] if job in record.truth else []
    for step in record.steps:
        if step.job_id == job:
            mark = f"   <-- {', '.join(marks[step.index])}" if step.index in marks else ""
            events.append((step.executed_us, 1, f"{step.actor:<24} {step_line(step)}{mark}"))
    lines = [f"{'time ms':>10}  {'actor':<24} operation -> result"]
    lines += [f"{t / 1000:>10.3f}  {text}" for t, _, text in sorted(events, key=lambda e: (e[0], e[1]))]
    return "\n".join(lines)


@dataclass(frozen=True)
class Section:
    """One scenario's part of the report: its verdict paragraphs, its body, its figure files."""

    verdict: tuple[Block, ...]
    body: tuple[Block, ...]
    images: tuple[str, ...]


def build(inputs: Inputs, out: Path, figures: Figures | None = None) -> Report:
    """Compute everything and draw the figures into ``out`` (through ``figures``: they may still
    be drawing when this returns; without it, drawn here before returning); return the document."""
    figures = figures or Figures(workers=1)
    if inputs.results is None:
        return calibration_only(inputs)
    frame = with_base(by_mode(inputs.results))
    rates_all = violation_table(frame)
    costs_all = cost_table(frame)
    shortest = shortest_counterexamples(frame, inputs.traces)
    backends = frame["backend"].nunique()
    results = [Path(s).name for s in inputs.sources if not s.endswith(".json")]
    traces = f" and {len(inputs.traces)} trace file(s)" if inputs.traces else ""
    blocks: list[Block] = [Heading(1, "racetrack report")]
    blocks.append(Para(
        f"{len(frame)} runs from {', '.join(f'`{r}`' for r in results)}{traces}: "
        f"{frame['scenario'].nunique()} scenario(s), strategies {', '.join(f'`{s}`' for s in pd.unique(frame['strategy']))}, "
        f"backend(s) {', '.join(f'`{b}`' for b in pd.unique(frame['backend']))}. "
        "A rate is the share of runs in which the invariant was violated at least once; brackets hold its 95% Wilson interval."
    ))
    if (frame["backend"] == LIVE).any():
        blocks.append(Para(f"Rows under backend `{LIVE}` are live runs (`racetrack live --out`): the same handlers on a real "
                           "BullMQ queue, Redis and PostgreSQL, judged by the same invariants; the others are simulated."))
    if inputs.unfinished:
        blocks.append(Para(f"{inputs.unfinished} more run(s) could not finish (their `error` column is set: the backend "
                           "failed under them); they judged nothing and are left out of every table."))
    if "disagreements" in frame.columns and frame["disagreements"].notna().any():
        compared = frame[frame["disagreements"].notna()]
        differing = compared[pd.to_numeric(compared["disagreements"]) > 0]
        first = f"; first: `{differing['first_disagreement'].iloc[0]}`" if len(differing) else ""
        blocks.append(Para(f"Differential runs (`--backend both`): the in-memory model and PostgreSQL disagreed in "
                           f"{len(differing)} of {len(compared)} runs{first}."))
    violating = int(frame["violating"].sum())
    if violating == 0:
        blocks.append(Para("**No run violated any invariant.** Every strategy held in every run below; the tables bound "
                           "how rare a violation could still be and compare the strategies' cost."))
    verdict: list[Block] = [Heading(2, "Verdict")]
    verdict += [Para(s) for s in overview(rates_all)]
    if frame["scenario"].nunique() > 1:
        verdict.append(_overview_table(rates_all, backends))
    body: list[Block] = []
    images: list[str] = []
    for scenario in pd.unique(frame["scenario"]):
        section = scenario_section(str(scenario), frame, rates_all, costs_all, shortest, inputs.traces, out, figures)
        verdict += section.verdict
        body += section.body
        images += section.images
    blocks += verdict + body
    blocks += calibration_blocks(inputs.calibrations)
    blocks.append(Heading(2, "Invariants"))
    blocks.append(Table(("id", "holds when"), tuple((f"`{i.id}`", i.summary) for i in INVARIANTS)))
    summary = rates_all.merge(costs_all.drop(columns=["runs"]), on=["scenario", "strategy", "backend"])
    unshown = unshown_traces(inputs.traces, rates_all, shortest)
    return Report(tuple(blocks), summary, tuple(images), violating, len(inputs.calibrations), unshown)


def unshown_traces(traces: tuple[TraceDoc, ...], rates: pd.DataFrame | None,
                   shortest: dict[tuple[str, str, str], ShortestRun]) -> tuple[str, ...]:
    """The traces the report does not show, each as ``path (why)``: a trace is drawn only as the
    shortest counterexample of a scenario, strategy and backend the results hold."""
    held = set(zip(rates["scenario"], rates["strategy"], rates["backend"], strict=True)) if rates is not None else set()
    out = []
    for trace in traces:
        key = (base_name(trace.scenario), trace.strategy, trace.backend)
        if rates is None:
            why = "no results file was given"
        elif not trace.violations:
            why = "it violates no invariant"
        elif key not in held:
            why = f"the results hold no runs of scenario {key[0]}, strategy {key[1]} on backend {key[2]}"
        elif shortest[key].trace != str(trace.path):
            why = "a shorter counterexample of the same strategy is shown"
        else:
            continue
        out.append(f"{trace.path} ({why})")
    return tuple(out)


#: The backend a report files live runs under, so that every table, figure and verdict keeps them
#: apart from simulated runs of the same strategy (live runs always use PostgreSQL).
LIVE = "live"


def by_mode(results: pd.DataFrame) -> pd.DataFrame:
    """The results with live rows (``mode`` ``live``) under the backend :data:`LIVE`."""
    if "mode" not in results.columns or not (results["mode"] == "live").any():
        return results
    out = results.copy()
    out.loc[out["mode"] == "live", "backend"] = LIVE
    return out


def mode_table(rates: pd.DataFrame) -> tuple[Table, list[str]] | None:
    """One scenario's simulated and live violation rates side by side: a row per strategy and
    invariant (``any``, then each invariant either side violated), a column per simulated backend
    and one for live; and a sentence per strategy. None unless some strategy ran both ways."""
    live = rates[rates["backend"] == LIVE]
    sims = [b for b in pd.unique(rates["backend"]) if b != LIVE]
    both = [s for s in pd.unique(live["strategy"]) if ((rates["strategy"] == s) & (rates["backend"] != LIVE)).any()]
    if not both or not sims:
        return None
    columns = [(b, "simulated" + (f" ({b})" if len(sims) > 1 else "")) for b in sims] + [(LIVE, "live")]
    rows, shades, sentences = [], [], []
    for strategy in both:
        mine = {str(r["backend"]): r for _, r in rates[rates["strategy"] == strategy].iterrows()}
        shown = ["any"] + [i for i in INVARIANT_IDS if any(int(r[f"{i}:runs"]) > 0 for r in mine.values())]
        for name in shown:
            cells, marks = [], []
            for backend, _ in columns:
                r = mine.get(backend)
                if r is None:
                    cells.append("–")
                    marks.append("")
                    continue
                k = int(r[f"{name}:runs"])
                cells.append(_rate_cell(k, int(r["runs"]), float(r[f"{name}:rate"]), float(r[f"{name}:lo"]), float(r[f"{name}:hi"])))
                marks.append(_shade(k))
            rows.append((f"`{strategy}`", "any invariant" if name == "any" else f"`{name}`", *cells))
            shades.append(("", "", *marks))
        sides = [f"{label} {pct(float(mine[b]['any:rate']))} [{interval(float(mine[b]['any:lo']), float(mine[b]['any:hi']))}] "
                 f"{int(mine[b]['any:runs'])}/{int(mine[b]['runs'])}" for b, label in columns if b in mine]
        sentences.append(f"`{strategy}` violated an invariant in {' / '.join(sides)} of runs.")
    header = ("strategy", "invariant", *(label for _, label in columns))
    return Table(header, tuple(rows), tuple(shades)), sentences


def _calibrated_cell(rate: float | None, ci: tuple[float, float], runs: int) -> str:
    if rate is None:
        return "–"
    return _rate_cell(round(rate * runs), runs, rate, *ci)


def calibration_blocks(calibrations: tuple[CalibrationDoc, ...]) -> list[Block]:
    """Per calibration given: the two rates of every invariant with their intervals, and whether
    they are consistent (the rule of ``racetrack calibrate``, decided there and shown as given)."""
    if not calibrations:
        return []
    blocks: list[Block] = [Heading(2, "Calibration: live against simulated"), Para(
        "From `racetrack calibrate`: the scenario run live and simulated with the same seeds, the simulated side with the "
        "live round trips as `network.db_rtt`. Per invariant, the share of runs that violated it on each side with its "
        "95% Wilson interval; consistent when the intervals overlap or every live seed gave its simulated twin's verdict."
    )]
    for cal in calibrations:
        blocks.append(Heading(3, f"{cal.scenario} with {cal.strategy}"))
        apart = [c.invariant for c in cal.invariants if not c.consistent]
        verdict = ("consistent for every invariant." if cal.consistent and not apart else
                   "**not consistent** for " + ", ".join(f"`{i}`" for i in apart) + "." if apart else "**not consistent**.")
        matched = f", simulated with `network.db_rtt` = `{cal.db_rtt}`" if cal.db_rtt else ""
        blocks.append(Para(f"`{cal.path.name}`: {cal.live_runs} live run(s) against {cal.sim_runs} simulated{matched}: {verdict}"))
        paired = any(c.paired for c in cal.invariants)
        header = ("invariant", "simulated", "live", *(("same seed agrees",) if paired else ()), "consistent")
        rows, shades = [], []
        for c in cal.invariants:
            rows.append((f"`{c.invariant}`", _calibrated_cell(c.sim_rate, c.sim_ci, cal.sim_runs),
                         _calibrated_cell(c.live_rate, c.live_ci, cal.live_runs), *((c.paired or "–",) if paired else ()),
                         "yes" if c.consistent else "NO"))
            shades.append(("", "", "", *(("",) if paired else ()), "ok" if c.consistent else "bad"))
        blocks.append(Table(header, tuple(rows), tuple(shades)))
    return blocks


def calibration_only(inputs: Inputs) -> Report:
    """A report over calibrations alone: no runs, no figures, no summary rows."""
    names = ", ".join(f"`{Path(s).name}`" for s in inputs.sources)
    blocks: list[Block] = [Heading(1, "racetrack report"), Para(f"{len(inputs.calibrations)} calibration(s) from {names}.")]
    blocks += calibration_blocks(inputs.calibrations)
    blocks.append(Heading(2, "Invariants"))
    blocks.append(Table(("id", "holds when"), tuple((f"`{i.id}`", i.summary) for i in INVARIANTS)))
    return Report(tuple(blocks), pd.DataFrame(), (), 0, len(inputs.calibrations), unshown_traces(inputs.traces, None, {}))


def scenario_section(
    scenario: str,
    frame: pd.DataFrame,
    rates_all: pd.DataFrame,
    costs_all: pd.DataFrame,
    shortest: dict[tuple[str, str, str], ShortestRun],
    traces: tuple[TraceDoc, ...],
    out: Path,
    figures: Figures,
) -> Section:
    """Tables, figures and verdict of one (base) scenario; figures are written into ``out``."""
    backends = frame["backend"].nunique()
    part = frame[frame["scenario"] == scenario]
    rates = rates_all[rates_all["scenario"] == scenario].reset_index(drop=True)
    costs = costs_all[costs_all["scenario"] == scenario].reset_index(drop=True)
    axes = grid_axes(part)
    grid = grid_table(part, axes) if axes else None
    order = list(zip(rates["strategy"], rates["backend"], strict=True))
    mine = {k: shortest[(scenario, *k)] for k in order if (scenario, *k) in shortest}
    verdict = [Para(s) for s in _paragraphs(scenario_verdict(scenario, rates, costs, grid, axes, mine))]
    s = slug(scenario)
    images: list[str] = []
    body: list[Block] = [Heading(2, f"Scenario {scenario}")]
    modes = mode_table(rates)
    if modes is not None:
        table, sentences = modes
        verdict += [Para("Simulated and live: " + " ".join(sentences))]
        body += [Heading(3, "Simulated and live"), Para(
            "The same strategies run simulated and live (`racetrack live --out`): per invariant the share of runs that "
            "violated it, a column per mode, with its 95% Wilson interval and the runs it counts."), table]
    body += [Heading(3, "Violation rate by strategy and invariant"), _rates_table(rates, backends)]
    images.append(figures.draw(plots.violation_rates, rates, scenario, path=out / f"rates-{s}.png"))
    body.append(Image(images[-1], f"{scenario}: violation rate by strategy and invariant"))
    body += [Heading(3, "Cost per job"), _cost_table(costs, backends)]
    curves = coverage_curves(part)
    if curves:
        named = {(f"{k[0]} ({k[1]})" if backends > 1 else k[0]): v for k, v in curves.items()}
        body.append(Heading(3, "Coverage: distinct conflict orders"))
        body.append(Para(
            "Two operations conflict when different handlers touch the same row and one of them writes; a run's "
            "conflict order is the order its conflicting operations ran in. The curve counts the distinct orders seen "
            "after each run: where it has flattened, more runs of this world no longer show new interleavings, and "
            "'clean after N runs' means 'clean over these K orders'."))
        images.append(figures.draw(plots.coverage, named, scenario, path=out / f"coverage-{s}.png"))
        body.append(Image(images[-1], f"{scenario}: distinct conflict orders against runs"))
        body.append(Table(("strategy", "runs", "distinct conflict orders", "the last new one at run"),
                          tuple((name, str(len(c)), str(c[-1] if c else 0), str(last_new(c))) for name, c in named.items())))
    if grid is not None:
        body.append(Heading(3, "Violation probability over the grid"))
        pooled = f" ({', '.join(f'`{a}`' for a in axes[2:])} pooled)" if len(axes) > 2 else ""
        body.append(Para(f"Share of runs violating any invariant at each grid point of `{axes[0]}`"
                         + (f" x `{axes[1]}`" if len(axes) > 1 else "") + pooled + ", one panel per strategy."))
        images.append(figures.draw(plots.heatmaps, grid, axes, scenario, path=out / f"grid-{s}.png"))
        body.append(Image(images[-1], f"{scenario}: violation probability over the grid"))
        body.append(_grid_table(grid, axes, backends))
    body.append(Heading(3, "Timestamp error"))
    errors = pooled_errors(part)
    if any(errors.values()):
        body.append(Para("Recorded minus true time of `started_at`, `completed_at` and `failed_at`, every job of every run; "
                         "negative means the row claims it happened earlier than it did."))
        images.append(figures.draw(plots.timestamp_errors, errors, scenario, path=out / f"errors-{s}.png"))
        body.append(Image(images[-1], f"{scenario}: timestamp error per strategy"))
    else:
        body.append(Para("No run recorded a timestamp to compare with the truth."))
    if mine:
        body.append(Heading(3, "Shortest counterexamples"))
    by_path = {str(t.path): t for t in traces}
    for (strategy, backend), example in mine.items():
        body.append(Heading(4, f"{strategy}" + (f" ({backend})" if backends > 1 else "")))
        body.append(Para(
            f"Seed {example.seed} of `{example.variant}`: {example.ops} database operations, {example.violations} violation(s); "
            f"first: `{example.first_violation}`."
            + (f" Trace file: `{Path(example.trace).name}`." if example.trace
               else f" A live run records no trace; `racetrack live {example.variant} --strategy {example.strategy} --seed "
                    f"{example.seed}` runs its world again (real timing decides whether it breaks the same way)."
               if backend == LIVE else " No trace of it was given (`racetrack sweep --report` records one).")
        ))
        if example.trace:
            trace = by_path[example.trace].data
            name = f"timeline-{s}-{slug(strategy)}-{slug(backend)}.png"
            images.append(figures.draw(plots.swimlane, trace, path=out / name))
            job, _ = plots.focus(trace)
            body.append(Image(name, f"{strategy}: swimlane timeline of the counterexample on {job}"))
            body.append(Pre(transcript(trace, job)))
    return Section(tuple(verdict), tuple(body), tuple(images))


def _paragraphs(sentences: list[str]) -> list[str]:
    """The scenario's headline and its first finding share a paragraph; each finding after has its own."""
    return [" ".join(sentences[:1] + sentences[1:2])] + sentences[2:] if len(sentences) > 1 else sentences


def _label(row: pd.Series, backends: int) -> str:
    return f"`{row['strategy']}`" + (f" ({row['backend']})" if backends > 1 else "")


def _rates_table(rates: pd.DataFrame, backends: int) -> Table:
    header = ("strategy", "runs", "any invariant", *(f"`{i}`" for i in INVARIANT_IDS))
    rows, shades = [], []
    for _, r in rates.iterrows():
        n = int(r["runs"])
        cells = [_rate_cell(int(r[f"{x}:runs"]), n, float(r[f"{x}:rate"]), float(r[f"{x}:lo"]), float(r[f"{x}:hi"]))
                 for x in ("any", *INVARIANT_IDS)]
        rows.append((_label(r, backends), str(n), *cells))
        shades.append(("", "", *(_shade(int(r[f"{x}:runs"])) for x in ("any", *INVARIANT_IDS))))
    return Table(header, tuple(rows), tuple(shades))


def _overview_table(rates: pd.DataFrame, backends: int) -> Table:
    """Scenario x strategy: the share of runs violating any invariant."""
    keys = list(dict.fromkeys(zip(rates["strategy"], rates["backend"], strict=True)))
    header = ("scenario", *(f"`{s}`" + (f" ({b})" if backends > 1 else "") for s, b in keys))
    rows, shades = [], []
    for scenario, group in rates.groupby("scenario", sort=False):
        cells, marks = [], []
        for strategy, backend in keys:
            match = group[(group["strategy"] == strategy) & (group["backend"] == backend)]
            if match.empty:
                cells.append("–")
                marks.append("")
                continue
            r = match.iloc[0]
            cells.append(_rate_cell(int(r["any:runs"]), int(r["runs"]), float(r["any:rate"]), float(r["any:lo"]), float(r["any:hi"])))
            marks.append(_shade(int(r["any:runs"])))
        rows.append((str(scenario), *cells))
        shades.append(("", *marks))
    return Table(header, tuple(rows), tuple(shades))


def _grid_table(grid: pd.DataFrame, axes: list[str], backends: int) -> Table:
    """The numbers behind the heatmaps: one row per grid point, one column per strategy."""
    keys = list(dict.fromkeys(zip(grid["strategy"], grid["backend"], strict=True)))
    header = (*(f"`{a}`" for a in axes), *(f"`{s}`" + (f" ({b})" if backends > 1 else "") for s, b in keys))
    rows, shades = [], []
    for point, group in grid.groupby(axes, sort=True):
        values = point if isinstance(point, tuple) else (point,)
        cells, marks = [], []
        for strategy, backend in keys:
            match = group[(group["strategy"] == strategy) & (group["backend"] == backend)]
            k, n = int(match["violating_runs"].sum()), int(match["runs"].sum())
            cells.append(f"{pct(k / n)} {k}/{n}" if n else "–")
            marks.append(_shade(k) if n else "")
        rows.append((*(plots.number(v) for v in values), *cells))
        shades.append(("",) * len(values) + tuple(marks))
    return Table(header, tuple(rows), tuple(shades))


def _ms(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.1f}"


def _cost_table(costs: pd.DataFrame, backends: int) -> Table:
    header = ("strategy", "runs", "jobs", "round trips / job", "statements / job", "lock waits / job",
              "lock wait ms / job", "visibility lag p50 ms", "visibility lag p99 ms", "abs timestamp error p99 ms")
    rows = []
    for _, r in costs.iterrows():
        rows.append((_label(r, backends), str(int(r["runs"])), str(int(r["jobs"])), f"{r['round_trips_per_job']:.2f}",
                     f"{r['statements_per_job']:.2f}", f"{r['lock_waits_per_job']:.3f}", f"{r['lock_wait_ms_per_job']:.2f}",
                     _ms(r["lag_p50_ms"]), _ms(r["lag_p99_ms"]), _ms(r["abs_error_p99_ms"])))
    return Table(header, tuple(rows))


# --- rendering -------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    out: list[str] = []
    for block in report.blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                     "| " + " | ".join("---" for _ in block.header) + " |"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}]({block.file})")
        elif isinstance(block, Pre):
            out.append("```\n" + block.text + "\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Paragraph text to HTML: escape, then `code` and **bold**."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(part)))
    return "".join(out)


RATE_CELL = re.compile(r"^(\S+) \[(.+)\] (\d+/\d+)$")


def _html_cell(text: str) -> str:
    """A rate cell on two lines (rate and count, then the interval) keeps wide tables readable."""
    match = RATE_CELL.match(text)
    if not match:
        return _inline(text)
    rate, ci, count = (html.escape(g) for g in match.groups())
    return f'<b>{rate}</b> <span class="n">{count}</span><br><span class="ci">[{ci}]</span>'


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#fafafa;margin:0}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px;background:#fff;box-shadow:0 0 0 1px #eee}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:21px;margin:36px 0 8px;border-bottom:1px solid #e5e5e5;padding-bottom:4px}
h3{font-size:17px;margin:24px 0 6px}h4{font-size:15px;margin:18px 0 4px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f3f3f3;padding:1px 4px;border-radius:3px}
pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:10px 12px;overflow-x:auto;border-radius:4px}
.table{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #e1e1e1;padding:4px 8px;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f4f4f6}td.ok{background:#eef8f0}td.bad{background:#fdecea}
td .n{color:#555}td .ci{color:#777;font-size:12px}th{white-space:normal;min-width:4em}th code{overflow-wrap:anywhere}
figure{margin:8px 0 16px}img{max-width:100%;height:auto;border:1px solid #f0f0f0}
section.verdict p{margin:6px 0}
""".strip()


def to_html(report: Report, out: Path) -> str:
    parts = ['<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>racetrack report</title>", f"<style>\n{STYLE}\n</style>", "</head>\n<body>\n<main>"]
    ids: set[str] = set()
    for block in report.blocks:
        if isinstance(block, Heading):
            anchor, n = slug(block.text), 1
            while anchor in ids:  # every scenario has a "Cost per job": ids must stay unique
                n += 1
                anchor = f"{slug(block.text)}-{n}"
            ids.add(anchor)
            parts.append(f"<h{block.level} id=\"{anchor}\">{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            rows = ["<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block.header) + "</tr>"]
            for i, row in enumerate(block.rows):
                shades = block.shades[i] if block.shades else ("",) * len(row)
                rows.append("<tr>" + "".join(
                    f"<td{f' class={chr(34)}{c}{chr(34)}' if c else ''}>{_html_cell(t)}</td>" for t, c in zip(row, shades, strict=False)) + "</tr>")
            parts.append('<div class="table"><table>\n' + "\n".join(rows) + "\n</table></div>")
        elif isinstance(block, Image):
            data = base64.b64encode((out / block.file).read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></figure>')
        elif isinstance(block, Pre):
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
    parts.append("</main>\n</body>\n</html>\n")
    return "\n".join(parts)


#: The files a report writes into its directory, beside its figures (:func:`written_by_report`).
REPORT_FILES = ("index.html", "report.md", "summary.csv")
#: How the figures' names begin (``rates-<scenario>.png``, ``timeline-<scenario>-<strategy>-<backend>.png``...).
FIGURE_PREFIXES = ("rates-", "coverage-", "grid-", "errors-", "timeline-")


def written_by_report(name: str) -> bool:
    """Whether a report may write a file of this name into its directory."""
    return name in REPORT_FILES or (name.endswith(".png") and name.startswith(FIGURE_PREFIXES))


def overwritten_input(paths: list[Path], out: Path) -> tuple[Path, Path] | None:
    """The first input that is a file the report would write into ``out`` (by its name, or
    through a link: compared with ``os.path.samefile``), with that file; None when none is."""
    if not out.is_dir():
        return None  # created by the report: nothing in it yet
    names = set(REPORT_FILES)
    try:
        names |= {e.name for e in os.scandir(out) if written_by_report(e.name)}
    except OSError:
        pass  # not listable: the fixed names are still compared
    for name in sorted(names):
        for path in paths:
            try:
                if os.path.samefile(out / name, path):
                    return path, out / name
            except OSError:  # either side missing: not the same file
                continue
    return None


class OverwrittenInputError(UserError):
    """The report's directory holds one of its inputs under a name the report writes."""


def write_report(paths: list[Path], out: Path, inputs: Inputs | None = None) -> Report:
    """Read ``paths`` and write the report into ``out`` (created if needed); refused before
    anything is written when a file it writes there is one of ``paths``."""
    clash = overwritten_input(paths, out)
    if clash is not None:
        raise OverwrittenInputError(f"{out}: the report would overwrite its input {clash[0]} (it writes "
                                    f"{clash[1].name} there); write the report into another directory")
    inputs = inputs or read_inputs(paths)
    out.mkdir(parents=True, exist_ok=True)
    with Figures() as figures:  # the figures are drawn in worker processes while the rest is written
        report = build(inputs, out, figures)
        (out / "report.md").write_text(to_markdown(report), encoding="utf-8")
        if len(report.summary):  # a report over calibrations alone has no runs to sum up
            report.summary.round(6).to_csv(out / "summary.csv", index=False)
    (out / "index.html").write_text(to_html(report, out), encoding="utf-8")  # embeds the finished PNGs
    return report
