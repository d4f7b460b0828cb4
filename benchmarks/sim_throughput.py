"""Runs per second of ``seed-fast-jobs`` in memory, beside a bare SimPy skeleton that processes
the same number of events per run, and their ratio.

    python benchmarks/sim_throughput.py [--runs N] [--scenario NAME] [--strategy S]

The skeleton is what any SimPy model of this size pays at least: the same count of scheduled
events (timeouts and process resumptions), spread over the same number of processes, doing
nothing else. The ratio says how much of a racetrack run is the simulation engine itself.
"""

from __future__ import annotations

import argparse
import time

import simpy

from sim.engine import scenario as scenarios
from sim.engine.world import World
from sim.runs.runner import run_one
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy


def count_events(scenario, strategy, seed: int) -> tuple[int, int]:
    """(events scheduled, processes started) in one run, by counting SimPy's schedule calls."""
    counts = {"events": 0, "processes": 0}
    schedule, process_init = simpy.Environment.schedule, simpy.events.Process.__init__

    def counting_schedule(self, event, priority=1, delay=0):
        counts["events"] += 1
        return schedule(self, event, priority, delay)

    def counting_init(self, env, generator):
        counts["processes"] += 1
        process_init(self, env, generator)

    simpy.Environment.schedule, simpy.events.Process.__init__ = counting_schedule, counting_init
    try:
        World(scenario, strategy, MemoryTracker(), seed).run()
    finally:
        simpy.Environment.schedule, simpy.events.Process.__init__ = schedule, process_init
    return counts["events"], counts["processes"]


def skeleton_run(events: int, processes: int) -> None:
    """A SimPy run with ``processes`` processes scheduling ``events`` events in all."""
    env = simpy.Environment()
    per_process = max(1, (events - processes) // max(processes, 1))

    def actor(env):
        for _ in range(per_process):
            yield env.timeout(1)

    for _ in range(processes):
        env.process(actor(env))
    env.run()


def rate(fn, runs: int) -> float:
    started = time.perf_counter()
    for i in range(runs):
        fn(i)
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--scenario", default="seed-fast-jobs")
    parser.add_argument("--strategy", default="naive")
    args = parser.parse_args()
    scenario = scenarios.load(args.scenario)
    strategy = load_strategy(args.strategy)
    samples = [count_events(scenario, strategy, seed) for seed in range(20)]
    events = round(sum(e for e, _ in samples) / len(samples))
    processes = round(sum(p for _, p in samples) / len(samples))
    ours = rate(lambda i: run_one(scenario, strategy, i).row(), args.runs)
    bare = rate(lambda i: skeleton_run(events, processes), args.runs)
    print(f"scenario {args.scenario}, strategy {args.strategy}: ~{events} SimPy events and {processes} processes per run")
    print(f"racetrack (simulate + judge + result row): {ours:8.1f} runs/s")
    print(f"bare SimPy skeleton, same events:          {bare:8.1f} runs/s")
    print(f"ratio racetrack / skeleton:                {ours / bare:8.2f}  (aim: >= 0.3)")


if __name__ == "__main__":
    main()
