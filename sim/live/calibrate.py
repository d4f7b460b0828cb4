"""Calibration: one scenario run live and simulated with matched parameters, violation rates side
by side, and what the live world really did, fitted back into a scenario file.

* **Matched parameters.** The simulated side runs the same scenario with the same seeds (so the
  same durations, failures, stalls, cancellations and clock offsets), except ``network.db_rtt``,
  which is replaced by the round trips the live runs measured (a log-normal with their median and
  99th percentile): localhost is not the scenario's network.
* **The rule.** Per invariant, the share of runs that violated it on each side, each with its 95%
  Wilson interval; the two are *consistent* when the intervals overlap, or when every live seed
  gave the same verdict as the simulated run of the same seed (same durations, failures, clocks:
  a handful of live seeds can be an unlucky sample of a rare outcome that the simulator
  reproduces seed for seed). Overlap is lenient: at small run counts it rarely calls a difference.
* **Measured.** Statement round trips per kind, how long after a state change (BullMQ's events
  stream) its listener started, attempt durations; ``fit_scenario`` writes them as a scenario.

Imports ``sim.runs``, ``sim.judge``, ``sim.engine`` and this package.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from sim.engine.distributions import Dist, parse_dist
from sim.engine.scenario import Scenario, toml_text
from sim.judge.invariants import INVARIANT_IDS
from sim.judge.rates import wilson
from sim.live.runs import LiveRun
from sim.runs.runner import RunResult, run_one
from tracker.strategies import Strategy


@dataclass(frozen=True)
class Comparison:
    """One invariant: violating runs out of runs on each side, the intervals, the verdict."""

    invariant: str
    sim_k: int
    sim_n: int
    live_k: int
    live_n: int
    #: Live seeds whose simulated run (same seed, same world) gave the same verdict, of live_n.
    paired_agree: int = 0

    @property
    def sim_ci(self) -> tuple[float, float]:
        return wilson(self.sim_k, self.sim_n)

    @property
    def live_ci(self) -> tuple[float, float]:
        return wilson(self.live_k, self.live_n)

    @property
    def overlap(self) -> bool:
        (a, b), (c, d) = self.sim_ci, self.live_ci
        return a <= d and c <= b

    @property
    def consistent(self) -> bool:
        """The intervals overlap, or every live seed's verdict is its simulated twin's."""
        return self.overlap or (self.live_n > 0 and self.paired_agree == self.live_n)

    def as_json(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "sim_rate": round(self.sim_k / self.sim_n, 4) if self.sim_n else None,
            "sim_ci": [round(x, 4) for x in self.sim_ci],
            "live_rate": round(self.live_k / self.live_n, 4) if self.live_n else None,
            "live_ci": [round(x, 4) for x in self.live_ci],
            "consistent": self.consistent,
        }


def fitted_dist(samples_us: list[int]) -> Dist | None:
    """A log-normal with the samples' median and 99th percentile (ms); fixed when they agree."""
    if not samples_us:
        return None
    ms = sorted(max(s, 1) / 1000 for s in samples_us)
    median = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return parse_dist({"median_ms": round(median, 3), "p99_ms": round(max(p99, median), 3)})


def pooled(live: list[LiveRun], what: str) -> dict[str, list[int]]:
    """Every run's measurements of one kind, pooled: 'round_trips' or 'listener_delays'."""
    out: dict[str, list[int]] = {}
    for run in live:
        for kind, values in getattr(run.measured, what).items():
            out.setdefault(kind, []).extend(values)
    return out


def matched_scenario(scenario: Scenario, live: list[LiveRun]) -> Scenario:
    """The scenario the simulated side runs: the live runs' round trips as ``network.db_rtt``."""
    trips = [t for values in pooled(live, "round_trips").values() for t in values]
    rtt = fitted_dist(trips)
    return scenario if rtt is None else scenario.with_values({"network.db_rtt": rtt})


def simulate(scenario: Scenario, strategy: Strategy, runs: int, seed: int) -> list[RunResult]:
    return [run_one(scenario, strategy, seed + i) for i in range(runs)]


def judged_live(live: list[LiveRun]) -> tuple[list[LiveRun], list[str]]:
    """The live runs that were judged, and the errors of those that were not (a handler crashed
    or reached a limit: their zero violations say nothing)."""
    return [r for r in live if not r.result.error], [r.result.error for r in live if r.result.error]


def judged_sim(sim: list[RunResult]) -> tuple[list[RunResult], list[str]]:
    """The simulated runs that were judged, and the errors of those that were not."""
    return [r for r in sim if not r.error], [r.error for r in sim if r.error]


def nothing_judged(side: str, count: int, first: str) -> str:
    """The one line refusing a calibration with no judged run on one side."""
    return f"cannot calibrate: all {count} {side} run(s) were not judged; {first}"


def unjudged_note(live_errors: list[str], sim_errors: list[str]) -> str:
    """The one line saying which runs were left out of the comparison (empty when none)."""
    if not live_errors and not sim_errors:
        return ""
    first = (live_errors + sim_errors)[0]
    return (
        f"{len(live_errors)} live and {len(sim_errors)} simulated run(s) were not judged and were left out "
        f"of the comparison; first: {first}"
    )


def compare(sim: list[RunResult], live: list[LiveRun]) -> list[Comparison]:
    """Per invariant: violating runs on each side, and how many live seeds agree with the
    simulated run of the same seed (the simulated side's seeds include every live seed)."""
    sim_rows = [r.row() for r in sim]
    live_rows = [r.result.row() for r in live]
    twin = {r["seed"]: r for r in sim_rows}
    return [
        Comparison(
            inv, sum(1 for r in sim_rows if r[inv] > 0), len(sim_rows), sum(1 for r in live_rows if r[inv] > 0), len(live_rows),
            sum(1 for r in live_rows if r["seed"] in twin and (twin[r["seed"]][inv] > 0) == (r[inv] > 0)),
        )
        for inv in INVARIANT_IDS
    ]


def summary(values_us: list[int]) -> dict[str, Any]:
    """count, median, p99 and max in ms."""
    if not values_us:
        return {"count": 0}
    ms = sorted(v / 1000 for v in values_us)
    return {
        "count": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 3),
        "max_ms": round(ms[-1], 3),
    }


def measurements(live: list[LiveRun]) -> dict[str, Any]:
    """What the live world did: round trips per kind, listener delays per event, durations."""
    return {
        "round_trips": {k: summary(v) for k, v in sorted(pooled(live, "round_trips").items())},
        "listener_delays": {k: summary(v) for k, v in sorted(pooled(live, "listener_delays").items())},
        "durations": summary([d for run in live for d in run.measured.durations]),
        "promotion_delays": summary([d for run in live for d in run.measured.promotion_delays]),
    }


def fit_scenario(scenario: Scenario, live: list[LiveRun]) -> Scenario:
    """The scenario with the measured distributions: round trips, attempt durations and gaps
    between jobs being added."""
    changes: dict[str, Any] = {}
    trips = [t for values in pooled(live, "round_trips").values() for t in values]
    durations = [d for run in live for d in run.measured.durations]
    gaps: list[int] = []
    for run in live:
        created = sorted(t.created_us for t in run.result.record.truth.values())
        gaps.extend(b - a for a, b in zip(created, created[1:], strict=False))
    for path, samples in (("network.db_rtt", trips), ("job.duration", durations), ("job.interarrival", gaps)):
        dist = fitted_dist(samples)
        if dist is not None:
            changes[path] = dist
    return scenario.with_values(changes)


def scenario_toml(scenario: Scenario, description: str) -> str:
    """Every parameter of ``scenario`` as a scenario file (no ``[expect]``: a fit promises nothing)."""
    return toml_text({**scenario.to_toml_table(), "description": description})
