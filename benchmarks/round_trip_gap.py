"""What a round trip to PostgreSQL costs when the client works between statements, as a run does,
beside the same round trip sent back to back, as ``pgbench -S`` sends it.

    python benchmarks/round_trip_gap.py [--dsn DSN] [--statements N] [--gaps 0,100,300,1000] [--rounds 3]

One connection sends a prepared ``SELECT`` by primary key on a one-row temporary table (the kind
of statement ``pgbench -S`` sends) through libpq itself, as ``tracker.postgres.run_prepared``
does. Before each statement the client spends a gap: pure Python work (a loop calibrated to the
given microseconds), then, for the last two lines, work in C (``sum(range(n))``, little memory)
and sleeping, each as long as the largest gap. The figures are the wall time of the statement
itself (send, the server's work, the answer): its mean (what throughput pays), median and 90th
percentile over ``--statements`` statements with the same gap; the client's CPU in the call
(this thread's); and the mean's ratio to the first gap's (back to back, by default). Each round
measures every gap once, one after the other; compare rounds to see the machine's own spread.

A racetrack run spends a few hundred microseconds of Python between two statements of a
session (the driver, the queue world, the history). Where this benchmark shows the round trip
growing with the gap, whatever the work (Python or C), no change to the client's code brings a
run's statements to ``pgbench -S``'s rate, which sends them back to back: the cost is the
machine's. It touches nothing but its temporary table, which ends with the connection.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.pq import ExecStatus

from sim.cli.args import positive, whole
from tracker.errors import UserError
from tracker.pg_server import choose_server, describe_server, mask_password, one_line

sys.path.insert(0, str(Path(__file__).parent))
from postgres_throughput import comma_separated, run  # noqa: E402

MAX_GAP_US = 100_000


def spin(loops: int) -> int:
    """Pure Python work: ``loops`` additions."""
    total = 0
    for i in range(loops):
        total += i
    return total


def c_work(loops: int) -> int:
    """Work in C, not in the interpreter's loop: ``sum(range(loops))``."""
    return sum(range(loops))


def loops_per_us(work: Callable[[int], int]) -> float:
    """How many of ``work``'s loops this machine runs in a microsecond (best of five)."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()  # wall-clock ok: a benchmark calibrates against the clock
        work(200_000)
        best = min(best, time.perf_counter() - started)  # wall-clock ok
    return 200_000 / (best * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument(
        "--statements", type=positive("--statements"), default=2000, help="statements per gap and round (default 2000)"
    )
    parser.add_argument(
        "--gaps",
        type=comma_separated(whole("--gaps", 0, MAX_GAP_US)),
        default="0,100,300,1000",
        help="microseconds of client work before each statement, comma-separated (default 0,100,300,1000)",
    )
    parser.add_argument("--rounds", type=positive("--rounds", 20), default=3, help="rounds (default 3)")
    args = parser.parse_args()
    if not args.gaps:
        parser.error("--gaps needs at least one number of microseconds")
    server = choose_server(args.dsn)
    print(f"server: {mask_password(describe_server(server.dsn), server.dsn)} (from {server.source})")
    try:
        conn = psycopg.connect(server.dsn, autocommit=True)
    except psycopg.Error as exc:
        raise UserError(f"cannot connect to PostgreSQL: {mask_password(one_line(str(exc)), server.dsn)}") from None
    with conn:
        conn.execute("CREATE TEMPORARY TABLE racetrack_gap (id text PRIMARY KEY, v int)")
        conn.execute("INSERT INTO racetrack_gap VALUES ('a', 0)")
        pgconn = conn.pgconn
        if (
            pgconn.prepare(b"racetrack_gap", b"SELECT v FROM racetrack_gap WHERE id = $1", None).status
            != ExecStatus.COMMAND_OK
        ):
            raise UserError("could not prepare the benchmark's statement")
        python_per_us, c_per_us, longest = loops_per_us(spin), loops_per_us(c_work), max(args.gaps)
        modes: list[tuple[str, Callable[[], object]]] = [
            (f"{g:>6,} us of Python work", functools.partial(spin, int(g * python_per_us))) for g in args.gaps
        ]
        modes.append((f"{longest:>6,} us of C work     ", functools.partial(c_work, int(longest * c_per_us))))
        modes.append((f"{longest:>6,} us asleep        ", functools.partial(time.sleep, longest / 1e6)))
        print(
            f"client: {python_per_us:.1f} loops of Python work and {c_per_us:.0f} of C work (sum(range)) per us; "
            f"one SELECT by key per statement, {args.statements} statements per gap and round, one gap after the other"
        )
        for round_ in range(1, args.rounds + 1):
            means: list[float] = []
            for label, work in modes:
                times, cpu = [], 0.0
                for _ in range(args.statements):
                    work()
                    started, cpu_started = time.perf_counter(), time.thread_time()  # wall-clock ok
                    result = pgconn.exec_prepared(b"racetrack_gap", [b"a"])
                    times.append(time.perf_counter() - started)  # wall-clock ok
                    cpu += time.thread_time() - cpu_started
                    if result.status != ExecStatus.TUPLES_OK:
                        message = result.error_message.decode(errors="replace").strip()
                        raise UserError(f"the benchmark's statement failed: {message}")
                means.append(statistics.fmean(times))
                p90 = statistics.quantiles(times, n=10)[-1]
                print(
                    f"round {round_}, after {label}: round trip mean {means[-1] * 1e6:5.0f} us"
                    f" (median {statistics.median(times) * 1e6:5.0f}, p90 {p90 * 1e6:5.0f}),"
                    f" client CPU {cpu / args.statements * 1e6:4.0f} us; {means[-1] / means[0]:4.2f}x the first line's mean"
                )

if __name__ == "__main__":
    run(main)
