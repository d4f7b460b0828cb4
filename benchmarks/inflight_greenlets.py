"""Runs in flight on PostgreSQL: threads, as racetrack has them, against one thread that switches
between its runs itself (each run in a greenlet), beside ``pgbench -S -c 1``. A prototype of a
design racetrack does not have yet, measured so that whoever builds it knows what it gives.

    pip install greenlet
    python benchmarks/inflight_greenlets.py [--dsn DSN] [--runs N] [--in-flight 3,4] [--rounds R] [--seconds S]

Both harnesses run the benchmark sweep of ``postgres_throughput.py`` (every bundled scenario x
every built-in strategy, ``--runs`` seeds each) through ``run_one``, N runs at once, each slot on
backends of its own (its own connections and schema), the plan dealt out to the slots in turn:

- **threads**: N threads, racetrack's backend as it is. A thread waits for the server inside
  libpq (or in ``poll``) with the GIL released; when the answer comes it waits for the GIL.
- **greenlets**: N greenlets in this one thread. Here the backend's waits for the server switch
  to a hub, which polls every slot's socket at once and switches to the greenlets whose answers
  came: its one wait (``_wait_readable``, a pipeline's) replaced, and what it runs through libpq's
  blocking calls (a lone statement, COMMIT and ROLLBACK, the admin connection's statements) sent
  instead and waited for so. No thread ever waits for the GIL. A statement that may wait
  for a row lock still runs on the backend's own worker thread and blocks the hub while it
  waits (rare: 22 waits in 17,640 operations of this sweep).

Each round measures threads then greenlets for each N, then pgbench, and prints statements per
second, this process's CPU per operation and each one's ratio to pgbench. Last, whether every
result row of every harness equals the row of the same run made one after the other (it must:
a run's results never depend on the wall clock). Prints figures; asserts nothing. What a real
implementation would need is in ``docs/performance.md`` ("Runs in flight in one thread").
"""

from __future__ import annotations

import json
import resource
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg.pq import ExecStatus, Format

import tracker.postgres as pg_backend
from sim.engine.scenario import bundled_names, load
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.runner import plan, run_one
from tracker import pg_server
from tracker.pg_server import choose_server, mask_password
from tracker.strategies import builtin_strategies

sys.path.insert(0, str(Path(__file__).parent))
from postgres_throughput import pgbench_select_only, run, sweep_parser  # noqa: E402

try:
    from greenlet import getcurrent, greenlet
except ImportError:  # said in one line by main()
    greenlet = None

_HUB: Any = None
_HUB_THREAD: int | None = None


def _wait(fd: int, events: int) -> None:
    """Wait until ``fd`` is ready: in a slot's greenlet, by switching to the hub; elsewhere (the
    hub itself, the backend's lock-wait threads) in ``poll``."""
    if threading.get_ident() != _HUB_THREAD or getcurrent() is _HUB:
        waiting = select.poll()
        waiting.register(fd, events)
        waiting.poll()
        return
    _HUB.switch((fd, events))


def _wait_readable(pgconn: Any) -> None:
    """The backend's wait for the server (``tracker.postgres._wait_readable``), through :func:`_wait`."""
    _wait(pgconn.socket, select.POLLIN)


def _answer(conn: Any, expected: ExecStatus) -> Any:
    """The last result of what was just sent on ``conn`` (its waits through :func:`_wait`),
    raised as the backend raises it unless its status is ``expected``."""
    pgconn = conn.pgconn
    while pgconn.flush():
        _wait(pgconn.socket, select.POLLOUT)
    result = None
    while (more := pg_backend._next_result(pgconn)) is not None:
        result = more
    if result is None:
        raise pg_backend.errors.OperationalError(pgconn.error_message.decode("utf-8", "replace") or "the connection broke")
    if result.status != expected:
        raise pg_backend._error(conn, result)
    return result


# What the backend runs through libpq's blocking calls, sent instead and waited for as above.


def _run_prepared(link: Any, query: str, params: list[Any]) -> Any:
    pgq, key, name = pg_backend._bound(link, query, params)
    if key is not None:
        pg_backend.prepare_statement(link.conn, name, pgq)
        link.prepared[key] = name
    link.conn.pgconn.send_query_prepared(name, pgq.params, pgq.formats, result_format=Format.BINARY)
    return _answer(link.conn, ExecStatus.TUPLES_OK)


def _end_transaction(conn: Any, command: str) -> str:
    conn.pgconn.send_query(command.encode())
    return (_answer(conn, ExecStatus.COMMAND_OK).command_status or b"").decode()


def _admin_result(self: Any, query: bytes, status: ExecStatus) -> Any:
    self.admin.pgconn.send_query_params(query, None, result_format=Format.BINARY)
    return _answer(self.admin, status)


_REPLACED = ("run_prepared", "end_transaction", "_wait_readable")


class _Cooperative:
    """The backend's waits through :func:`_wait` while in use; as they were after."""

    def __enter__(self) -> None:
        self.saved = [getattr(pg_backend, name) for name in _REPLACED], pg_backend.PostgresTracker._admin_result
        for name, replacement in zip(_REPLACED, (_run_prepared, _end_transaction, _wait_readable), strict=True):
            setattr(pg_backend, name, replacement)
        pg_backend.PostgresTracker._admin_result = _admin_result  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        functions, method = self.saved
        for name, function in zip(_REPLACED, functions, strict=True):
            setattr(pg_backend, name, function)
        pg_backend.PostgresTracker._admin_result = method  # type: ignore[method-assign]


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


def _on_greenlets(works: list[Callable[[], None]]) -> None:
    """Each work in a greenlet of this thread; the hub (this thread's main greenlet) switches to
    whichever can go on, and polls every waiting slot's socket when none can."""
    global _HUB, _HUB_THREAD
    _HUB, _HUB_THREAD = getcurrent(), threading.get_ident()
    ready = deque(greenlet(w, parent=_HUB) for w in works)
    waiting: dict[int, Any] = {}
    sockets = select.poll()
    with _Cooperative():
        while ready or waiting:
            while ready:
                slot = ready.popleft()
                asked = slot.switch()
                if not slot.dead:
                    fd, events = asked
                    waiting[fd] = slot
                    sockets.register(fd, events)
            for fd, _ in sockets.poll() if waiting else ():
                sockets.unregister(fd)
                ready.append(waiting.pop(fd))


def main() -> None:
    parser = sweep_parser(__doc__, seconds=5, in_flight="3,4", rounds=3)
    args = parser.parse_args()
    if greenlet is None:
        parser.error("needs greenlet: pip install greenlet")
    if not args.in_flight:
        parser.error("--in-flight needs at least one number")
    server = choose_server(args.dsn)
    print(f"server: {mask_password(pg_server.describe_server(server.dsn), server.dsn)} (from {server.source})")
    _, _, _, reference = _harness(server.dsn, args.runs, 1, _one_after_the_other)
    same = True
    for round_ in range(1, args.rounds + 1):
        figures = []
        for k in args.in_flight:
            for name, start in (("threads", _on_threads), ("greenlets", _on_greenlets)):
                ops, wall, cpu, rows = _harness(server.dsn, args.runs, k, start)
                same = same and json.dumps(rows, default=str) == json.dumps(reference, default=str)
                figures.append((f"{name}, {k} in flight", ops / wall, cpu / ops * 1e6))
        tps = pgbench_select_only(server.dsn, args.seconds)
        print(f"round {round_}: pgbench -S -c 1 {tps:,.0f} statements/s")
        for label, rate, cpu_us in figures:
            print(f"  {label:22} {rate:8,.0f} statements/s  {cpu_us:4.0f} us CPU per operation  ratio {rate / tps:.3f}")
        for k in args.in_flight:
            rates = {label: rate for label, rate, _ in figures}
            print(f"  greenlets / threads, {k} in flight: {rates[f'greenlets, {k} in flight'] / rates[f'threads, {k} in flight']:.2f}x")
    print(f"every row equal to the same run's made one after the other: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    run(main)
