"""Runs per second of ``seed-fast-jobs`` in memory, beside a bare SimPy skeleton that processes
the same number of events per run, and their ratio.

    python benchmarks/sim_throughput.py [--runs N] [--scenario NAME] [--strategy S]

The skeleton is what any SimPy model of this size pays at least: the same count of scheduled
events (timeouts and process resumptions), spread over the same number of processes, doing
nothing else. The ratio says how much of a racetrack run is the simulation engine itself.

It then splits a run's time: judging and the result row alone (on the runs' finished records),
and the model's statements alone (each run's database operations executed again, in the order
they ran, on a fresh ``MemoryTracker``). What is left is the driver, the queue world, the latency
draws and the history records. Beside them, the time per run a ratio of 0.3 allows: if judging,
the model and the skeleton already take it, no speed-up of the driver and world alone reaches it.

Last, what no faster racetrack can leave out while its results stay the same: seeding the run's
named random streams (each ``random.Random(name)``, as the world seeds them), the draws the run
makes from them (the same calls into ``random``, replayed on fresh streams), and the strategy's
own handler code (the time inside its generators' steps); with the skeleton, what is left of the
0.3 budget for the model, judging, the driver, the world and the history, in all and for each of
a run's database operations.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Generator
from typing import Any

import simpy

from sim.cli.args import positive
from sim.engine import interpreter
from sim.engine import scenario as scenarios
from sim.engine.world import World
from sim.judge.invariants import judge
from sim.runs.runner import RunResult, run_one
from tracker.errors import UserError
from tracker.memory import MemoryTracker
from tracker.strategies import load_strategy
from tracker.table import Table

#: Every method of ``random.Random`` that draws (all but seeding and the state's get and set).
DRAWS = tuple(
    m for m in dir(random.Random)
    if not m.startswith("_") and m not in ("seed", "getstate", "setstate") and callable(getattr(random.Random, m))
)


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


def judge_and_row(result: RunResult) -> None:
    """What ``run_one`` does after the simulation, for the memory backend: judge, then the row."""
    judgement = judge(result.record, None)
    RunResult(result.scenario, result.strategy, result.backend, result.seed, judgement.violations, result.record,
              params=result.params, params_json=result.params_json, unknown=judgement.unknown).row()


def model_statements(result: RunResult, table: Table | None) -> None:
    """The run's database operations again, in the order they ran, on a fresh model."""
    model = MemoryTracker(table)
    for step in result.record.steps:
        if step.kind == "db":
            model.execute(step.actor, step.op, step.db_now_us)


def stream_draws(scenario, strategy, seed: int) -> tuple[list[str], list[tuple[int, str, tuple[Any, ...]]]]:
    """The names of the random streams one run seeds, in order, and the draws it makes from them:
    (stream, method, arguments) for each call racetrack makes (a ``gauss`` that calls ``random``
    inside counts once)."""
    names: list[str] = []
    calls: list[tuple[int, str, tuple[Any, ...]]] = []
    inside = [False]
    plain = random.Random

    class Counting(plain):
        def __init__(self, x: Any = None) -> None:
            self.index = len(names)
            names.append(x)
            super().__init__(x)

    def recorded(method: str) -> Any:
        draw = getattr(plain, method)

        def record(self: Any, *args: Any) -> Any:
            if inside[0]:
                return draw(self, *args)
            inside[0] = True
            try:
                calls.append((self.index, method, args))
                return draw(self, *args)
            finally:
                inside[0] = False

        return record

    for method in DRAWS:
        setattr(Counting, method, recorded(method))
    random.Random = Counting  # type: ignore[misc]  # as the world calls it: random.Random(name)
    try:
        run_one(scenario, strategy, seed)
    finally:
        random.Random = plain  # type: ignore[misc]
    return names, calls


def draws_us(names: list[str], calls: list[tuple[int, str, tuple[Any, ...]]], runs: int) -> float:
    """Microseconds the draws of one run take in ``random`` itself: the least over ``runs``
    repetitions, each on freshly seeded streams (the seeding not timed), the loop's cost taken off."""
    best = float("inf")
    for _ in range(runs):
        streams = [random.Random(name) for name in names]
        bound = [(getattr(streams[i], method), args) for i, method, args in calls]
        t0 = time.perf_counter_ns()
        for draw, args in bound:
            draw(*args)
        t1 = time.perf_counter_ns()
        for _draw, _args in bound:
            pass
        best = min(best, (t1 - t0) - (time.perf_counter_ns() - t1))
    return best / 1000


def handler_us(scenario, strategy, runs: int) -> float:
    """Microseconds per run spent inside the strategy's generators (each step timed, the timer's
    own cost taken off)."""
    spent = [0, 0]  # ns, steps
    clock, plain_start = time.perf_counter_ns, interpreter.start

    def timed(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        send: Any = None
        throw: BaseException | None = None
        while True:
            started = clock()
            try:
                op = gen.throw(throw) if throw is not None else gen.send(send)
            except StopIteration as end:
                spent[0] += clock() - started
                spent[1] += 1
                return end.value
            spent[0] += clock() - started
            spent[1] += 1
            send, throw = None, None
            try:
                send = yield op
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:  # an error answer: thrown into the handler, as the driver does
                throw = exc

    def start(fn: Any, *args: Any) -> Any:
        gen = plain_start(fn, *args)
        return timed(gen) if isinstance(gen, Generator) else gen

    calls = 100_000
    t0 = clock()
    for _ in range(calls):
        clock() - clock()
    timer_ns = (clock() - t0) / calls
    interpreter.start = start
    try:
        for i in range(runs):
            run_one(scenario, strategy, i)
    finally:
        interpreter.start = plain_start
    return (spent[0] - spent[1] * timer_ns) / runs / 1000


def rate(fn, runs: int) -> float:
    started = time.perf_counter()
    for i in range(runs):
        fn(i)
    return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive("--runs"), default=500)
    parser.add_argument("--scenario", default="seed-fast-jobs")
    parser.add_argument("--strategy", default="naive")
    args = parser.parse_args()
    try:
        scenario = scenarios.load(args.scenario)
        strategy = load_strategy(args.strategy)
    except UserError as exc:
        parser.error(str(exc))
    samples = [count_events(scenario, strategy, seed) for seed in range(20)]
    events = round(sum(e for e, _ in samples) / len(samples))
    processes = round(sum(p for _, p in samples) / len(samples))
    ours = rate(lambda i: run_one(scenario, strategy, i).row(), args.runs)
    bare = rate(lambda i: skeleton_run(events, processes), args.runs)
    print(f"scenario {args.scenario}, strategy {args.strategy}: ~{events} SimPy events and {processes} processes per run")
    print(f"racetrack (simulate + judge + result row): {ours:8.1f} runs/s")
    print(f"bare SimPy skeleton, same events:          {bare:8.1f} runs/s")
    print(f"ratio racetrack / skeleton:                {ours / bare:8.2f}  (aim: >= 0.3)")
    results = [run_one(scenario, strategy, i) for i in range(args.runs)]
    judging = rate(lambda i: judge_and_row(results[i]), args.runs)
    model = rate(lambda i: model_statements(results[i], scenario.table), args.runs)
    per_run = {"skeleton": 1e6 / bare, "judging": 1e6 / judging, "model": 1e6 / model}
    rest = 1e6 / ours - sum(per_run.values())
    print(f"one run: {1e6 / ours:,.0f} us = SimPy skeleton {per_run['skeleton']:,.0f} + judging and result row "
          f"{per_run['judging']:,.0f} + the model's statements {per_run['model']:,.0f} + driver, world, draws and "
          f"history {rest:,.0f}")
    print(f"a ratio of 0.3 allows {1e6 / bare / 0.3:,.0f} us per run; skeleton, judging and model alone take "
          f"{sum(per_run.values()):,.0f} us")
    names, calls = stream_draws(scenario, strategy, 0)
    seeding = 1e6 / rate(lambda i: [random.Random(n) for n in names], args.runs)
    draws = draws_us(names, calls, args.runs)
    handlers = handler_us(scenario, strategy, args.runs)
    fixed = per_run["skeleton"] + seeding + draws + handlers
    left = 1e6 / bare / 0.3 - fixed
    ops = sum(step.kind == "db" for result in results for step in result.record.steps) / len(results)
    print(f"the same results need at least: seeding run 0's {len(names)} random streams {seeding:,.0f} us + its "
          f"{len(calls)} draws from them {draws:,.0f} us + the strategy's own handler code {handlers:,.0f} us + the "
          f"skeleton = {fixed:,.0f} us; 0.3 leaves {left:,.0f} us for the model, judging, the driver, the world and "
          f"the history, which take {1e6 / ours - fixed:,.0f} us now" + (
              f": {left / ops:,.2f} against {(1e6 / ours - fixed) / ops:,.2f} us for each of a run's {ops:,.0f} "
              "database operations" if ops else ""))


if __name__ == "__main__":
    main()
