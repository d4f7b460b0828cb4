"""How many times the PostgreSQL backend waits for the server per operation: a figure that,
unlike statements per second, does not move with the machine's load.

    python benchmarks/postgres_round_trips.py [--dsn DSN] [--runs N] [--instructions]

Runs the same sweep as ``benchmarks/postgres_throughput.py`` (every bundled scenario x every
built-in strategy, ``--runs`` seeds each, ``--backend postgres``) and counts, at the client:

* a round trip: a statement executed outside a pipeline (psycopg's ``execute`` generator: its
  Parse of a statement prepared for the first time is one more), a pipeline (one Sync: psycopg's,
  or ``tracker.postgres.run_pipeline``'s through libpq, where it exists), a
  COMMIT or ROLLBACK sent through libpq (``tracker.postgres.end_transaction``, where it exists),
  a run's DELETE and final SELECT sent through libpq (``PostgresTracker._admin_result``, where it
  exists), and a statement run through libpq (``tracker.postgres.run_prepared`` and its Parse,
  ``prepare_statement``, where they exist);
* prepares: statements psycopg or ``prepare_statement`` parsed on the server (outside a
  pipeline each is a round trip of its own; a Parse that ``run_pipeline`` sends in its pipeline
  costs none and is not counted);
* the process's CPU time per operation (waiting for a core or for the server does not count);
* the wall time and client CPU of a lone statement's call into libpq (these two move with the
  machine's load; compare them with ``benchmarks/round_trip_gap.py``'s back-to-back figure).

``--instructions`` counts instead the client's instructions per operation under valgrind's
callgrind (the script run twice, with ``--runs`` and twice as many seeds, start-up subtracted), on
PostgreSQL and in memory, and the backend's share by difference: a figure the machine's load
and speed do not move, but that leaves out the kernel's work (sending, waiting, waking). Needs
``valgrind``; takes minutes even with ``--runs 1``.

It counts by wrapping psycopg's internals (checked with psycopg 3.3): an instrument for
comparing two commits, not an API.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg._cursor_base as cursor_base
import psycopg.generators

import tracker.postgres
from sim.cli.args import positive
from tracker.errors import UserError
from tracker.pg_server import choose_server, mask_password

sys.path.insert(0, str(Path(__file__).parent))
from callgrind import under_callgrind  # noqa: E402
from postgres_throughput import harness, run  # noqa: E402

counts: Counter[str] = Counter()
#: Seconds spent in ``run_prepared`` (a lone statement: Bind, Execute, the answer), wall and this
#: thread's CPU.
lone = {"wall": 0.0, "cpu": 0.0}


def counting(owner: Any, name: str, *keys: str) -> None:
    """Wrap ``owner.name``, where it exists, so that each call adds one to each of ``keys``."""
    original = getattr(owner, name, None)
    if original is None:  # an older tree: the place does not exist there
        return

    def counted(*args: Any, **kwargs: Any) -> Any:
        for key in keys:
            counts[key] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)


def count_round_trips() -> None:
    """Wrap every place the backend can wait for the server."""
    pipeline = psycopg.Connection.pipeline

    @contextlib.contextmanager
    def counted_pipeline(self: psycopg.Connection[Any]) -> Iterator[Any]:
        counts["round trips"] += 1
        counts["pipelines"] += 1
        with pipeline(self) as p:
            yield p

    counting(cursor_base, "execute", "round trips")
    counting(psycopg.generators, "execute", "round trips")
    psycopg.Connection.pipeline = counted_pipeline  # type: ignore[assignment,method-assign]
    counting(cursor_base.BaseCursor, "_send_prepare", "prepares")
    counting(tracker.postgres, "end_transaction", "round trips")
    run_prepared = getattr(tracker.postgres, "run_prepared", None)
    if run_prepared is not None:  # a statement run through libpq itself: Bind and Execute

        def counted_run_prepared(*args: Any) -> Any:
            counts["round trips"] += 1
            counts["lone statements"] += 1
            started, cpu = time.perf_counter(), time.thread_time()  # wall-clock ok: an instrument
            try:
                return run_prepared(*args)
            finally:
                lone["wall"] += time.perf_counter() - started  # wall-clock ok
                lone["cpu"] += time.thread_time() - cpu

        tracker.postgres.run_prepared = counted_run_prepared  # type: ignore[attr-defined]
    counting(tracker.postgres, "run_pipeline", "round trips", "pipelines")  # a transaction's opening
    counting(tracker.postgres.PostgresTracker, "_admin_result", "round trips")  # a run's DELETE and final SELECT
    counting(tracker.postgres, "prepare_statement", "round trips", "prepares")  # its Parse, the first time


def instructions_per_operation(dsn: str, runs: int, kind: str) -> tuple[int, float]:
    """(operations counted, instructions per operation) of the benchmark sweep on ``kind``, counted
    by callgrind in this script run twice (``runs`` and ``2 * runs`` seeds), start-up subtracted."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise UserError("--instructions needs valgrind (apt-get install valgrind)")
    counted = []
    for n in (runs, 2 * runs):
        collected, done = under_callgrind(valgrind, [sys.executable, __file__, "--dsn", dsn, "--runs", str(n), "--kind", kind])
        ops = re.search(r"^operations: (\d+)", done.stdout, re.MULTILINE)
        if collected is None or ops is None:
            said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("==")]
            raise UserError(f"the sweep under callgrind failed (exit {done.returncode}): "
                            f"{mask_password(said[-1] if said else 'no message', dsn)}")
        counted.append((int(ops.group(1)), collected))
    (ops_1, count_1), (ops_2, count_2) = counted
    return ops_2 - ops_1, (count_2 - count_1) / (ops_2 - ops_1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--runs", type=positive("--runs"), default=5, help="seeds per scenario and strategy (default 5)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the client's instructions per operation under callgrind instead, on PostgreSQL "
                             "and in memory (slow: use --runs 1)")
    parser.add_argument("--kind", choices=("postgres", "memory"), default="postgres", help=argparse.SUPPRESS)
    args = parser.parse_args()
    server = choose_server(args.dsn)
    if args.instructions:
        ops, postgres = instructions_per_operation(server.dsn, args.runs, "postgres")
        _, memory = instructions_per_operation(server.dsn, args.runs, "memory")
        print(f"client instructions per operation (callgrind, {ops} operations counted, start-up subtracted):")
        print(f"  on PostgreSQL: {postgres / 1e3:,.1f} k")
        print(f"  in memory, the same runs: {memory / 1e3:,.1f} k (the simulation, judging and the model)")
        print(f"  the PostgreSQL backend and libpq, by difference: {(postgres - memory) / 1e3:,.1f} k"
              " (the kernel's work is not counted)")
        return
    if args.kind == "postgres":
        count_round_trips()
    started = time.process_time()
    ops, _, _ = harness(server.dsn, args.runs, args.kind)
    cpu = time.process_time() - started
    print(f"operations: {ops}")
    if args.kind == "memory":
        return
    print(f"round trips: {counts['round trips']} = {counts['round trips'] / ops:.3f} per operation")
    print(f"  of which pipelines: {counts['pipelines']}, prepares: {counts['prepares']}")
    print(f"client CPU: {cpu:.2f} s = {cpu / ops * 1e6:.0f} us per operation (simulation included)")
    if counts["lone statements"]:
        n = counts["lone statements"]
        print(f"lone statements through libpq: {n}, each {lone['wall'] / n * 1e6:.0f} us of wall time and "
              f"{lone['cpu'] / n * 1e6:.0f} us of client CPU (the same call back to back: benchmarks/round_trip_gap.py)")


if __name__ == "__main__":
    run(main)
