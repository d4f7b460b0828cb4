"""The search half of ``racetrack check``: a sweep's verdict (:mod:`sim.runs.check`) judged again
with a search of a budget.

A ``clean`` expectation whose sweep was clean is searched too (exhaustive orders of one job
across worlds, then deepening PCT across worlds: :func:`~sim.search.explore.explore_portfolio`);
a counterexample the search finds fails it, written as a trace whose replay command is printed.
A ``violates:X`` expectation whose sweep missed X holds when the search finds X. Every searched
verdict says what was searched: runs, interleavings, worlds, depths, seconds.

Imports ``sim.search`` and ``sim.runs.check``; prints nothing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from sim.engine.limits import StrategyFailed
from sim.engine.ordered import UNMODELLED_KEYS
from sim.record import conflicts
from sim.runs.check import Verdict
from sim.runs.strategy_source import is_user, origin
from sim.search import trace
from sim.search.explore import Exploration, explore
from tracker.strategies import load_strategy

#: Runs a judged expectation is searched for when neither ``[expect] search`` nor ``--search`` says.
DEFAULT_SEARCH = 100
#: check's search: the sweep already ran random seeds; Hypothesis is slow for a CI gate.
CHECK_METHODS = ("exhaustive", "pct")


def what_was_searched(result: Exploration) -> str:
    """One line: each method of the search, what it covered."""
    parts = []
    for part in result.explored.get("parts", []):
        method, explored = part["method"], part.get("explored")
        if explored is None:
            parts.append(f"{method} skipped ({part.get('skipped', '')})")
        elif method == "exhaustive":
            window = "" if explored["window_ms"] is None else f", window {explored['window_ms']:g} ms"
            parts.append(f"exhaustive {explored['ran']} interleavings of {explored['worlds']} world(s) of one job"
                         f"{'' if explored['complete'] else ' (not all)'}{window}")
        elif method == "pct":
            depths = sorted(int(d) for d in explored["depths"])
            span = f"depth {depths[0]}" if len(depths) == 1 else f"depths {depths[0]}-{depths[-1]}" if depths else "no depth"
            parts.append(f"pct {explored['runs']} runs over {explored['worlds']} world(s), {span}, "
                         f"window {explored['window_ms']:g} ms")
        else:
            parts.append(f"{method} {explored.get('runs', 0)} runs")
    coverage = result.explored.get("coverage")
    return "; ".join(parts) + (f"; coverage: {conflicts.sentence(coverage)}" if coverage else "")


def _trace_path(directory: Path, v: Verdict, invariant: str | None) -> Path:
    name = f"{v.expectation.scenario.name}-{v.expectation.strategy}" + (f"-{invariant}" if invariant else "")
    return directory / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".json")


def _write(result: Exploration, v: Verdict, path: Path) -> str:
    """The found counterexample as a trace; the command that replays it, runnable anywhere."""
    found = result.found
    assert found is not None
    ref = v.expectation.strategy
    where = origin(ref) if is_user(ref) else None
    data = trace.counterexample_data(
        found.case, found.run.record, found.run.schedule, found.violations,
        strategy=ref if is_user(ref) else load_strategy(ref).name, backend="memory",
        found_by={"method": f"check/{result.explored['found_by']}", "seed": found.case.seed},
        strategy_source=where.to_data() if where else None, table=v.expectation.scenario.table,
    )
    trace.write(path, data)
    return f"racetrack replay {shlex.quote(str(path.resolve()))}"


def search_verdict(v: Verdict, runs: int, seed: int, traces: Path, **options: Any) -> Verdict:
    """``v`` judged again with a search of ``runs`` runs (module docstring). A strategy whose code
    stops a searched run (a crash, a limit) is an error of this verdict, not of the whole check:
    the other verdicts, and the JUnit file, still come."""
    if v.skipped or v.errored or runs <= 0:  # a strategy that broke in the sweep is not searched
        return v
    try:
        return _search_verdict(v, runs, seed, traces, **options)
    except StrategyFailed as exc:
        return replace(v, errors=(f"the search ran a world where the strategy's code stopped: {exc}",))


def _search_verdict(v: Verdict, runs: int, seed: int, traces: Path, **options: Any) -> Verdict:
    e = v.expectation
    unmodelled = [k for k in UNMODELLED_KEYS if e.scenario[k] is not None]
    if unmodelled:  # a forced order cannot stop handlers where a process death does: sweep only
        return replace(v, searched=(f"none (forced orders do not model {', '.join(unmodelled)} yet)",))
    strategy = load_strategy(e.strategy)
    if e.expect == "clean":
        if not v.passed:  # the sweep already failed it: nothing a search could add
            return v
        result = explore(e.scenario, strategy, seed=seed, runs=runs, portfolio=CHECK_METHODS, **options)
        if result.found is None:
            return replace(v, searched=(what_was_searched(result),), search_seconds=result.seconds)
        found = ", ".join(sorted({x.invariant for x in result.found.violations}))
        hint = _write(result, v, _trace_path(traces, v, None))
        problem = f"search ({result.explored['found_by']}) found {found} in world seed {result.found.case.seed}: {hint}"
        return replace(v, problems=(*v.problems, problem), searched=(what_was_searched(result),),
                       search_seconds=result.seconds)
    problems, notes = list(v.problems), list(v.notes)
    searched: list[str] = []
    seconds = 0.0
    for invariant in e.must_violate:
        missed = next((p for p in problems if p.startswith(f"{invariant} violated in 0/")), None)
        if missed is None:
            continue
        result = explore(e.scenario, strategy, seed=seed, runs=runs, invariants=(invariant,), portfolio=CHECK_METHODS,
                         **options)
        searched.append(f"for {invariant}: {what_was_searched(result)}")
        seconds += result.seconds
        if result.found is not None:
            problems.remove(missed)
            hint = _write(result, v, _trace_path(traces, v, invariant))
            notes.append(f"{invariant} missed by the sweep, found by search ({result.explored['found_by']}): {hint}")
    return replace(v, problems=tuple(problems), notes=tuple(notes), searched=tuple(searched), search_seconds=seconds)
