"""Runs in flight on PostgreSQL: racetrack's slots (greenlets on one thread that switch while a
run waits for the server, ``sim/runs/inflight.py``) against a thread per slot (what racetrack had
before), in one run, beside ``pgbench -S -c 1``.

    python benchmarks/inflight_slots.py [--dsn DSN] [--runs N] [--in-flight 3,4] [--rounds R] [--seconds S]

Both harnesses run the benchmark sweep of ``postgres_throughput.py`` (every bundled scenario x
every built-in strategy, ``--runs`` seeds each) through ``run_one``, N runs at once, each slot on
backends of its own (its own connections and schema), the plan dealt out to the slots in turn:

- **threads**: N threads. A thread waits for the server inside libpq (or in ``poll``) with the
  GIL released; when the answer comes it waits for the GIL.
- **slots**: racetrack's ``Slots(N)``. A run waiting for its answer switches to the hub, which
  polls every waiting slot's socket and switches to the slot whose answer came. No thread ever
  waits for the GIL. (A statement that may wait for a row lock runs on the backend's own worker
  thread and blocks the hub while it waits: rare, 22 waits in 17,640 operations of this sweep.)

Each round measures threads then slots for each N, then pgbench, and prints statements per
second, this process's CPU per operation and each one's ratio to pgbench, and slots / threads.
Last, whether every result row of every harness equals the row of the same run made one after
the other (it must: a run's results never depend on the wall clock). Prints figures; asserts
nothing.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.engine.scenario import bundled_names, load
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.inflight import Slots
from sim.runs.runner import plan, run_one
from tracker import pg_server
from tracker.pg_server import choose_server, mask_password
from tracker.strategies import builtin_strategies

sys.path.insert(0, str(Path(__file__).parent))
from postgres_throughput import pgbench_select_only, run, sweep_parser  # noqa: E402


def _harness(dsn: str, runs: int, slots: int, start: Callable[[list[Callable[[], None]]], None]) -> tuple[int, float, float, list[Any]]:
    """(operations, wall seconds, CPU seconds of this process, rows in plan order) of the
    benchmark sweep on ``slots`` slots, started and waited for by ``start``."""
    items = list(plan([load(n) for n in bundled_names()], builtin_strategies(), runs, seed=0))
    tables = list(dict.fromkeys(i.scenario.table for i in items))
    rows: list[Any] = [None] * len(items)
    backends: list[dict[Any, Any]] = []
    try:
        for _ in range(slots):
            backends.append({t: open_backend(BackendSpec("postgres", dsn=dsn), t) for t in tables})

        done: list[int] = []

        def slot(k: int) -> Callable[[], None]:
            def work() -> None:
                ops = 0
                for j in range(k, len(items), slots):
                    item = items[j]
                    result = run_one(item.scenario, item.strategy, item.seed, backends[k][item.scenario.table])
                    ops += result.ops
                    rows[j] = result.row()
                done.append(ops)

            return work

        works = [slot(k) for k in range(slots)]
        cpu0, started = _cpu(), time.perf_counter()
        start(works)
        return sum(done), time.perf_counter() - started, _cpu() - cpu0, rows
    finally:
        for by_table in backends:
            for backend in by_table.values():
                close_backend(backend)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _one_after_the_other(works: list[Callable[[], None]]) -> None:
    for work in works:
        work()


def _on_threads(works: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=w) for w in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _on_slots(works: list[Callable[[], None]]) -> None:
    """Each work on one of racetrack's slots (as many slots as works)."""
    slots = Slots(len(works))
    try:
        slots.submit(works).result()
    finally:
        slots.stop()


def main() -> None:
    parser = sweep_parser(__doc__, seconds=5, in_flight="3,4", rounds=3)
    args = parser.parse_args()
    if not args.in_flight:
        parser.error("--in-flight needs at least one number")
    server = choose_server(args.dsn)
    print(f"server: {mask_password(pg_server.describe_server(server.dsn), server.dsn)} (from {server.source})")
    _, _, _, reference = _harness(server.dsn, args.runs, 1, _one_after_the_other)
    same = True
    for round_ in range(1, args.rounds + 1):
        figures = []
        for k in args.in_flight:
            for name, start in (("threads", _on_threads), ("slots", _on_slots)):
                ops, wall, cpu, rows = _harness(server.dsn, args.runs, k, start)
                same = same and json.dumps(rows, default=str) == json.dumps(reference, default=str)
                figures.append((f"{name}, {k} in flight", ops / wall, cpu / ops * 1e6))
        tps = pgbench_select_only(server.dsn, args.seconds)
        print(f"round {round_}: pgbench -S -c 1 {tps:,.0f} statements/s")
        for label, rate, cpu_us in figures:
            print(f"  {label:22} {rate:8,.0f} statements/s  {cpu_us:4.0f} us CPU per operation  ratio {rate / tps:.3f}")
        for k in args.in_flight:
            rates = {label: rate for label, rate, _ in figures}
            print(f"  slots / threads, {k} in flight: {rates[f'slots, {k} in flight'] / rates[f'threads, {k} in flight']:.2f}x")
    print(f"every row equal to the same run's made one after the other: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    run(main)
