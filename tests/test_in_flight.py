"""Several runs in flight in one worker process (``--in-flight``): the same bytes as one run at a
time, slots (greenlets on one thread) that switch while they wait, the run-time limit and Ctrl-C
reach the run they are meant for and no other, a slot's error reaches the sweep, and bad values
are one line, exit 2."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest
from greenlet import getcurrent

from sim.cli import main
from sim.engine.limits import LimitExceeded, Limits
from sim.engine.scenario import load
from sim.runs import inflight
from sim.runs.inflight import Slots, uninterrupted
from sim.runs.runner import run_one
from sim.runs.sweep import Execution, Sweep, SweepError, SweepRun
from sim.runs.thread_limit import run_time_limit
from tracker import waits
from tracker.ops import Select
from tracker.strategies import Strategy

SWEEP = ["sweep", "seed-fast-jobs", "concurrent-jobs", "--strategies", "naive,atomic,row-lock", "--runs", "6", "--json"]


def _bytes(tmp_path, name: str, *extra: str) -> bytes:
    out = tmp_path / name
    assert main([*SWEEP, "--out", str(out), *extra]) == 0
    return out.read_bytes()


def test_runs_in_flight_in_memory_write_the_same_bytes_as_one_at_a_time(tmp_path, capsys):
    one = _bytes(tmp_path, "one.parquet", "--workers", "1", "--in-flight", "1")
    json_one = capsys.readouterr().out
    three = _bytes(tmp_path, "three.parquet", "--workers", "1", "--in-flight", "3")
    assert one == three
    assert capsys.readouterr().out == json_one


@pytest.mark.postgres
def test_runs_in_flight_on_postgres_write_the_same_bytes_as_one_at_a_time(tmp_path, capsys):
    from tracker.pg_server import choose_server

    dsn = choose_server().dsn
    server = ["--backend", "postgres", *(["--dsn", dsn] if dsn else [])]
    one = _bytes(tmp_path, "one.parquet", *server, "--workers", "1", "--in-flight", "1")
    json_one = capsys.readouterr().out
    for name, extra in [("three.parquet", ("--workers", "1", "--in-flight", "3")),
                        ("default.parquet", ("--workers", "1")),
                        ("pool.parquet", ("--workers", "2", "--in-flight", "2"))]:
        assert _bytes(tmp_path, name, *server, *extra) == one, extra
        assert capsys.readouterr().out == json_one


@pytest.mark.parametrize("value", ["0", "-1", "17", "two"])
def test_a_bad_in_flight_is_one_line_exit_2(value, capsys):
    assert main(["sweep", "seed-fast-jobs", "--runs", "1", "--in-flight", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--in-flight must be" in err


def test_an_execution_with_no_run_in_flight_is_refused():
    with pytest.raises(SweepError, match="--in-flight must be >= 1"):
        SweepRun(Sweep((load("seed-fast-jobs"),), ("naive",), runs=1), Execution(in_flight=0)).__enter__()


def test_the_default_is_more_than_one_only_on_a_server_with_cores_to_spare(monkeypatch):
    from sim.runs import sweep
    from sim.runs.backends import BackendSpec

    monkeypatch.setattr(sweep, "default_workers", lambda: 4)
    assert Execution(workers=1).in_flight_for(BackendSpec("memory")) == 1
    assert Execution(workers=1).in_flight_for(BackendSpec("postgres")) == sweep.DEFAULT_IN_FLIGHT > 1
    assert Execution(workers=3).in_flight_for(BackendSpec("both")) == sweep.DEFAULT_IN_FLIGHT
    assert Execution(workers=4).in_flight_for(BackendSpec("postgres")) == 1  # a worker per core: busy already
    assert Execution(workers=4, in_flight=3).in_flight_for(BackendSpec("memory")) == 3


def spin_forever(job, ctx):
    yield Select(job.id)
    while True:
        pass


def test_the_wall_clock_limit_stops_a_run_on_a_slot_thread():
    # The main thread's limit is a timer signal, which other threads never get.
    results = []
    thread = threading.Thread(target=lambda: results.append(
        run_one(load("process-success"), Strategy("spin", "x", on_active=spin_forever), 0, limits=Limits(wall_seconds=0.5))))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    [result] = results
    assert "took longer than 0.5 s of wall time (--max-run-seconds)" in result.error
    assert "in spin_forever" in result.error  # where the handler was, as on the main thread


def test_a_run_that_ends_in_time_on_a_slot_thread_is_not_stopped_afterwards():
    results = []
    thread = threading.Thread(target=lambda: results.append(
        [run_one(load("seed-fast-jobs"), Strategy("naive", "x"), seed, limits=Limits(wall_seconds=60)).error for seed in range(3)]))
    thread.start()
    thread.join(timeout=120)
    assert results == [["", "", ""]]


def test_stop_interrupts_the_calls_running_and_each_slot_closes_up(monkeypatch):
    monkeypatch.setattr(inflight, "STOP_GRACE_S", 0.2)  # a call that never ends is raised into after the grace
    closed, started = [], threading.Event()

    def spin() -> None:
        started.set()
        while True:
            pass

    slots = Slots(2, on_exit=lambda: closed.append(getcurrent()))
    stop_while_running(slots, spin, started)
    assert len(closed) == len(set(closed)) == 2  # each slot closed up, the one that never got a call too


def stop_while_running(slots: Slots, call, started: threading.Event) -> None:
    """Three ``call``s on ``slots``, stopped as Ctrl-C stops them once one has started: every slot
    ends, and the batch raises ``KeyboardInterrupt``."""
    batch = slots.submit([call, call, call])
    assert started.wait(timeout=30)
    slots.stop(interrupt_running=True)
    assert not slots.thread.is_alive()
    with pytest.raises(KeyboardInterrupt):
        batch.result()


def test_a_failing_call_fails_its_batch_and_the_others_keep_their_order():
    slots = Slots(3)
    try:
        good = slots.submit([lambda i=i: i * i for i in range(20)])
        bad = slots.submit([lambda: 1, lambda: 1 / 0])
        assert good.result() == [i * i for i in range(20)]
        with pytest.raises(ZeroDivisionError):
            bad.result()
    finally:
        slots.stop()


def test_a_slot_opening_a_backend_gets_the_interrupt_once_it_is_open(monkeypatch):
    monkeypatch.setattr(inflight, "STOP_GRACE_S", 0.2)
    # Interrupted between creating its schema and keeping the backend, a slot would leave the schema.
    inside, opened = threading.Event(), []

    def open_then_spin() -> None:
        with uninterrupted():
            inside.set()
            while inflight._key() not in inflight._deferred:  # until the stop has come
                pass
            opened.append(True)
        while True:
            pass

    slots = Slots(1)
    batch = slots.submit([open_then_spin])
    assert inside.wait(timeout=30)
    slots.stop(interrupt_running=True)
    assert opened == [True]
    with pytest.raises(KeyboardInterrupt):
        batch.result()


def test_stop_asks_the_running_calls_to_end_before_raising_into_them(monkeypatch):
    # Raising into a thread from outside can land inside a lock or in a thread it is starting (a
    # sweep hung so): a call that ends when asked is never raised into.
    raised: list[object] = []
    monkeypatch.setattr(inflight, "interrupt", lambda slots, slot: raised.append(slot))
    asked, started = threading.Event(), threading.Event()

    def until_asked() -> None:
        started.set()
        while not asked.is_set():
            asked.wait(0.01)
        raise KeyboardInterrupt  # as a PostgreSQL backend does at its next statement

    stop_while_running(Slots(2, on_interrupt=asked.set), until_asked, started)
    assert raised == []


def test_slots_start_the_run_limit_watchdog_from_the_thread_that_makes_them():
    from sim.runs import thread_limit

    slots = Slots(1)
    try:
        assert thread_limit._watchdog is not None and thread_limit._watchdog.is_alive()
    finally:
        slots.stop()


@pytest.fixture
def pipes():
    """Pipes to wait on (a slot's wait is for a socket; any file descriptor will do)."""
    made: list[int] = []

    def make() -> tuple[int, int]:
        r, w = os.pipe()
        made.extend((r, w))
        return r, w

    yield make
    for fd in made:
        os.close(fd)


def wait_readable(fd: int) -> None:
    waits.wait(fd, select.POLLIN)


def limited(seconds: float, what: str, wait) -> str:
    """What ``--max-run-seconds`` says of ``wait()`` run under a limit of ``seconds``."""
    try:
        with run_time_limit(seconds, what):
            wait()
    except LimitExceeded as exc:
        return str(exc)
    return "not stopped"


def on_slots(size: int, calls) -> list:
    """The values of ``calls`` run on ``size`` new slots (stopped afterwards)."""
    slots = Slots(size)
    try:
        return slots.submit(calls).result()
    finally:
        slots.stop()


def test_a_slot_that_waits_lets_the_others_run(pipes):
    # Both calls on one thread: each finishes only if the other ran while it waited.
    (r1, w1), (r2, w2) = pipes(), pipes()

    def first() -> str:
        wait_readable(r1)
        os.write(w2, b"2")
        return "first"

    def second() -> str:
        os.write(w1, b"1")
        wait_readable(r2)
        return "second"

    slots = Slots(2)
    try:
        batch = slots.submit([first, second])
        assert batch.finished.wait(timeout=30)
        assert batch.result() == ["first", "second"]
        assert slots.thread.ident is not None and not waits.switching()  # the main thread blocks as before
    finally:
        slots.stop()


def test_each_slot_has_its_own_slot_local():
    local = inflight.SlotLocal()
    local.name = "main thread"

    def mine(k: int):
        def call() -> tuple[str | None, str]:
            before = getattr(local, "name", None)
            local.name = f"slot call {k}"
            wait_readable_soon()
            return before, local.name

        return call

    def wait_readable_soon() -> None:
        r, w = os.pipe()
        try:
            os.write(w, b"x")
            wait_readable(r)  # switches to the hub, which may run another slot meanwhile
        finally:
            os.close(r)
            os.close(w)

    values = on_slots(2, [mine(0), mine(1)])
    assert [v[1] for v in values] == ["slot call 0", "slot call 1"]
    assert all(v[0] in (None, "slot call 0", "slot call 1") for v in values)
    assert local.name == "main thread"


def test_the_run_time_limit_reaches_a_waiting_slot_and_not_the_one_beside_it(pipes):
    (r_never, _), (r_later, w_later) = pipes(), pipes()

    def waits_forever() -> str:
        return limited(0.3, "the wait", lambda: wait_readable(r_never))

    def waits_a_second() -> str:
        with run_time_limit(30, "the other wait"):
            wait_readable(r_later)
        return "answered"

    threading.Timer(1.0, os.write, (w_later, b"x")).start()
    assert on_slots(2, [waits_forever, waits_a_second]) == [
        "the wait took longer than 0.3 s of wall time (--max-run-seconds)", "answered"]


def test_the_run_time_limit_stops_a_spinning_slot_and_not_the_waiting_one(pipes):
    # The spinning slot holds the thread, so its exception is raised into the thread; the other
    # slot waits (switched out) meanwhile, and must not be the one that gets it.
    r, w = pipes()

    def waits_for_the_spinner() -> str:
        with run_time_limit(30, "the waiting one"):
            wait_readable(r)
        return "answered"

    def spins() -> str:
        try:
            with run_time_limit(0.3, "the spinning one"):
                while True:
                    pass
        except LimitExceeded as exc:
            os.write(w, b"x")
            return str(exc)

    assert on_slots(2, [waits_for_the_spinner, spins]) == [
        "answered", "the spinning one took longer than 0.3 s of wall time (--max-run-seconds)"]


def test_a_run_on_a_slot_that_ends_in_time_is_not_stopped_afterwards(pipes):
    r, w = pipes()
    os.write(w, b"x" * 100)

    def quick(k: int):
        def call() -> int:
            with run_time_limit(0.2, "a quick one"):
                wait_readable(r)
            return k

        return call

    slots = Slots(3)
    try:
        assert slots.submit([quick(k) for k in range(30)]).result() == list(range(30))
        time.sleep(0.4)  # past every limit: nothing was left to land later
        assert slots.submit([quick(k) for k in range(3)]).result() == [0, 1, 2]
    finally:
        slots.stop()


def test_stop_reaches_a_slot_that_waits_forever(monkeypatch, pipes):
    monkeypatch.setattr(inflight, "STOP_GRACE_S", 0.2)
    r, _ = pipes()
    started, closed = threading.Event(), []

    def waits_forever() -> None:
        started.set()
        wait_readable(r)

    slots = Slots(2, on_exit=lambda: closed.append(getcurrent()))
    stop_while_running(slots, waits_forever, started)
    assert len(closed) == 2


def test_the_run_time_limit_stops_a_run_on_a_slot():
    # run_one on a slot: a handler that never yields, among runs that end in time.
    def run(strategy: Strategy, scenario: str):
        return lambda: run_one(load(scenario), strategy, 0, limits=Limits(wall_seconds=0.5)).error

    spin, naive = Strategy("spin", "x", on_active=spin_forever), Strategy("naive", "x")
    errors = on_slots(2, [run(naive, "seed-fast-jobs"), run(spin, "process-success"), run(naive, "seed-fast-jobs")])
    assert errors[0] == errors[2] == ""
    assert "took longer than 0.5 s of wall time (--max-run-seconds)" in errors[1] and "in spin_forever" in errors[1]


def test_a_fault_of_the_hub_fails_the_batches_waiting_rather_than_hang(monkeypatch, pipes):
    r, w = pipes()
    os.write(w, b"x")

    def broken(waiters):
        raise RuntimeError("a fault of the hub's")

    monkeypatch.setattr(inflight, "_union", broken)  # the hub calls it when a slot waits
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    slots = Slots(2)
    try:
        batch = slots.submit([lambda: wait_readable(r)])
        assert batch.finished.wait(timeout=30)
        with pytest.raises(RuntimeError, match="a fault of the hub's"):
            batch.result()
        with pytest.raises(RuntimeError, match="a fault of the hub's"):  # and so does any later batch
            slots.submit([lambda: 1]).result()
    finally:
        slots.stop()
    assert not slots.thread.is_alive() and [str(e) for e in seen] == ["a fault of the hub's"]


@pytest.mark.postgres
def test_a_run_stopped_while_it_waits_for_the_server_leaves_no_statement_on_its_connection():
    # On a slot the limit lands while the answer is awaited: the statement is cancelled and the
    # connection closed (it could serve no other statement), so whoever uses it next reconnects.
    import psycopg

    from tracker.pg_server import choose_server
    from tracker.postgres import _answer

    conn = psycopg.connect(choose_server().dsn, autocommit=True)
    pid = conn.info.backend_pid

    def waits_on_the_server() -> str:
        conn.pgconn.send_query(b"SELECT pg_catalog.pg_sleep(30)")
        return limited(0.3, "the statement", lambda: _answer(conn))

    started = time.monotonic()
    assert on_slots(1, [waits_on_the_server]) == ["the statement took longer than 0.3 s of wall time (--max-run-seconds)"]
    assert conn.closed and time.monotonic() - started < 20
    with psycopg.connect(choose_server().dsn, autocommit=True) as other:
        for _ in range(100):  # the server ends the cancelled statement's backend shortly after
            if not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active'", [pid]).fetchall():
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"backend {pid} still runs the cancelled statement")


@pytest.mark.postgres
def test_a_worker_keeps_one_tables_backend_at_a_time():
    # Every run in flight holds its own connections: a backend for a table the plan has moved
    # past would hold them for nothing (a sweep of every scenario with 8 in flight ran out of
    # max_connections = 100 so).
    from sim.runs import sweep
    from sim.runs.backends import BackendSpec
    from tracker.pg_server import choose_server

    spec = BackendSpec("postgres", choose_server().dsn)
    plain, own = load("seed-fast-jobs"), load("own-table")
    try:
        [row] = sweep.run_chunk(sweep.Chunk(plain, "naive", 0, 1), spec)
        [first] = sweep._local.backends.values()
        sweep.run_chunk(sweep.Chunk(own, "naive", 0, 1), spec)
        assert list(sweep._local.backends) == [(spec, own.table)] and first.admin.closed
        assert sweep.run_chunk(sweep.Chunk(plain, "naive", 0, 1), spec) == [row]  # reopened, the same row
    finally:
        sweep.close_worker_backends()
