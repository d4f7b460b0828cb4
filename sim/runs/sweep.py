"""Executing a sweep: the runs of a plan, each reduced to its result row, in plan order.

The command line (``racetrack sweep`` / ``check``) and the pytest plugin describe *what* to run as
a :class:`Sweep` (scenarios, strategy references, runs, first seed, backend spec) and *how* as an
:class:`Execution` (in this process, a local process pool, or a Dask cluster). This module splits
the plan into :class:`Chunk` s, runs them wherever it was told, and yields rows strictly in plan
order, so the output is the same bytes whatever the worker count or executor. With an output file
it streams rows to disk as they arrive and can resume an interrupted sweep (``sim.runs.results_file``).

Workers receive chunks that carry scenario objects and strategy *references* (``naive``,
``my_pkg.mod:HANDLERS``), never function objects: each worker loads the strategy itself and opens
its own backend from the picklable :class:`~sim.runs.backends.BackendSpec`.

On a PostgreSQL backend a worker may keep several runs in flight (``Execution.in_flight``,
``--in-flight``): its chunks' seeds run on a few greenlets of one thread ("slots",
``sim.runs.inflight``) that switch while their runs wait for the server, each with its own backend
(connections and schema), so the server works while Python simulates; rows are still collected
in seed order.

A run whose server goes away (PostgreSQL backends) becomes an error row (``error`` set, nothing
judged) and the sweep goes on. A PostgreSQL server is chosen once, in the parent (so an embedded
server is started once, not per worker), and its DSN handed to the workers; each worker opens
its own connection and schema.

May import: ``sim.runs.runner``, ``sim.runs.backends``, ``sim.runs.results_file``, ``sim.runs.inflight``, ``sim.engine.scenario``,
``tracker.strategies``; ``distributed`` lazily, only for the Dask executor.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.engine.limits import DEFAULT_LIMITS, Limits
from sim.engine.scenario import Scenario
from sim.runs.backends import BackendSpec, BackendUnavailable, close_backend, open_backend, run_errors
from sim.runs.columns import RESULTS_FORMAT
from sim.runs.inflight import SlotLocal, Slots, process_slots, uninterrupted
from sim.runs.results_file import PartialResults, ResultsError, output_target, partial_path, read_fingerprint
from sim.runs.runner import SweepItem, check_strategy_table, error_row, run_one
from tracker.backend import TrackerBackend
from tracker.errors import UserError
from tracker.strategies import Strategy, StrategyNotFound, load_strategy
from tracker.strategy_names import BUILTIN
from tracker.table import Table

EXECUTORS = ("local", "dask")
CONNECT_TIMEOUT_S = 3.0
#: Runs each worker keeps in flight on a PostgreSQL backend when the workers leave cores idle
#: (``--in-flight``'s default then): while one waits for the server, another simulates.
DEFAULT_IN_FLIGHT = 2


class SweepError(UserError, ValueError):
    """The sweep cannot start as asked (unreachable scheduler, mismatched resume file...);
    ``str()`` is the one line the user sees."""


@dataclass(frozen=True)
class Sweep:
    """What a sweep runs: every scenario x strategy, ``runs`` seeds each (``seed``, ``seed+1``...),
    in this order. ``strategies`` are references that :func:`load_strategy` accepts."""

    scenarios: tuple[Scenario, ...]
    strategies: tuple[str, ...]
    runs: int
    seed: int = 0
    backend: BackendSpec = BackendSpec()
    limits: Limits = DEFAULT_LIMITS

    @property
    def total(self) -> int:
        return len(self.scenarios) * len(self.strategies) * self.runs

    def chunks(self, size: int, skip: int = 0) -> Iterator[Chunk]:
        """The plan cut into chunks of at most ``size`` runs (never across a scenario x strategy
        pair), leaving out the first ``skip`` runs (already done, when resuming)."""
        position = 0
        for scenario in self.scenarios:
            for strategy in self.strategies:
                for start in range(0, self.runs, size):
                    count = min(size, self.runs - start)
                    first = max(skip - position, 0)
                    if first < count:
                        yield Chunk(scenario, strategy, self.seed + start + first, count - first, self.limits)
                    position += count

    def fingerprint(self) -> dict[str, Any]:
        """What makes two sweeps the same sweep (stored in partial results, checked on resume).
        The backend's DSN is left out: it may hold a password. A scenario's parameters name its
        table's SQL file only by path, so a scenario that tracks a table of its own also records
        the digest of that table's SQL (``table_sha256``): a file edited between an interrupted
        sweep and its ``--resume`` is another table, whose rows must not be mixed with the old
        ones. Scenarios on the bundled table record none, so their fingerprints (and the bytes
        of their results files) are as before. Likewise a ``module:attr`` strategy is named by
        reference only: ``strategy_sha256`` maps each such strategy loaded from a file to that
        file's SHA-256 (absent when the sweep has none, as with built-in strategies only)."""
        return {
            "format": RESULTS_FORMAT,
            "scenarios": [_scenario_fingerprint(s) for s in self.scenarios],
            "strategies": list(self.strategies),
            "runs": self.runs,
            "seed": self.seed,
            "backend": {"kind": self.backend.kind, "schema": self.backend.schema},
            **({"limits": changed} if (changed := self.limits.fingerprint()) else {}),
            **({"strategy_sha256": digests} if (digests := _strategy_digests(self.strategies)) else {}),
        }

    def require_distinct(self) -> None:
        """Refuse, in one line naming the two, a sweep whose rows could not tell two of its
        scenarios or strategies apart: a row names each by its name (a scenario file's stem, a
        strategy's ``name``), so the summary would add their runs into one line. A strategy of
        the user's that takes a built-in's name is refused too: its rows would read as the
        built-in's ("held: naive" for a naive that never ran)."""
        scenarios: dict[str, Scenario] = {}
        for scenario in self.scenarios:
            other = scenarios.setdefault(scenario.name, scenario)
            if other is scenario:
                continue
            if other.source == scenario.source:
                raise SweepError(f"scenario {scenario.source} is given twice; give each scenario once")
            raise SweepError(f"scenarios {other.source} and {scenario.source} are both named {scenario.name!r}; "
                             "a sweep's rows name a scenario by its name (a file's stem): rename one of the files")
        strategies: dict[str, tuple[str, Strategy]] = {}
        for ref in self.strategies:
            try:
                strategy = load_strategy(ref)
            except StrategyNotFound:  # a worker reports it, as for any run
                continue
            if strategy.name in BUILTIN and strategy is not load_strategy(strategy.name):
                raise SweepError(f"strategy {ref} is named {strategy.name!r}, as the built-in {strategy.name} is; "
                                 "its rows would read as the built-in's: give it a name of its own")
            if strategy.name not in strategies:
                strategies[strategy.name] = (ref, strategy)
                continue
            first, known = strategies[strategy.name]
            if known is strategy:
                said = ref if first == ref else f"{first} (again as {ref})"
                raise SweepError(f"strategy {said} is given twice; give each strategy once")
            raise SweepError(f"strategies {first} and {ref} are both named {strategy.name!r}; "
                             "a sweep's rows name a strategy by its name: give each its own name")


def _scenario_fingerprint(scenario: Scenario) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": scenario.name, "params": scenario.to_toml_table()}
    if scenario.table is not None:
        entry["table_sha256"] = hashlib.sha256(scenario.table.sql.encode()).hexdigest()
    return entry


def _strategy_digests(refs: Iterable[str]) -> dict[str, str]:
    """The SHA-256 of the file of each ``module:attr`` strategy that has one (none for built-ins,
    nor for a strategy that cannot be loaded here: its runs say so)."""
    from sim.runs.strategy_source import is_user, origin

    digests = {}
    for ref in refs:
        if not is_user(ref):
            continue
        try:
            where = origin(ref)
        except Exception:  # not importable here: a worker reports it, as for any run
            continue
        if where is not None:
            digests[ref] = where.sha256
    return digests


def _file_changes(partial: Path, stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The line refusing to resume ``partial`` when its fingerprint differs from this sweep's
    only in the digest of a scenario's table or of a strategy's file, naming that file (None:
    they differ in more, which :class:`PartialResults` says)."""
    old, new = stored.get("scenarios"), current.get("scenarios")
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        return None
    if {**stored, "scenarios": None, "strategy_sha256": None} != {**current, "scenarios": None, "strategy_sha256": None}:
        return None
    changed = []
    for before, now in zip(old, new, strict=True):
        if not isinstance(before, dict) or {**before, "table_sha256": None} != {**now, "table_sha256": None}:
            return None
        if before.get("table_sha256") != now.get("table_sha256"):
            table = f"the table SQL of {now['name']} ({now['params'].get('table.sql') or 'its [table] sql'})"
            changed.append((table, "table_sha256" not in before))
    digests_then, digests_now = stored.get("strategy_sha256") or {}, current.get("strategy_sha256") or {}
    if not isinstance(digests_then, dict):
        return None
    for ref, digest in digests_now.items():
        if digests_then.get(ref) != digest:
            changed.append((f"the file of strategy {ref}", ref not in digests_then))
    if set(digests_then) - set(digests_now):
        return None  # a strategy's file was recorded, and is none now: another sweep
    if not changed:
        return None
    what, older = changed[0]
    if older:
        return (f"--resume: {partial} was written by an older racetrack, which did not record the content of {what}; "
                f"delete {partial.name} and start the sweep again without --resume (nothing was changed)")
    return f"--resume: {partial} is from a different sweep ({what} changed since); nothing was changed"


@dataclass(frozen=True)
class Chunk:
    """Consecutive seeds of one scenario x strategy: the unit of work a worker gets."""

    scenario: Scenario
    strategy: str
    seed: int
    count: int
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class Execution:
    """How to run: ``workers`` processes (1: in this process), on the local machine or on Dask
    (``scheduler`` an address such as ``tcp://host:8786``; none: start a LocalCluster)."""

    workers: int = 1
    executor: str = "local"
    scheduler: str | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    #: Runs each worker keeps in flight, each on a backend of its own (None: by backend, see
    #: :meth:`in_flight_for`).
    in_flight: int | None = None

    def in_flight_for(self, spec: BackendSpec) -> int:
        """Runs in flight per worker: ``in_flight`` if set; else DEFAULT_IN_FLIGHT on a server when
        there are fewer workers than cores, 1 otherwise. In memory a run never waits; with a
        worker per core the cores are busy already, and the runs in flight would only take turns
        (measured in docs/performance.md: slower)."""
        if self.in_flight is not None:
            return self.in_flight
        return DEFAULT_IN_FLIGHT if spec.kind != "memory" and self.workers < default_workers() else 1


def default_workers() -> int:
    return os.cpu_count() or 1


# --- the worker side ---------------------------------------------------------------------------

# One strategy cache and one backend per worker thread (a Dask worker may run several threads)
# and per slot (the runs a worker keeps in flight, greenlets on one thread).
_local = SlotLocal()
#: Every worker thread's backends, with the lock its running chunk holds: a shutdown closes them all.
_thread_backends: list[tuple[threading.Lock, dict[BackendSpec, TrackerBackend]]] = []


def _worker_strategy(ref: str) -> Strategy:
    cache = getattr(_local, "strategies", None)
    if cache is None:
        cache = _local.strategies = {}
    if ref not in cache:
        cache[ref] = load_strategy(ref)
    return cache[ref]


def _thread_lock() -> threading.Lock:
    lock: threading.Lock | None = getattr(_local, "lock", None)
    if lock is None:
        lock = _local.lock = threading.Lock()
        _local.backends = {}
        _thread_backends.append((lock, _local.backends))
    return lock


def _worker_backend(spec: BackendSpec, table: Table | None) -> TrackerBackend:
    """This thread's (or slot's) backend for ``table``. It keeps one table's backend at a time:
    moving to another table closes the last one's, whose connections the server may need (every
    run in flight holds its own); a plan visits each table's runs together, so that is rare."""
    _thread_lock()
    backends = _local.backends
    if (spec, table) not in backends:
        for other in list(backends):
            close_backend(backends.pop(other))
        backends[(spec, table)] = open_backend(spec, table)
    return backends[(spec, table)]


def close_worker_backends() -> None:
    """Close every backend this process's worker threads opened (their schemas are dropped),
    each after the chunk running on it finishes."""
    for lock, backends in list(_thread_backends):
        with lock:
            for backend in backends.values():
                close_backend(backend)
            backends.clear()


def _close_thread_backends() -> None:
    """Close this thread's backends and forget them (a slot's last act)."""
    lock = _thread_lock()
    with lock:
        for backend in _local.backends.values():
            close_backend(backend)
        _local.backends.clear()
        _thread_backends.remove((lock, _local.backends))
    del _local.lock


def _interrupt_backends() -> None:
    """Ctrl-C for the runs on this process's slots: their PostgreSQL backends stop at their next statement."""
    postgres = sys.modules.get("tracker.postgres")  # never imported: no run waits on a server
    if postgres is not None:
        postgres.interrupt_open_trackers()


def _row(chunk: Chunk, strategy: Strategy, seed: int, backend: TrackerBackend, spec: BackendSpec) -> dict[str, Any]:
    spoilers = run_errors() if spec.kind != "memory" else ()
    try:
        return run_one(chunk.scenario, strategy, seed, backend, limits=chunk.limits).row()
    except spoilers as exc:
        return error_row(SweepItem(chunk.scenario, strategy, seed), backend.name, str(exc))


def run_chunk(chunk: Chunk, spec: BackendSpec, in_flight: int = 1) -> list[dict[str, Any]]:
    """Run one chunk (in whatever process or thread) and return its rows in seed order;
    ``in_flight`` > 1: its seeds on this process's slots, that many at once."""
    if in_flight > 1:
        return process_slots(in_flight, _close_thread_backends, _interrupt_backends).submit(seed_calls(chunk, spec)).result()
    strategy = _worker_strategy(chunk.strategy)
    with _thread_lock():
        backend = _worker_backend(spec, chunk.scenario.table)
        return [_row(chunk, strategy, seed, backend, spec) for seed in range(chunk.seed, chunk.seed + chunk.count)]


def run_seed(chunk: Chunk, seed: int, spec: BackendSpec) -> dict[str, Any]:
    """The row of one seed of ``chunk``, on this thread's backend (a slot's call)."""
    strategy = _worker_strategy(chunk.strategy)
    with _thread_lock():
        with uninterrupted():  # a Ctrl-C between creating its schema and keeping it would leave the schema
            backend = _worker_backend(spec, chunk.scenario.table)
        return _row(chunk, strategy, seed, backend, spec)


def seed_calls(chunk: Chunk, spec: BackendSpec) -> list[Callable[[], dict[str, Any]]]:
    """One call per seed of ``chunk``, for slots."""
    return [functools.partial(run_seed, chunk, seed, spec) for seed in range(chunk.seed, chunk.seed + chunk.count)]


def _resolve_server(spec: BackendSpec, tables: Iterable[Table | None] = (None,)) -> BackendSpec:
    """Choose the PostgreSQL server here, once, and check it can be opened with every table the
    sweep tracks (one line on failure)."""
    tables = list(dict.fromkeys(tables))
    if spec.kind == "memory":
        for table in tables:
            close_backend(open_backend(spec, table))  # a table the model cannot take: said once, here
        return spec
    from tracker.pg_server import ServerUnavailable, choose_server

    try:
        choice = choose_server(spec.dsn)
        resolved = BackendSpec(spec.kind, choice.dsn or spec.dsn, spec.schema)
        for table in tables:
            close_backend(open_backend(resolved, table))
    except (ServerUnavailable, BackendUnavailable) as exc:
        raise SweepError(str(exc)) from None
    return resolved


def _start_worker(parent: int) -> None:
    """A pool worker's initializer: leave Ctrl-C to the parent, die with the parent, and leave
    nothing on the server however the worker ends."""
    from multiprocessing.util import Finalize

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    signal.signal(signal.SIGTERM, _drop_schemas_and_exit)
    Finalize(None, close_worker_backends, exitpriority=100)  # a pool's orderly shutdown
    die_with_parent(parent)


def _drop_schemas_and_exit(signum: int, frame: Any) -> None:
    # Terminated (an aborted sweep, or the parent died): the interrupted statement may hold a
    # connection's lock, so the schemas are dropped over fresh connections.
    postgres = sys.modules.get("tracker.postgres")  # never imported: no schema to drop (and no import here)
    if postgres is not None:
        postgres.drop_open_trackers_from_outside()
    os._exit(128 + signum)


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when ``parent`` exits: Linux's PR_SET_PDEATHSIG, with a thread that
    watches getppid() where that is unavailable (and for a parent gone before it was set)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the watchdog alone

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)  # wall-clock ok: how often to look, never a result
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="racetrack-parent-watch", daemon=True).start()


# --- executors: submit a chunk, get something with .result() -----------------------------------


class _InProcess:
    """Runs each chunk when its result is asked for: one process, no pool."""

    class _Later:
        def __init__(self, chunk: Chunk, spec: BackendSpec) -> None:
            self.chunk, self.spec = chunk, spec

        def result(self) -> list[dict[str, Any]]:
            return run_chunk(self.chunk, self.spec)

        def cancel(self) -> bool:
            return True

    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.window = 1

    def submit(self, chunk: Chunk) -> Any:
        return self._Later(chunk, self.spec)

    def close(self, abort: bool = False) -> None:
        close_worker_backends()


class _InFlight:
    """One process, ``in_flight`` runs at once on slots of their own (each with its own backend)."""

    def __init__(self, spec: BackendSpec, in_flight: int) -> None:
        self.spec = spec
        self.window = in_flight * 4
        self.slots = Slots(in_flight, _close_thread_backends, _interrupt_backends)

    def submit(self, chunk: Chunk) -> Any:
        return self.slots.submit(seed_calls(chunk, self.spec))

    def close(self, abort: bool = False) -> None:
        self.slots.stop(interrupt_running=abort)


class _ProcessPool:
    """A local process pool; each worker keeps its strategies and backends (one per run in
    flight) for its lifetime."""

    def __init__(self, spec: BackendSpec, workers: int, in_flight: int = 1) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.spec, self.in_flight = spec, in_flight
        self.window = workers * 4
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_start_worker, initargs=(os.getpid(),))

    def submit(self, chunk: Chunk) -> Any:
        return self.pool.submit(run_chunk, chunk, self.spec, self.in_flight)

    def close(self, abort: bool = False) -> None:
        processes = dict(getattr(self.pool, "_processes", None) or {})
        if abort:  # Ctrl-C: do not wait for chunks already queued to the workers
            for process in processes.values():
                process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        _drop_what_workers_left(self.spec, set(processes))


def _drop_what_workers_left(spec: BackendSpec, pids: set[int]) -> None:
    """After the workers are gone: drop any schema one of them could not (a crashed worker)."""
    if spec.kind == "memory" or not pids:
        return
    from tracker.leftovers import drop_abandoned

    try:
        drop_abandoned(spec.dsn or "", pids)
    except Exception:  # the server went away: `racetrack clean` drops them later
        pass


class _Dask:
    """A Dask cluster: the one at ``scheduler``, or a LocalCluster started (and stopped) here."""

    def __init__(self, spec: BackendSpec, execution: Execution) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SweepError('--executor dask needs Dask: pip install "racetrack[dask]"') from None
        self.spec, self.in_flight = spec, execution.in_flight_for(spec)
        self.cluster = None
        timeout = f"{execution.connect_timeout_s}s"
        if execution.scheduler:
            _check_scheduler_address(execution.scheduler)  # before a Client exists: a half-made one complains at exit
            try:
                self.client = Client(execution.scheduler, timeout=timeout, set_as_default=False)
            except Exception as exc:  # any failure to connect is the environment, reported in one line
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SweepError(f"--scheduler {execution.scheduler}: cannot reach the Dask scheduler ({reason})") from None
        else:
            try:
                self.cluster = LocalCluster(
                    n_workers=execution.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                    silence_logs=logging.ERROR,  # cancelled chunks on Ctrl-C are expected, not warnings
                )
                self.client = Client(self.cluster, set_as_default=False)
            except Exception as exc:  # an environment that cannot start processes or sockets
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SweepError(f"--executor dask: cannot start a local Dask cluster ({reason})") from None
        workers = max(len(self.client.scheduler_info().get("workers", {})), 1)
        self.window = workers * 4

    def submit(self, chunk: Chunk) -> Any:
        return self.client.submit(run_chunk, chunk, self.spec, self.in_flight, pure=False)

    def close(self, abort: bool = False) -> None:
        try:
            if self.spec.kind != "memory":  # each worker closes its backends: their schemas are dropped
                self.client.run(close_worker_backends)
        except Exception:  # a worker that died took its connections; `racetrack clean` drops its schema
            pass
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _check_scheduler_address(address: str) -> None:
    """One line for an address Dask cannot parse (``tcp://host:port``, ``host:port``)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise SweepError(f"--scheduler {address}: not a scheduler address ({exc}); use tcp://HOST:PORT") from None


def _executor(spec: BackendSpec, execution: Execution) -> Any:
    if execution.in_flight is not None and execution.in_flight < 1:
        raise SweepError(f"--in-flight must be >= 1 (got {execution.in_flight})")
    if execution.executor == "dask" or execution.scheduler:
        return _Dask(spec, execution)
    if execution.executor != "local":
        raise SweepError(f"--executor {execution.executor}: use one of {', '.join(EXECUTORS)}")
    if execution.workers < 1:
        raise SweepError(f"--workers must be >= 1 (got {execution.workers})")
    in_flight = execution.in_flight_for(spec)
    if execution.workers == 1:
        return _InProcess(spec) if in_flight == 1 else _InFlight(spec, in_flight)
    return _ProcessPool(spec, execution.workers, in_flight)


def chunk_size(total: int, workers: int, in_flight: int = 1) -> int:
    """Runs per chunk: enough chunks to keep every worker busy, few enough to amortize the trip.
    A pool worker with runs in flight takes one chunk at a time: a few runs per slot each, so
    that its slots are not idle for long at the end of every chunk."""
    size = max(1, min(64, total // max(workers * 16, 1)))
    return max(size, min(4 * in_flight, 64)) if workers > 1 and in_flight > 1 else size


# --- running a sweep ---------------------------------------------------------------------------


class SweepRun:
    """One execution of a :class:`Sweep`, as a context manager.

    ``__enter__`` checks everything that could make the sweep unusable (a resume file from another
    sweep, an unreachable scheduler) before any output file is touched. :meth:`rows` yields every
    row in plan order (on resume, the rows already on disk first). On a clean finish the results
    file is finalized under its real name; on an interruption (Ctrl-C) or an error the finished
    runs stay in ``OUT.partial``, resumable.
    """

    def __init__(
        self,
        sweep: Sweep,
        execution: Execution = Execution(),
        out: Path | None = None,
        resume: bool = False,
        on_rows: Callable[[int], None] | None = None,
        out_said: str | None = None,
    ) -> None:
        """``out_said``: how the user named where the results go, for messages (default:
        ``--out OUT``; ``sweep --report DIR`` writes ``DIR/results.parquet``)."""
        if resume and out is None:
            raise SweepError("--resume needs --out FILE (the results file of the interrupted sweep)")
        self.sweep, self.execution, self.out, self.resume = sweep, execution, out, resume
        self.on_rows = on_rows
        self.out_said = out_said or f"--out {out}"
        self.results: PartialResults | None = None
        self.executor: Any = None
        self.completed = False
        self.errors = 0  # rows of runs that could not finish: --resume retries them

    def __enter__(self) -> SweepRun:
        for ref in self.sweep.strategies:
            try:
                strategy = load_strategy(ref)
            except StrategyNotFound:  # a worker reports it, as for any run
                continue
            for scenario in self.sweep.scenarios:
                check_strategy_table(strategy, scenario)
        if self.out is not None:
            fingerprint = self.sweep.fingerprint()
            try:
                self.results = PartialResults.check(self.out, fingerprint, self.resume, self.out_said)
            except ResultsError as exc:
                raise SweepError(self._file_changed(fingerprint) or str(exc)) from None
        self.executor = _executor(_resolve_server(self.sweep.backend, (s.table for s in self.sweep.scenarios)), self.execution)
        if self.results is not None:
            try:
                self.results.open()
            except OSError as exc:
                self.executor.close(abort=True)
                raise SweepError(f"{self.out_said}: cannot write ({exc.strerror or exc})") from None
        return self

    def _file_changed(self, fingerprint: dict[str, Any]) -> str | None:
        """On a refused resume: the line naming the table whose SQL changed, when that is all
        that differs."""
        assert self.out is not None
        try:
            partial = partial_path(output_target(self.out, self.out_said)[0])
        except UserError:
            return None
        if not self.resume or not partial.is_file():
            return None
        try:
            stored = read_fingerprint(partial)
        except ResultsError:
            return None
        return _file_changes(partial, stored, json.loads(json.dumps(fingerprint, sort_keys=True)))

    @property
    def done(self) -> int:
        """Rows safely written so far (including those resumed)."""
        return self.results.rows if self.results is not None else 0

    def rows(self) -> Iterator[dict[str, Any]]:
        skip = 0
        if self.results is not None:
            for row in self.results.resumed_rows(self._retry):
                skip += 1
                self.errors += bool(row.get("error"))
                yield row
            if skip and self.on_rows:
                self.on_rows(skip)
        workers = max(self.execution.workers, 1)
        size = chunk_size(self.sweep.total, workers, self.execution.in_flight_for(self.sweep.backend))
        chunks = self.sweep.chunks(size, skip=skip)
        for rows in _in_order(self.executor, chunks):
            if self.results is not None:
                self.results.append(rows)
            if self.on_rows:
                self.on_rows(len(rows))
            self.errors += sum(1 for r in rows if r.get("error"))
            yield from rows
        self.completed = True

    def _retry(self, position: int, row: dict[str, Any]) -> dict[str, Any]:
        """Run again the plan's run at ``position`` (its earlier row is an error row)."""
        pair, run = divmod(position, self.sweep.runs)
        scenario_index, strategy_index = divmod(pair, len(self.sweep.strategies))
        chunk = Chunk(self.sweep.scenarios[scenario_index], self.sweep.strategies[strategy_index], self.sweep.seed + run, 1)
        [again] = self.executor.submit(chunk).result()
        return dict(again)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self.executor is not None:
                self.executor.close(abort=exc_type is not None)
        finally:
            if self.results is not None:
                if self.completed and exc_type is None:
                    self.results.finalize(keep_partial=self.errors > 0)
                else:
                    self.results.close()
                    self.results.drop_if_empty()


def _in_order(executor: Any, chunks: Iterable[Chunk]) -> Iterator[list[dict[str, Any]]]:
    """Each chunk's rows, in plan order, keeping at most ``executor.window`` chunks in flight
    (memory stays bounded however long the plan)."""
    pending: deque[Any] = deque()
    todo = iter(chunks)
    try:
        for chunk in todo:
            pending.append(executor.submit(chunk))
            if len(pending) >= executor.window:
                break
        while pending:
            rows = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(executor.submit(following))
            yield rows
    finally:
        for future in pending:
            future.cancel()


def execute(
    items: Iterable[SweepItem],
    spec: BackendSpec | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each item's result row, in order, in this process (items carry strategy objects,
    which need not be loadable by name; use :class:`SweepRun` to run on several workers)."""
    spec = spec or BackendSpec()
    backends: dict[Table | None, TrackerBackend] = {}
    spoilers = run_errors() if spec.kind != "memory" else ()
    try:
        for item in items:
            table = item.scenario.table
            if table not in backends:
                backends[table] = open_backend(spec, table)
            backend = backends[table]
            try:
                row = run_one(item.scenario, item.strategy, item.seed, backend).row()
            except spoilers as exc:
                row = error_row(item, backend.name, str(exc))
            if on_row is not None:
                on_row(row)
            yield row
    finally:
        for backend in backends.values():
            close_backend(backend)
