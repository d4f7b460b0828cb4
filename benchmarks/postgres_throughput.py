"""How fast racetrack drives a real PostgreSQL, beside ``pgbench -S`` on the same server.

    python benchmarks/postgres_throughput.py [--dsn DSN] [--runs N] [--seconds S] [--in-flight 1,2] [--workers 2] [--rounds R]

1. The harness: a sweep of every bundled scenario x every built-in strategy, ``--runs`` seeds
   each, on ``--backend postgres`` in this one process (``racetrack sweep --workers 1``), once for
   each ``--in-flight`` value (runs in flight at once, each on its own connections and schema;
   1 is one run after the other); statements per second = database operations sent to the
   server (every round trip: BEGIN/COMMIT included) / wall time. Beside it: this process's CPU
   time per operation (simulation included; waiting for a core does not count) and how idle the
   machine's cores were (``/proc/stat``: 0 % means the cores, shared by Python and a local
   server, were the limit). The same sweep in memory is timed too, to show what the simulation
   itself costs.
2. ``pgbench -S -c 1`` (select-only, one client) for ``--seconds`` on the same server, its tables
   in a schema of their own (dropped afterwards): transactions per second, one statement each.

3. With ``--workers N`` (N > 1, comma-separated for several): the same sweep as ``racetrack sweep
   --workers N`` runs it (N worker processes, one run in flight each: the default on a server
   with N cores), beside ``pgbench -S -c N -j N`` (N clients on N threads): each side with N
   client processes, so their ratio compares like with like. Client CPU here counts the worker
   processes too.

``--rounds`` repeats 1 and 2 (and 3), alternating the ``--in-flight`` values, so that a ratio compares
figures taken a few seconds apart. The server is chosen as racetrack chooses it (``--dsn``,
``DATABASE_URL``, ``PG*``, embedded). pgbench: the embedded server's own, else ``pgbench`` on
PATH, else PostgreSQL 15's.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from sim.cli.args import MAX_IN_FLIGHT, MAX_WORKERS, positive
from sim.engine.scenario import bundled_names, load
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.runner import plan, run_one
from sim.runs.sweep import Execution, Sweep, SweepRun
from tracker import pg_server
from tracker.errors import UserError
from tracker.pg_server import choose_server, mask_password
from tracker.strategies import builtin_strategies


class TimedBackend:
    """A backend wrapper that adds up the wall time spent inside the backend's calls."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.name, self.seconds = backend, backend.name, 0.0

    def _timed(self, method: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.backend, method)(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def reset(self) -> None:
        self._timed("reset")

    def execute(self, *args: Any) -> Any:
        return self._timed("execute", *args)

    def resume(self, *args: Any) -> Any:
        return self._timed("resume", *args)

    def end_session(self, *args: Any) -> None:
        self._timed("end_session", *args)

    def rows(self) -> Any:
        return self._timed("rows")


def harness(dsn: str, runs: int, kind: str) -> tuple[int, float, float]:
    """(operations, wall seconds, seconds inside the backend) of the benchmark sweep, one run after
    the other through ``run_one`` (one backend per table the scenarios track, as a sweep has)."""
    items = list(plan([load(n) for n in bundled_names()], builtin_strategies(), runs, seed=0))
    backends: dict[Any, TimedBackend] = {}
    try:
        for table in dict.fromkeys(i.scenario.table for i in items):
            backends[table] = TimedBackend(open_backend(BackendSpec(kind, dsn=dsn), table))
        started = time.perf_counter()
        ops = sum(run_one(i.scenario, i.strategy, i.seed, backends[i.scenario.table]).ops for i in items)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
    finally:
        for backend in backends.values():
            close_backend(backend.backend)
    return ops, elapsed, sum(b.seconds for b in backends.values())


def busy_idle_ticks() -> tuple[int, int] | None:
    """The machine's busy and idle CPU ticks so far (None where there is no /proc/stat)."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields[:8]) - idle, idle


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (pool workers)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def sweep_harness(
    dsn: str, runs: int, kind: str, in_flight: int, workers: int = 1
) -> tuple[int, float, float, float | None]:
    """(operations, wall seconds, CPU seconds of this process and its workers, idle share of the
    machine's cores) of the benchmark sweep run as ``racetrack sweep --workers W --in-flight N``
    runs it."""
    sweep = Sweep(tuple(load(n) for n in bundled_names()), tuple(s.name for s in builtin_strategies()), runs, 0,
                  BackendSpec(kind, dsn))
    ticks, cpu, started = busy_idle_ticks(), _cpu_seconds(), time.perf_counter()
    with SweepRun(sweep, Execution(workers=workers, in_flight=in_flight)) as run:
        ops = sum(row["ops"] for row in run.rows())
    elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    after = busy_idle_ticks()
    idle = None
    if ticks is not None and after is not None and after != ticks:
        busy, idled = after[0] - ticks[0], after[1] - ticks[1]
        idle = idled / (busy + idled)
    return ops, elapsed, cpu, idle


def find_pgbench() -> str | None:
    embedded = pg_server._embedded
    if embedded is not None:
        bundled = Path(embedded.bin_path) / "pgbench"
        if bundled.exists():
            return str(bundled)
    for candidate in (shutil.which("pgbench"), "/usr/lib/postgresql/15/bin/pgbench"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def pgbench_select_only(dsn: str, seconds: int, clients: int = 1) -> float:
    pgbench = find_pgbench()
    if pgbench is None:
        sys.exit("benchmark: pgbench not found (install postgresql-client or use the embedded server)")
    schema = f"racetrack_pgbench_{os.getpid()}"
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            subprocess.run([pgbench, "-i", "-q", "-s", "1", dsn], env=env, check=True, capture_output=True)
            out = subprocess.run(
                [pgbench, "-S", "-c", str(clients), "-j", str(clients), "-T", str(seconds), dsn], env=env, check=True, capture_output=True, text=True
            ).stdout
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out) or re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        sys.exit("benchmark: could not read pgbench's tps")
    return float(match.group(1))


def comma_separated(one: Callable[[str], int]) -> Callable[[str], list[int]]:
    """An argument type: comma-separated values, each parsed by ``one`` (an argument type of
    ``sim.cli.args``, whose error names the flag); an empty list for ""."""
    return lambda text: [one(item) for item in text.split(",") if item.strip()]


def sweep_parser(doc: str, seconds: int, in_flight: str, rounds: int) -> argparse.ArgumentParser:
    """The options of a benchmark that runs the benchmark sweep beside pgbench, with its defaults."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--runs", type=positive("--runs"), default=5, help="seeds per scenario and strategy (default 5)")
    parser.add_argument("--seconds", type=positive("--seconds"), default=seconds, help=f"pgbench duration (default {seconds})")
    parser.add_argument("--in-flight", type=comma_separated(positive("--in-flight", MAX_IN_FLIGHT)), default=in_flight,
                        help=f"runs in flight to measure, comma-separated (default {in_flight})")
    parser.add_argument("--rounds", type=positive("--rounds"), default=rounds, help=f"times to measure each, alternating (default {rounds})")
    return parser


def main() -> None:
    parser = sweep_parser(__doc__, seconds=10, in_flight="1,2", rounds=1)
    parser.add_argument("--workers", type=comma_separated(positive("--workers", MAX_WORKERS)), default="",
                        help="worker processes to measure beside pgbench -c N -j N, comma-separated (default: none)")
    args = parser.parse_args()
    in_flights, workers = args.in_flight, args.workers
    if not in_flights:
        parser.error("--in-flight needs at least one number")
    server = choose_server(args.dsn)
    print(f"server: {mask_password(pg_server.describe_server(server.dsn), server.dsn)} (from {server.source})")

    memory_ops, memory_s, _ = harness(server.dsn, args.runs, "memory")
    print(f"harness, memory:    {memory_ops} operations in {memory_s:.2f} s = {memory_ops / memory_s:,.0f} op/s (simulation only)")
    for round_ in range(1, args.rounds + 1):
        rates = {}
        for k in in_flights:
            ops, elapsed, cpu, idle = sweep_harness(server.dsn, args.runs, "postgres", k)
            assert ops == memory_ops, "the same sweep must send the same operations"
            rates[k] = ops / elapsed
            idle_text = "" if idle is None else f", cores idle {idle:.0%}"
            print(f"round {round_}, postgres, {k} in flight: {ops} statements in {elapsed:.2f} s = {rates[k]:,.0f} statements/s"
                  f" end to end; client CPU {cpu / ops * 1e6:.0f} us per operation{idle_text}")
        tps = pgbench_select_only(server.dsn, args.seconds)
        load = f" (load average {os.getloadavg()[0]:.1f})" if hasattr(os, "getloadavg") else ""
        print(f"round {round_}, pgbench -S -c 1: {tps:,.0f} statements/s{load}")
        print(f"round {round_}, ratio harness / pgbench: "
              + ", ".join(f"{rates[k] / tps:.3f} with {k} in flight" for k in in_flights))
        for w in workers:
            ops, elapsed, cpu, idle = sweep_harness(server.dsn, args.runs, "postgres", 1, w)
            assert ops == memory_ops, "the same sweep must send the same operations"
            idle_text = "" if idle is None else f", cores idle {idle:.0%}"
            print(f"round {round_}, postgres, {w} worker processes: {ops} statements in {elapsed:.2f} s = "
                  f"{ops / elapsed:,.0f} statements/s end to end; client CPU {cpu / ops * 1e6:.0f} us per operation{idle_text}")
            tps_w = pgbench_select_only(server.dsn, args.seconds, w)
            print(f"round {round_}, pgbench -S -c {w} -j {w}: {tps_w:,.0f} statements/s")
            print(f"round {round_}, ratio harness / pgbench with {w} client processes each: {ops / elapsed / tps_w:.3f}"
                  f" (against pgbench -c 1: {ops / elapsed / tps:.3f})")


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``: a UserError (an unreachable server, a bad DSN) ends it in one
    line and exit 2, as racetrack ends."""
    try:
        main()
    except UserError as exc:
        print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run(main)
