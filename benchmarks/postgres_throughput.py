"""How fast racetrack drives a real PostgreSQL, beside ``pgbench -S`` on the same server.

    python benchmarks/postgres_throughput.py [--dsn DSN] [--runs N] [--seconds S]

1. The harness: a sweep of every bundled scenario x every built-in strategy, ``--runs`` seeds
   each, on ``--backend postgres`` in this one process; statements per second = database
   operations sent to the server (every round trip: BEGIN/COMMIT included) / wall time. The
   same sweep in memory is timed too, to show what the simulation itself costs.
2. ``pgbench -S -c 1`` (select-only, one client) for ``--seconds`` on the same server, its tables
   in a schema of their own (dropped afterwards): transactions per second, one statement each.

The server is chosen as racetrack chooses it (``--dsn``, ``DATABASE_URL``, ``PG*``, embedded).
pgbench: the embedded server's own, else ``pgbench`` on PATH, else PostgreSQL 15's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from sim.engine.scenario import bundled_names, load
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.runner import plan, run_one
from tracker import pg_server
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
    """(operations, wall seconds, seconds inside the backend) of the benchmark sweep."""
    items = list(plan([load(n) for n in bundled_names()], builtin_strategies(), runs, seed=0))
    backend = TimedBackend(open_backend(BackendSpec(kind, dsn=dsn)))
    try:
        started = time.perf_counter()
        ops = sum(run_one(i.scenario, i.strategy, i.seed, backend).ops for i in items)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - started
    finally:
        close_backend(backend.backend)
    return ops, elapsed, backend.seconds


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


def pgbench_select_only(dsn: str, seconds: int) -> float:
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
                [pgbench, "-S", "-c", "1", "-T", str(seconds), dsn], env=env, check=True, capture_output=True, text=True
            ).stdout
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out) or re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        sys.exit("benchmark: could not read pgbench's tps")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--runs", type=int, default=5, help="seeds per scenario and strategy (default 5)")
    parser.add_argument("--seconds", type=int, default=10, help="pgbench duration (default 10)")
    args = parser.parse_args()
    server = choose_server(args.dsn)
    print(f"server: {mask_password(pg_server.describe_server(server.dsn), server.dsn)} (from {server.source})")

    memory_ops, memory_s, _ = harness(server.dsn, args.runs, "memory")
    ops, elapsed, inside = harness(server.dsn, args.runs, "postgres")
    assert ops == memory_ops, "the same sweep must send the same operations"
    harness_rate, backend_rate = ops / elapsed, ops / inside
    print(f"harness, memory:    {memory_ops} operations in {memory_s:.2f} s = {memory_ops / memory_s:,.0f} op/s (simulation only)")
    print(f"harness, postgres:  {ops} statements in {elapsed:.2f} s = {harness_rate:,.0f} statements/s end to end")
    print(f"  inside the PostgreSQL backend: {inside:.2f} s = {backend_rate:,.0f} statements/s (incl. per-run reset)")
    tps = pgbench_select_only(server.dsn, args.seconds)
    print(f"pgbench -S -c 1:    {tps:,.0f} statements/s")
    print(f"ratio harness / pgbench: {harness_rate / tps:.2f} end to end, {backend_rate / tps:.2f} backend only")


if __name__ == "__main__":
    main()
