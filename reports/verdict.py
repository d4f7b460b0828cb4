"""The verdict: plain sentences written from the numbers, one paragraph per scenario.

Which strategies held, which broke and how often (with the interval), where on a parameter grid
they broke, the shortest counterexample for each, and the cheapest strategy that held. Nothing
here is canned: every clause comes from a table row. Pure functions over the frames of
:mod:`reports.stats`; no plotting, no files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.judge.invariants import INVARIANT_IDS


@dataclass(frozen=True)
class ShortestRun:
    """The violating run with the fewest database operations for one scenario and strategy."""

    scenario: str
    strategy: str
    backend: str
    variant: str
    seed: int
    ops: int
    first_violation: str
    trace: str | None = None  # the trace file's path, when one was given
    violations: int = 0
    #: The trace file as ``racetrack replay`` takes it, when the run is a trace that can be
    #: replayed (``racetrack-trace/2``, an explore's: its world is not the seed's). A results row
    #: or a run record (``/1``, ``sweep --report``'s) is run again from its seed instead.
    replay: str | None = None
    #: Why ``racetrack run VARIANT`` would not run this run's world, in words ('' when it does:
    #: a bundled scenario with the parameters the run recorded).
    unnamed: str = ""


def pct(x: float) -> str:
    """A rate as a short percentage: 0%, 0.4%, 12%, 100%."""
    if x == 0 or x == 1:
        return f"{x:.0%}"
    return f"{x:.1%}" if x < 0.1 or x > 0.9 else f"{x:.0%}"


def interval(lo: float, hi: float) -> str:
    return f"{pct(lo)}–{pct(hi)}"


def _names(items: list[str]) -> str:
    quoted = [f"`{i}`" for i in items]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _strategy(row: pd.Series, backends: int) -> str:
    return f"`{row['strategy']}`" + (f" ({row['backend']})" if backends > 1 else "")


def scenario_verdict(
    scenario: str,
    rates: pd.DataFrame,
    costs: pd.DataFrame,
    grid: pd.DataFrame | None,
    axes: list[str],
    shortest: dict[tuple[str, str], ShortestRun],
) -> list[str]:
    """Sentences for one (base) scenario; ``rates``/``costs`` hold only its rows."""
    backends = rates["backend"].nunique()
    held = rates[rates["any:runs"] == 0]
    broke = rates[rates["any:runs"] > 0]
    total = int(rates["runs"].sum())
    where = f" over a grid of {grid_points(grid, axes)} points ({', '.join(f'`{a}`' for a in axes)})" if axes and grid is not None else ""
    pairs = f"{len(rates)} strategies" if backends == 1 else f"{rates['strategy'].nunique()} strategies on {backends} backends"
    out = [f"**{scenario}**: {total} runs{where}, {pairs}."]
    if broke.empty:
        out.append(
            "No strategy violated any invariant in any run. "
            + "With these run counts a violation rate above "
            + f"{pct(float(rates['any:hi'].max()))} would very probably have shown (95% Wilson upper bound); "
            + "the tables below compare their cost."
        )
    else:
        if held.empty:
            out.append("Every strategy broke.")
        out += held_sentences(held, backends)
        for _, row in broke.sort_values("any:rate", ascending=False, kind="stable").iterrows():
            counts = sorted(((int(row[f"{i}:runs"]), i) for i in INVARIANT_IDS if row[f"{i}:runs"] > 0), key=lambda t: -t[0])
            which = ", ".join(f"`{i}` in {k}" for k, i in counts)
            sentence = (
                f"{_strategy(row, backends)} broke in {int(row['any:runs'])} of {int(row['runs'])} runs "
                f"({pct(float(row['any:rate']))}, 95% CI {interval(float(row['any:lo']), float(row['any:hi']))}): {which}."
            )
            if grid is not None and axes:
                sentence += " " + grid_sentence(grid, axes, str(row["strategy"]), str(row["backend"]))
            example = shortest.get((str(row["strategy"]), str(row["backend"])))
            if example is not None:
                sentence += " " + counterexample_sentence(example)
            out.append(sentence)
    cheap = pd.DataFrame()
    if not held.empty:
        cheap = costs.merge(held[["strategy", "backend"]], on=["strategy", "backend"]).sort_values(
            ["round_trips_per_job", "strategy"], kind="stable")
        cheap = cheap[np.isfinite(cheap["round_trips_per_job"])]  # a file with no jobs has no cost per job
    if not cheap.empty:
        least = float(cheap["round_trips_per_job"].iloc[0])
        tied = cheap[cheap["round_trips_per_job"] <= least * 1.005]  # within half a percent: a tie
        names = [_strategy(r, backends) for _, r in tied.iterrows()]
        known = [(n, float(r["lag_p99_ms"])) for n, (_, r) in zip(names, tied.iterrows(), strict=True) if pd.notna(r["lag_p99_ms"])]
        if not known:
            lags = ""
        elif len({f"{v:.1f}" for _, v in known}) == 1:
            lags = f"{'its' if len(names) == 1 else 'their'} rows show the truth within {known[0][1]:.1f} ms at p99"
        else:
            lags = ", ".join(f"{n} shows the truth within {v:.1f} ms at p99" for n, v in known)
        if len(names) == 1:
            text = f"Of the strategies that held, {names[0]} costs the fewest database round trips per job ({least:.2f})"
        else:
            text = f"Of the strategies that held, {_join(names)} tie for the fewest database round trips per job ({least:.2f})"
        out.append(text + (f"; {lags}." if lags else "."))
    return out


def held_sentences(held: pd.DataFrame, backends: int) -> list[str]:
    """One sentence for the strategies that held with the same number of runs (same bound)."""
    out = []
    for runs, group in held.groupby("runs", sort=False):
        names = [_strategy(r, backends) for _, r in group.iterrows()]
        subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        whose = "its" if len(names) == 1 else "their"
        each = "" if len(names) == 1 else " each"
        out.append(
            f"{subject} held: no invariant was violated in any of {whose} {int(runs)} runs{each} "
            f"(95% upper bound on the violation rate {pct(float(group['any:hi'].iloc[0]))})."
        )
    return out


def overview(rates: pd.DataFrame) -> list[str]:
    """Across scenarios (only said when there are several): who held everywhere, who broke where."""
    scenarios = list(pd.unique(rates["scenario"]))
    if len(scenarios) < 2:
        return []
    backends = rates["backend"].nunique()
    held, broke = [], []
    for (strategy, backend), group in rates.groupby(["strategy", "backend"], sort=False):
        name = f"`{strategy}`" + (f" ({backend})" if backends > 1 else "")
        bad = group[group["any:runs"] > 0]
        if bad.empty:
            held.append(name)
            continue
        worst = bad.sort_values("any:rate", ascending=False, kind="stable").iloc[0]
        broke.append(f"{name} broke in {len(bad)} of {len(group)} (worst: {worst['scenario']}, "
                     f"{pct(float(worst['any:rate']))} of runs)")
    clauses = ([_join(held) + " held in every one"] if held else []) + broke
    return [f"Across {len(scenarios)} scenarios: " + "; ".join(clauses) + "."]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def grid_points(grid: pd.DataFrame, axes: list[str]) -> int:
    return len(grid[axes].drop_duplicates())


def grid_sentence(grid: pd.DataFrame, axes: list[str], strategy: str, backend: str) -> str:
    """Where on the grid one strategy broke: how many points, the worst, and the values of each
    axis it broke at when that is not all of them."""
    part = grid[(grid["strategy"] == strategy) & (grid["backend"] == backend)]
    bad = part[part["violating_runs"] > 0]
    if len(bad) == len(part):
        text = f"It broke at every one of the {len(part)} grid points"
    else:
        text = f"It broke at {len(bad)} of {len(part)} grid points"
    worst = bad.sort_values("rate", ascending=False, kind="stable").iloc[0]
    ties = bad[bad["rate"] == worst["rate"]]
    point = ", ".join(f"`{a}={_value(worst[a])}`" for a in axes)
    if len(ties) == len(part):
        text += f", at the same rate everywhere ({pct(float(worst['rate']))} of the runs at each point)"
    elif len(ties) > 1:
        text += f", most often ({pct(float(worst['rate']))} of the runs) at {len(ties)} points, the first {point}"
    else:
        text += f", most often at {point} ({pct(float(worst['rate']))} of {int(worst['runs'])} runs)"
    limits = []
    for axis in axes:
        every = sorted(pd.unique(part[axis]))
        seen = sorted(pd.unique(bad[axis]))
        if len(seen) < len(every):
            limits.append(f"`{axis}` in {{{', '.join(_value(v) for v in seen)}}} (of {', '.join(_value(v) for v in every)})")
    if limits:
        text += "; only with " + " and ".join(limits)
    return text + "."


def counterexample_sentence(example: ShortestRun) -> str:
    where = f" at `{example.variant.split('[', 1)[1].rstrip(']')}`" if "[" in example.variant else ""
    invariant, _, rest = example.first_violation.partition(": ")
    job = rest.partition(": ")[0]
    text = (
        f"Shortest counterexample: seed {example.seed}{where}, {example.ops} database operations, "
        f"first violation `{invariant}` on {job}"
    )
    if example.replay is not None:  # an explore's trace: its own schedule, not the seed's world
        text += f"; replay with `racetrack replay {example.replay}`"
    elif "[" not in example.variant and example.backend == "memory":  # `racetrack run` simulates in memory
        if example.unnamed:  # a command that names the scenario would fail, or run another world
            text += (f"; to replay it, give `racetrack run` the scenario's file with `--strategy {example.strategy} "
                     f"--seed {example.seed}` ({example.unnamed})")
        else:
            text += f"; replay with `racetrack run {example.variant} --strategy {example.strategy} --seed {example.seed}`"
    return text + "."


def _value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
