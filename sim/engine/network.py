"""The network as production has it: latency per operation kind and per host, heavy tails, a
client connection pool, and an HTTP API client (supabase-js over PostgREST).

:class:`NetworkDriver` is the SimPy :class:`~sim.engine.driver.Driver` with these added around
its database round trip; the world uses it only when a scenario sets one of the ``network``
keys below, so every other run is the plain driver's, draw for draw.

* Latency: ``network.read_rtt`` (``Select``), ``write_rtt`` (``Insert``/``Update``), ``begin_rtt``,
  ``commit_rtt`` (``Commit``/``Rollback``) replace ``network.db_rtt`` for their kind;
  ``[network.api]``/``[network.workers]`` ``db_rtt`` replace it for a host group; the kind wins
  over the host. Each direction is half a draw from the actor's own network stream, as before.
* Heavy tails: with ``network.pause_probability`` each direction of an operation also waits a
  ``network.pause`` (a GC pause, a TCP retransmit), drawn from a stream of its own.
* A pool: ``network.pool_size`` connections per host process. A statement outside a transaction
  takes a connection for its round trip; ``Begin`` takes one until ``Commit``/``Rollback`` (or the
  handler's end). Handlers queue for a connection, first come first served: a pool of 1
  serialises a host's handlers.
* HTTP: with ``network.client = "http"`` every statement is its own transaction (PostgREST runs
  each request in one); ``Begin``/``Commit``/``Rollback`` reach nothing and answer at once, so a
  ``SELECT ... FOR UPDATE`` holds its lock only for its own statement; each direction also crosses
  the HTTP hop (``network.http_rtt``, default ``db_rtt``): one more round trip per call.

Forced-order runs (searches, replays) take each operation's recorded latencies, tails and HTTP hop
included, and its recorded wait for a pool connection (``queued``): following the run's own order
reproduces it; an order that moves the statements a handler waited for does not move its wait.

Imports ``sim.engine`` (the driver), ``sim.record`` and ``tracker``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import Any

import simpy

from sim.engine import interpreter
from sim.engine.distributions import Dist
from sim.engine.driver import Actor, Driver
from sim.record.clocks import Clock
from tracker.backend import Done, TrackerBackend
from tracker.ops import Begin, Commit, DbOp, Insert, Rollback, Select, Update

#: The scenario keys that switch the world to :class:`NetworkDriver` (all unset by default).
NETWORK_KEYS = (
    "network.read_rtt", "network.write_rtt", "network.begin_rtt", "network.commit_rtt",
    "network.api.db_rtt", "network.workers.db_rtt", "network.pause_probability", "network.pause",
    "network.pool_size", "network.client", "network.http_rtt",
)


def op_kind(op: DbOp) -> str:
    """'read', 'write', 'begin' or 'commit': which ``network.<kind>_rtt`` an operation takes."""
    if isinstance(op, Select):
        return "read"
    if isinstance(op, (Insert, Update)):
        return "write"
    if isinstance(op, Begin):
        return "begin"
    if isinstance(op, (Commit, Rollback)):
        return "commit"
    return "write"  # an Rpc too: one call, its body runs at the server


class NetworkDriver(Driver):
    """The driver with per-kind and per-host latency, pauses, a pool and HTTP calls.

    ``one_way(actor, host, op)`` draws one direction's latency in microseconds for an operation
    (the world's draws: see :func:`sim.engine.world.network_latency`).
    """

    def __init__(
        self,
        env: simpy.Environment,
        backend: TrackerBackend,
        db_clock: Clock,
        one_way: Callable[[Actor, DbOp], int],
        ops_per_handler: int,
        pool_size: int | None,
        http: bool,
    ) -> None:
        super().__init__(env, backend, db_clock, self._one_way_now, ops_per_handler)
        self._one_way = one_way
        self._pool_size = pool_size
        self.http = http
        self._pools: dict[str, simpy.Resource] = {}
        #: The operation each actor has on the wire (one at a time per handler).
        self._on_wire: dict[str, tuple[Actor, DbOp]] = {}
        #: Actors holding a pool connection, with their request.
        self._held: dict[str, tuple[simpy.Resource, Any]] = {}
        self._in_transaction: set[str] = set()

    def _one_way_now(self, actor_name: str) -> int:
        actor, op = self._on_wire[actor_name]
        return self._one_way(actor, op)

    def _run(self, actor: Actor, gen: types.GeneratorType | interpreter.Crashed) -> Generator[simpy.Event, Any, None]:
        try:
            yield from super()._run(actor, gen)
        finally:  # its connection went back with its session (_end_session)
            self._in_transaction.discard(actor.name)

    def _end_session(self, session: str) -> None:
        super()._end_session(session)
        self._release(session)

    def _db(self, actor: Actor, op: DbOp) -> Generator[simpy.Event, Any, Done]:
        if self.http and isinstance(op, (Begin, Commit, Rollback)):
            return Done()  # PostgREST has no client transactions: nothing is sent
        asked = int(self.env.now)
        if self._pool_size is not None and actor.name not in self._held:
            pool = self._pools.get(actor.host)
            if pool is None:
                pool = self._pools[actor.host] = simpy.Resource(self.env, capacity=self._pool_size)
            request = pool.request()
            self._held[actor.name] = (pool, request)
            yield request
        self._on_wire[actor.name] = (actor, op)
        queued, mark = int(self.env.now) - asked, len(self.steps)
        try:
            outcome: Done = yield from super()._db(actor, op)
        finally:
            self._on_wire.pop(actor.name, None)
            # Its wait, once it reached the server (a step was recorded: its process may have died
            # before the answer came back).
            if self._pool_size is not None and any(st.actor == actor.name for st in self.steps[mark:]):
                self.queued.setdefault(actor.name, []).append(queued)
        if isinstance(op, Begin) and outcome.error is None:
            self._in_transaction.add(actor.name)
        elif isinstance(op, (Commit, Rollback)):
            self._in_transaction.discard(actor.name)
        if actor.name not in self._in_transaction:
            self._release(actor.name)
        return outcome

    def _release(self, actor_name: str) -> None:
        held = self._held.pop(actor_name, None)
        if held is not None:
            pool, request = held
            if request.triggered:
                pool.release(request)
            else:  # stopped while queueing for a connection (its process died): leave the queue
                request.cancel()


def latency_dist(values: dict[str, Any], host_group: str, op: DbOp) -> Dist:
    """The round-trip distribution an operation from a host group takes (kind, then host, then
    ``network.db_rtt``)."""
    by_kind = values[f"network.{op_kind(op)}_rtt"]
    if by_kind is not None:
        return by_kind  # type: ignore[no-any-return]
    by_host = values.get(f"network.{host_group}.db_rtt")
    if by_host is not None:
        return by_host  # type: ignore[no-any-return]
    return values["network.db_rtt"]  # type: ignore[no-any-return]
