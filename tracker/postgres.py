"""The tracker on a real PostgreSQL: the seed's table, real transactions, real row locks.

:class:`PostgresTracker` implements the backend contract (``tracker.backend``) with psycopg 3.

* **Its own schema.** It creates ``<prefix>_<pid>_<n>`` (prefix ``racetrack``, ``--schema`` sets
  it), builds the table there from its SQL (``tracker/schema.sql``, or the user's file: a
  :class:`~tracker.table.Table`), and drops that schema, and only that
  one, at :meth:`close`. It never reads or writes anything outside it; two sweeps against one
  server each have their own schema.
* **SQL.** Every value is a bound parameter; every identifier is quoted by ``psycopg.sql``.
* **The simulated database clock.** The schema holds a function ``now()`` that returns
  ``current_setting('racetrack.now')::timestamptz``. The table is created with that schema first
  on the ``search_path`` (before ``pg_catalog``), so ``DEFAULT now()`` binds to it (the table's
  SQL spells ``CURRENT_TIMESTAMP`` as ``now()``, see ``tracker.table_sql.for_postgres``); the
  file's functions (the trigger's) are pinned to the same ``search_path``; ``DbNow()`` is emitted as ``<schema>.now()``.
  ``BEGIN`` sets the setting transaction-locally to the driver's ``db_now_us`` (so ``now()`` is
  the transaction's start, as in PostgreSQL); it is sent, with that setting, in one pipeline
  with the transaction's first statement (BEGIN alone takes no snapshot and no lock, so nothing
  can tell), and a transaction that sent nothing ends without a round trip; an autocommit INSERT or UPDATE sets it at the
  statement's instant in the statement itself (``... FROM (SELECT set_config(...))``: the row is
  produced after that item, so defaults, SET and the trigger see it; a guard, which may be
  evaluated before that item, gets the clock's value in place of ``now()``): one round trip.
* **One connection per active session**, taken from a pool that lives across runs; ``reset()``
  rolls back whatever is open and empties the table. A statement that runs alone goes straight
  through libpq (:func:`run_prepared`: prepared once per connection, then one round trip); the
  pipeline that opens a transaction goes through libpq's pipeline mode (:func:`run_pipeline`).
* **Lock waits.** A statement that may wait (another open transaction holds the row, by the
  backend's own bookkeeping) runs on a worker thread; the calling thread polls it and asks a
  monitor connection for ``pg_blocking_pids`` of its backend, as PostgreSQL's isolation tester
  does. Waiting on a lock answers :class:`~tracker.backend.Blocked`; :meth:`resume` polls again.
  Statements that cannot wait run inline; ``lock_timeout`` backs that up, so a wrong guess
  raises instead of hanging.
* **Errors.** Constraint errors become :class:`~tracker.ops.TrackerError` with PostgreSQL's
  SQLSTATE and constraint name (PostgreSQL before 18 names no NOT NULL constraint; the name is
  made from the column as PostgreSQL 18 does). A lost connection raises
  :class:`ConnectionLost`; an unusable server :class:`~tracker.pg_server.ServerUnavailable`.

Timestamps cross the wire as ``timestamptz`` and come back as integer microseconds since the
Unix epoch, jsonb as Python values, exactly as ``tracker.memory`` gives them.

Imports only ``tracker``, psycopg and the standard library.
"""

from __future__ import annotations

import atexit
import itertools
import os
import select
import struct
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
from psycopg import errors, sql
from psycopg._queries import PostgresQuery
from psycopg.abc import Transformer as TransformerLike
from psycopg.adapt import AdaptersMap, Dumper, Loader, Transformer
from psycopg.pq import ConnStatus, DiagnosticField, ExecStatus, Format, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tracker import waits
from tracker.backend import Blocked, Done, Outcome, RpcCalls
from tracker.errors import UserError
from tracker.leftovers import drop_schema, schema_marker
from tracker.ops import (
    COND_OPS,
    Begin,
    Case,
    Coalesce,
    Col,
    Commit,
    Cond,
    DbNow,
    DbOp,
    Excluded,
    Greatest,
    Insert,
    Least,
    Rollback,
    Row,
    Rpc,
    Select,
    TrackerError,
    Update,
)
from tracker.pg_server import ServerUnavailable, describe_server, mask_password, one_line
from tracker.table import Table
from tracker.table_sql import bundled_table

DEFAULT_PREFIX = "racetrack"
#: The target row's name in an upsert (``INSERT INTO job_status AS <it>``): its SET and guard read
#: the existing row through it and the proposed one through ``EXCLUDED``.
UPSERT_ALIAS = "racetrack_row"
CLOCK_SETTING = "racetrack.now"
#: How long a statement may neither finish nor wait on a lock before racetrack gives up on it.
STUCK_AFTER_S = 30.0

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: timestamptz's binary zero
_INT8 = struct.Struct("!q")
_schema_numbers = itertools.count(1)
#: Trackers of this process not closed yet: closed at exit, or their schemas dropped from outside on SIGTERM.
_open_trackers: weakref.WeakSet[PostgresTracker] = weakref.WeakSet()


class TableRefused(UserError):
    """PostgreSQL would not create the user's table (its SQL is wrong for the server): one line
    naming the file and the server's reason."""


class RowInvariantRefused(UserError):
    """PostgreSQL raised evaluating a scenario's row invariant (a cast the model took that the
    server refuses): one line with the server's reason."""


class ConnectionLost(UserError):
    """The server went away during a run (or a statement got stuck past every timeout): the run
    cannot be judged, the sweep goes on. One line, password masked."""


# --- timestamps as integer microseconds --------------------------------------------------------


class Micros(int):
    """An integer microsecond timestamp bound as ``timestamptz``."""


class _MicrosDumper(Dumper):
    format = Format.BINARY
    oid = psycopg.adapters.types["timestamptz"].oid

    def dump(self, obj: Any) -> bytes:
        return _INT8.pack(int(obj) - _PG_EPOCH_US)


class _MicrosBinaryLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> int:
        return int(_INT8.unpack(bytes(data))[0]) + _PG_EPOCH_US


class _MicrosTextLoader(Loader):
    format = Format.TEXT

    def load(self, data: Any) -> int:
        # Sessions run with TimeZone=UTC: '2025-10-12 16:36:52.123456+00'
        parsed = datetime.fromisoformat(bytes(data).decode())
        return (parsed - _UNIX_EPOCH) // timedelta(microseconds=1)


def micros_to_text(us: int) -> str:
    """An exact ``timestamptz`` literal for a microsecond timestamp (bound as a parameter)."""
    return (_UNIX_EPOCH + timedelta(microseconds=us)).isoformat()


ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_dumper(Micros, _MicrosDumper)
ADAPTERS.register_loader("timestamptz", _MicrosBinaryLoader)
ADAPTERS.register_loader("timestamptz", _MicrosTextLoader)


# --- operations -> SQL -------------------------------------------------------------------------


_FUNCTIONS = {Greatest: "GREATEST", Least: "LEAST", Coalesce: "COALESCE"}
_EXPRESSIONS = (Col, DbNow, Excluded, Case, *_FUNCTIONS)


class Compiler:
    """Turns ``tracker.ops`` records into (query text, parameters) for one schema.

    Identifiers are quoted once by ``psycopg.sql``; values become ``%s`` parameters cast to their
    column's type, so the text depends only on the operation's shape and prepares well.
    """

    def __init__(self, schema: str, quote: Callable[[sql.Composable], str], table: Table | None = None) -> None:
        spec = table or bundled_table()
        self.name, self.types, self.key = spec.name, spec.types, spec.key
        self.table = quote(sql.Identifier(schema, spec.name))
        self.now = quote(sql.SQL("{}.now()").format(sql.Identifier(schema)))
        self.cols = {name: quote(sql.Identifier(name)) for name in self.types}
        self._settable = frozenset(self.types) - {self.key}
        #: Set while compiling an upsert's DO UPDATE: its columns must name the row they read.
        self._qualifier = ""
        #: Set while compiling an autocommit UPDATE's guard: ``now()`` there is the statement's
        #: clock, bound as the same text ``now()`` would read (see :meth:`_statement`).
        self._guard_clock: str | None = None

    def column(self, name: str) -> str:
        if name not in self.cols:
            raise ValueError(f"column {name!r} is not a column of {self.name}")
        return self._qualifier + self.cols[name]

    def value(self, expr: Any, sql_type: str, params: list[Any]) -> str:
        if not isinstance(expr, _EXPRESSIONS):  # a plain value, the commonest: one check
            params.append(bind(expr, sql_type))
            return f"CAST(%s AS {sql_type})"
        if isinstance(expr, Col):
            return self.column(expr.name)
        if isinstance(expr, DbNow):
            if self._guard_clock is not None:
                params.append(self._guard_clock)
                return "CAST(CAST(%s AS text) AS timestamptz)"
            return self.now
        if isinstance(expr, Excluded):
            if not self._qualifier:
                raise ValueError(f"EXCLUDED.{expr.name} is only known in an upsert's on_conflict_update or conflict_where")
            if expr.name not in self.cols:
                raise ValueError(f"EXCLUDED names column {expr.name!r}, which is not a column of {self.name}")
            return f"EXCLUDED.{self.cols[expr.name]}"
        if isinstance(expr, Case):
            return (
                f"CASE WHEN {self.conds(expr.when, params)} THEN {self.value(expr.then, sql_type, params)}"
                f" ELSE {self.value(expr.otherwise, sql_type, params)} END"
            )
        call = cast(Greatest | Least | Coalesce, expr)  # what _EXPRESSIONS holds besides
        return f"{_FUNCTIONS[type(call)]}(" + ", ".join(self.value(a, sql_type, params) for a in call.args) + ")"

    def cond(self, cond: Cond, params: list[Any]) -> str:
        column = self.column(cond.column)
        sql_type = self.types[cond.column]
        if cond.op not in COND_OPS:
            raise ValueError(f"unknown comparison {cond.op!r}")
        if cond.op in ("is null", "is not null"):
            return f"{column} {cond.op.upper()}"
        if cond.op in ("in", "not in"):
            if not cond.value:  # x IN () is not SQL; its meaning: unknown for NULL, else false
                empty = "FALSE" if cond.op == "in" else "TRUE"
                return f"(CASE WHEN {column} IS NULL THEN NULL ELSE {empty} END)"
            items = ", ".join(self.value(v, sql_type, params) for v in cond.value)
            return f"{column} {cond.op.upper()} ({items})"
        return f"{column} {cond.op} {self.value(cond.value, sql_type, params)}"

    def conds(self, conds: tuple[Cond, ...], params: list[Any]) -> str:
        return " AND ".join(f"({self.cond(c, params)})" for c in conds) if conds else "TRUE"

    def statement(self, op: DbOp, clock: str | None = None) -> tuple[str, list[Any], str | None]:
        """(query, parameters, clock still to set). With ``clock``, an INSERT or UPDATE sets the
        ``racetrack.now`` setting itself, from a one-row FROM item: the row to write is only
        produced after that item, so defaults, SET expressions and the trigger all see it. An
        UPDATE's guard could be evaluated before that item, so a ``now()`` in it is compiled as
        the clock's value itself (what ``now()`` would return: the same text, cast the same
        way). The clock left to the caller to set first is therefore always ``None`` for an
        INSERT or UPDATE: one round trip each."""
        query, params, embedded = self._statement(op, clock if clock is not None and self._may_embed(op) else None)
        return query, params, None if embedded else clock

    def _conflict_update(self, op: Insert, params: list[Any]) -> str:
        """`` ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]``; the existing row's columns are
        qualified (unqualified they would be ambiguous with ``EXCLUDED``'s)."""
        assert op.on_conflict_update is not None
        self._check_settable(op.on_conflict_update, "ON CONFLICT DO UPDATE sets columns it may not set")
        self._qualifier = UPSERT_ALIAS + "."
        try:
            sets = [
                f"{self.cols[c]} = {self.value(v, self.types[c], params)}" for c, v in op.on_conflict_update.items()
            ] or [f"{self.cols[self.key]} = EXCLUDED.{self.cols[self.key]}"]  # SET nothing is not SQL
            where = f" WHERE {self.conds(op.conflict_where, params)}" if op.conflict_where else ""
        finally:
            self._qualifier = ""
        return f" ON CONFLICT ({self.cols[self.key]}) DO UPDATE SET {', '.join(sets)}{where}"

    def _check_settable(self, columns: Mapping[str, Any], what: str) -> None:
        """Only the table's columns, and not its key, may be written."""
        if not self._settable.issuperset(columns):
            raise ValueError(f"{what}: {sorted(set(columns) - self._settable)}")

    def _may_embed(self, op: DbOp) -> bool:
        return isinstance(op, (Insert, Update))

    def _statement(self, op: DbOp, clock: str | None) -> tuple[str, list[Any], bool]:
        params: list[Any] = []
        clock_from = " FROM (SELECT pg_catalog.set_config(%s, %s, false)) AS racetrack_clock"
        if isinstance(op, Select):
            params.append(op.job_id)
            lock = " FOR UPDATE" if op.for_update else ""
            return f"SELECT * FROM {self.table} WHERE {self.cols[self.key]} = %s{lock}", params, False
        if isinstance(op, Insert):
            self._check_settable(op.values, "INSERT names columns it may not set")
            names = [self.cols[self.key]] + [self.cols[c] for c in op.values]
            params.append(op.job_id)
            values = ["%s"] + [self.value(v, self.types[c], params) for c, v in op.values.items()]
            if clock is None:
                source = f"VALUES ({', '.join(values)})"
            else:
                source = f"SELECT {', '.join(values)}{clock_from}"
                params.extend([CLOCK_SETTING, clock])
            target = self.table
            conflict = " ON CONFLICT DO NOTHING" if op.on_conflict_do_nothing else ""
            if op.on_conflict_update is not None:
                target = f"{self.table} AS {UPSERT_ALIAS}"
                conflict = self._conflict_update(op, params)
            return (
                f"INSERT INTO {target} ({', '.join(names)}) {source}{conflict} RETURNING *",
                params,
                clock is not None,
            )
        if isinstance(op, Update):
            self._check_settable(op.set, "UPDATE sets columns it may not set")
            sets = [f"{self.cols[c]} = {self.value(v, self.types[c], params)}" for c, v in op.set.items()]
            if not sets:  # SET nothing is not SQL; the trigger still stamps updated_at
                sets = [f"{self.cols[self.key]} = {self.cols[self.key]}"]
            source = ""
            if clock is not None:
                source = clock_from
                params.extend([CLOCK_SETTING, clock])
            where_params: list[Any] = [op.job_id]
            self._guard_clock = clock
            try:
                where = self.conds(op.where, where_params) if op.where else ""
            finally:
                self._guard_clock = None
            params.extend(where_params)
            guard = f" AND {where}" if where else ""
            return (
                f"UPDATE {self.table} SET {', '.join(sets)}{source} WHERE {self.cols[self.key]} = %s{guard}"
                f" RETURNING {self.table}.*",
                params,
                clock is not None,
            )
        raise TypeError(f"not a database operation: {op!r}")


def bind(value: Any, sql_type: str) -> Any:
    """A plain Python value as the parameter for a column of ``sql_type``."""
    if value is None:
        return None
    if sql_type == "timestamptz" and isinstance(value, int) and not isinstance(value, bool):
        return Micros(value)
    if sql_type == "jsonb":
        return Jsonb(value)
    return value


def reads_now(op: DbOp) -> bool:
    """Whether a statement can call ``now()`` (a default, the trigger, or ``DbNow``)."""
    return isinstance(op, (Insert, Update))


def end_transaction(conn: psycopg.Connection[Any], command: str) -> str:
    """Send ``COMMIT`` or ``ROLLBACK`` on ``conn`` and answer the server's command tag (an
    aborted transaction's COMMIT answers ``ROLLBACK``); an error raises as psycopg would.

    Through libpq itself, not ``conn.execute``: psycopg forgets every prepared statement of a
    connection whose command answers ROLLBACK (rolled-back DDL could have changed what they
    name), which costs a ``DEALLOCATE ALL`` and a new Parse round trip for every statement
    after it. A session here runs no DDL, and the server keeps prepared statements across a
    rollback (they are not transactional)."""
    result = _execute(conn, conn.pgconn.exec_, conn.pgconn.send_query, command.encode())
    if result.status != ExecStatus.COMMAND_OK:
        raise _error(conn, result)
    return (result.command_status or b"").decode()


def _bound(
    link: _Link, query: str, params: list[Any], parsing: Mapping[tuple[bytes, Any], bytes] | None = None
) -> tuple[PostgresQuery, tuple[bytes, Any] | None, bytes]:
    """``query`` with ``params`` dumped by psycopg, as its cursor would, and the name it is prepared
    under on ``link``'s connection, or is being (``parsing``). The key is that of a statement still
    to parse under a new name, ``None`` for one prepared already."""
    pgq = PostgresQuery(link.tx)
    pgq.convert(query, params)
    key = (pgq.query, pgq.types)
    name = link.prepared.get(key) or (parsing or {}).get(key)
    if name is not None:
        return pgq, None, name
    return pgq, key, b"racetrack_%d" % (len(link.prepared) + len(parsing or {}))


def run_prepared(link: _Link, query: str, params: list[Any]) -> PGresult:
    """Run one statement on a session's connection through libpq itself, as psycopg's
    ``cursor.execute`` would with ``prepare_threshold=0`` (the same parameters, dumped by
    psycopg; the same Parse the first time, a round trip of its own; then Bind and Execute of
    the prepared statement, one round trip) without a cursor's per-statement bookkeeping. An error
    raises as psycopg would raise it; a connection that broke raises ``OperationalError``.

    The names are this module's own (psycopg's are ``_pg3_*``) and live as long as the
    connection: nothing on it runs DDL or a ROLLBACK through psycopg (see
    :func:`end_transaction`), which would have psycopg deallocate every prepared statement."""
    pgq, key, name = _bound(link, query, params)
    if key is not None:
        prepare_statement(link.conn, name, pgq)
        link.prepared[key] = name
    pg = link.conn.pgconn
    # psycopg's cursor passes its parameters so too (None: NULL)
    result = _execute(link.conn, pg.exec_prepared, pg.send_query_prepared, name, pgq.params, pgq.formats, result_format=Format.BINARY)
    if result.status != ExecStatus.TUPLES_OK:
        raise _error(link.conn, result)
    return result


def run_pipeline(link: _Link, statements: list[tuple[str, list[Any]]]) -> PGresult:
    """Send ``statements`` in one libpq pipeline, one round trip, and answer the last one's
    result (a transaction's BEGIN and clock go so with its first statement). Each is prepared
    on the connection under a name of :func:`run_prepared`'s, its Parse in the same pipeline the
    first time. The first error raises as psycopg would raise it (the statements after it are
    not run); a connection that broke raises ``OperationalError``.

    Waits for the answer in ``poll``, which lets other threads run meanwhile (libpq's own wait
    inside ``PQgetResult`` would hold the GIL). A pipeline left unread (Ctrl-C while waiting)
    closes the connection: it could serve no other statement."""
    pg = link.conn.pgconn
    parsing: dict[tuple[bytes, Any], bytes] = {}  # names given in this pipeline, not parsed yet
    #: per message sent, in order: a Parse's key (its name is remembered once it succeeded), or None
    sent: list[tuple[bytes, Any] | None] = []
    pg.enter_pipeline_mode()
    try:
        for query, params in statements:
            pgq, key, name = _bound(link, query, params, parsing)
            if key is not None:
                pg.send_prepare(name, pgq.query, pgq.types)
                parsing[key] = name
                sent.append(key)
            # psycopg's cursor passes its parameters so too (None: NULL), a type its stub leaves out
            pg.send_query_prepared(name, pgq.params, pgq.formats, result_format=Format.BINARY)  # type: ignore[arg-type]
            sent.append(None)
        pg.pipeline_sync()
        results = _pipeline_results(link.conn)
    finally:
        try:
            pg.exit_pipeline_mode()
        except psycopg.Error:
            link.conn.close()
    for parsed, result in zip(sent, results, strict=False):  # the Sync's result is last
        if result.status == ExecStatus.FATAL_ERROR:
            raise _error(link.conn, result)
        if parsed is not None and result.status == ExecStatus.COMMAND_OK:
            link.prepared[parsed] = parsing[parsed]
    answer = results[-2]  # the last statement's
    if answer.status != ExecStatus.TUPLES_OK:
        raise _error(link.conn, answer)
    return answer


def _wait_readable(pg: PGconn) -> None:
    """Wait until the server has sent something on ``pg``'s socket (``tracker.waits``: in
    ``poll``, which lets other threads run meanwhile, or switching to the other runs in flight)."""
    waits.wait(pg.socket, select.POLLIN)


def _execute(conn: psycopg.Connection[Any], blocking: Callable[..., PGresult], sending: Callable[..., Any], *args: Any, **kwargs: Any) -> PGresult:
    """One statement on ``conn`` through libpq: its blocking call (``PQexec*``: ``blocking``),
    or, where the wait may switch to other runs (``tracker.waits``), its sending call
    (``PQsend*``: ``sending``, with the same arguments) and :func:`_answer`."""
    if waits.switching():
        sending(*args, **kwargs)
        return _answer(conn)
    return blocking(*args, **kwargs)


def _answer(conn: psycopg.Connection[Any]) -> PGresult:
    """The last result of the one statement just sent on ``conn`` (not in pipeline mode), its
    waits through ``tracker.waits``: what libpq's blocking ``PQexec*`` answers."""
    pg = conn.pgconn
    result = None
    try:
        while pg.flush():
            waits.wait(pg.socket, select.POLLOUT)
        while (more := _next_result(pg)) is not None:
            result = more
    except BaseException:  # interrupted while it waited (Ctrl-C, --max-run-seconds), or broken:
        try:  # its answer unread, the connection could serve no other statement
            conn.cancel()
        except psycopg.Error:
            pass
        conn.close()
        raise
    if result is None:
        raise errors.OperationalError(pg.error_message.decode("utf-8", "replace") or "the connection broke")
    return result


def _next_result(pg: PGconn) -> PGresult | None:
    """libpq's next result on ``pg`` (None: the end of one statement's results), its wait in
    :func:`_wait_readable`."""
    while pg.is_busy():
        _wait_readable(pg)
        pg.consume_input()
    return pg.get_result()


def _pipeline_results(conn: psycopg.Connection[Any]) -> list[PGresult]:
    """Every result of the pipeline just sent on ``conn``, up to and with its Sync's."""
    pg, results, nothing = conn.pgconn, [], 0
    while True:
        result = _next_result(pg)
        if result is None:  # the end of one statement's results; twice running: no more will come
            nothing += 1
            if nothing > 1:  # (a broken connection), and waiting on would never end
                raise errors.OperationalError(pg.error_message.decode("utf-8", "replace") or "the connection broke")
            continue
        nothing = 0
        results.append(result)
        if result.status == ExecStatus.PIPELINE_SYNC:
            return results


def prepare_statement(conn: psycopg.Connection[Any], name: bytes, pgq: PostgresQuery) -> None:
    """Parse ``pgq`` on the server as ``name`` (one round trip)."""
    result = conn.pgconn.prepare(name, pgq.query, pgq.types)
    if result.status != ExecStatus.COMMAND_OK:
        raise _error(conn, result)


def _error(conn: psycopg.Connection[Any], result: PGresult) -> psycopg.Error:
    """The error psycopg would raise for a failed ``result`` of a statement sent through libpq.

    psycopg raises ``OperationalError`` when the connection breaks. libpq does not always mark
    the connection bad at once (a server gone while the statement was sent), but its own errors
    carry no SQLSTATE, which every error of the server's has: either means a lost connection."""
    if conn.pgconn.status == ConnStatus.BAD or result.error_field(DiagnosticField.SQLSTATE) is None:
        return errors.OperationalError(result.get_error_message(conn.info.encoding) or "the connection broke")
    return errors.error_from_result(result, encoding=conn.info.encoding)


#: What to do when the server has no connection to spare (said after its own words).
TOO_MANY_CONNECTIONS = (
    "; every run in flight holds connections of its own (one per handler running at once, plus two):"
    " lower --in-flight or --workers, or raise the server's max_connections"
)


def _out_of_connections(exc: psycopg.Error) -> bool:
    """Whether connecting failed because the server (or the role) has no connection to spare:
    SQLSTATE 53300, which libpq gives only as the server's words when connecting."""
    if getattr(getattr(exc, "diag", None), "sqlstate", None) == "53300":
        return True
    said = str(exc)
    return "too many clients already" in said or "too many connections for role" in said or "connection slots are reserved" in said


def tracker_error(exc: psycopg.Error, table: str = "job_status") -> TrackerError:
    """PostgreSQL's error as the handler sees it: SQLSTATE and constraint name."""
    diag = exc.diag
    sqlstate = diag.sqlstate or ""
    constraint = diag.constraint_name
    if sqlstate == "23502" and constraint is None and diag.column_name:
        constraint = f"{diag.table_name or table}_{diag.column_name}_not_null"  # PostgreSQL < 18
    if sqlstate == "25P02":
        constraint = None
    return TrackerError(sqlstate, constraint, diag.message_primary or one_line(str(exc)))


# --- statements shared by every connection to the table (this module's and the live driver's) ---

BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
#: Set the simulated database clock for the session (autocommit statements) or the transaction.
SET_CLOCK = "SELECT pg_catalog.set_config(%s, %s, false)"
SET_CLOCK_LOCAL = "SELECT pg_catalog.set_config(%s, %s, true)"
#: Which backends hold the lock a backend waits for (empty: it waits for none).
BLOCKING_PIDS = "SELECT pg_catalog.pg_blocking_pids(%s) AS pids"


def session_settings(schema: str, lock_timeout_ms: int) -> list[tuple[sql.Composed | str, list[Any]]]:
    """What every session runs once after connecting: (statement, parameters)."""
    return [
        (sql.SQL("SET search_path TO {}, pg_catalog").format(sql.Identifier(schema)), []),
        ("SET TimeZone TO 'UTC'", []),
        # racetrack's own sessions only: losing the last commits on a crash loses nothing of value
        ("SET synchronous_commit TO off", []),
        ("SELECT set_config('lock_timeout', %s, false)", [f"{lock_timeout_ms}ms"]),
    ]


def schema_statements(schema: str, table: Table) -> list[sql.Composed | bytes]:
    """The statements that create ``schema``, mark it as racetrack's (``racetrack clean`` drops
    it once its process is gone), and create its ``now()`` and the table's SQL as the user wrote
    it; to run in one transaction in this order (none takes parameters)."""
    name = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA {}").format(name),
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(name, sql.Literal(schema_marker())),
        sql.SQL("SET LOCAL search_path TO {}, pg_catalog").format(name),
        sql.SQL(
            "CREATE FUNCTION {}.now() RETURNS timestamptz LANGUAGE sql STABLE AS "
            "$$ SELECT pg_catalog.current_setting({})::timestamptz $$"
        ).format(name, sql.Literal(CLOCK_SETTING)),
        table.sql.encode(),  # one multi-statement script
        *(
            sql.SQL("ALTER FUNCTION {} SET search_path TO {}, pg_catalog").format(sql.Identifier(schema, function), name)
            for function in table.functions
        ),
    ]


def select_rows(schema: str, table: Table) -> sql.Composed:
    return sql.SQL("SELECT * FROM {} ORDER BY {}").format(sql.Identifier(schema, table.name), sql.Identifier(table.key))


def delete_rows(schema: str, table: Table) -> sql.Composed:
    # DELETE, not TRUNCATE: a run leaves a few dozen rows, and TRUNCATE's new files cost ms
    return sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table.name))


def drop_schema_statement(schema: str) -> sql.Composed:
    return sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))


# --- sessions ----------------------------------------------------------------------------------


class _Link:
    """A pooled session connection and what its statements reuse across sessions and runs: one
    transformer (a cursor or a transformer per statement would cost its own adapters map and
    look its loaders up anew), and the statements it prepared itself (see :func:`run_prepared`)."""

    def __init__(self, conn: psycopg.Connection[Any], generation: int) -> None:
        self.conn = conn
        #: How many times its tracker had lost the server when it connected (see ``_lost``).
        self.generation = generation
        self.tx = Transformer(conn)
        #: Whether ``tx`` has its row loaders: every row a statement answers is a whole row of the
        #: one table, in binary, so the loaders looked up for the first serve every later one
        #: (looking them up costs ~1.2 us a result, reusing them ~0.1 us).
        self.loaders_set = False
        #: (query, parameter types) -> the name it was prepared under on this connection
        self.prepared: dict[tuple[bytes, Any], bytes] = {}


class _Session:
    """One actor's connection and what the backend knows about its transaction."""

    def __init__(self, link: _Link) -> None:
        self.link, self.conn = link, link.conn
        self.pid = self.conn.info.backend_pid
        self.in_tx = False
        #: The clock of a BEGIN not sent yet: it goes with the transaction's first statement.
        self.begin_clock: str | None = None
        self.inserted: list[str] = []  # rows this transaction inserted, in order
        self.future: Future[Outcome] | None = None
        self.op: DbOp | None = None


class PostgresTracker:
    """The job_status table in a schema of its own on a real server. State: connections."""

    name = "postgres"

    def __init__(
        self, dsn: str, prefix: str | None = None, lock_timeout_ms: int = 20_000, table: Table | None = None
    ) -> None:
        prefix = prefix or DEFAULT_PREFIX
        check_prefix(prefix)
        self.dsn = dsn
        self.spec = table or bundled_table()
        self._enum_oids: list[int] = []
        self.where = describe_server(dsn)
        self.lock_timeout_ms = lock_timeout_ms
        self.schema = f"{prefix}_{os.getpid()}_{next(_schema_numbers)}"
        self._idle: list[_Link] = []
        self._generation = 0  # times the server was lost (see _lost)
        #: The table's column names in the server's order: every session statement returns whole
        #: rows (``SELECT *``, ``RETURNING *``), read as tuples; learnt from the first one.
        self._columns: tuple[str, ...] | None = None
        self._sessions: dict[str, _Session] = {}
        self._lock_owner: dict[str, str] = {}  # row -> session whose open transaction locked it
        self._held: dict[str, set[str]] = {}  # session -> rows it locked (or may have locked)
        self._threads: ThreadPoolExecutor | None = None
        self._rpcs = RpcCalls()
        self._created = False
        self._interrupted = False  # Ctrl-C from another thread: see interrupt()
        self._pid_session: dict[int, str] = {}
        #: Job ids in the order their rows were first committed: ``rows()`` keeps the model's order.
        self._commit_order: dict[str, None] = {}
        self.admin = self._connect()
        self._create_schema()
        _open_trackers.add(self)
        try:
            self.monitor = self._connect()
        except ServerUnavailable:
            self.monitor = self.admin  # close() closes it once more, harmlessly
            self.close()
            raise
        self.compiler = Compiler(self.schema, lambda c: c.as_string(self.admin), self.spec)
        self._delete_rows = delete_rows(self.schema, self.spec).as_bytes(self.admin)
        self._select_rows = select_rows(self.schema, self.spec).as_bytes(self.admin)
        #: The admin connection a run's rows were last read on, and a transformer for it.
        self._admin_tx: tuple[psycopg.Connection[Any], TransformerLike] | None = None

    # -- setup ----------------------------------------------------------------------------------

    def _connect(self, mid_run: bool = False) -> psycopg.Connection[Any]:
        """A new connection, set up for racetrack. A server that refuses it, or accepts it and
        drops it while it is set up (restarting, or ending every connection), raises
        :class:`ServerUnavailable`; ``mid_run`` (a session's connection), it has gone away
        during the run: :class:`ConnectionLost`, as for the run's other connections."""

        def failed(exc: psycopg.Error) -> UserError:
            if _out_of_connections(exc):  # not a server gone: one that has no connection to spare
                what = "PostgreSQL refused a new connection"
                return (ConnectionLost if mid_run else ServerUnavailable)(self._say(what, exc) + TOO_MANY_CONNECTIONS)
            return self._lost(exc) if mid_run else ServerUnavailable(self._say("cannot connect to PostgreSQL", exc))

        try:
            conn = psycopg.connect(
                self.dsn, autocommit=True, context=ADAPTERS, row_factory=dict_row, prepare_threshold=0,
                connect_timeout=10, application_name=self.schema,  # who's who in pg_stat_activity
            )
        except psycopg.Error as exc:
            raise failed(exc) from None
        try:
            with conn.cursor() as cur:
                for statement, params in session_settings(self.schema, self.lock_timeout_ms):
                    cur.execute(statement, params or None)
        except psycopg.OperationalError as exc:  # accepted, then gone (a server restarting): not up yet
            conn.close()
            raise failed(exc) from None
        self._read_enums_as_text(conn)
        return conn

    def _reconnect(self) -> psycopg.Connection[Any]:
        """A new connection after the server went away: a server that is restarting refuses
        connections for a while, so wait for it (up to ``RECONNECT_WAIT_S``) rather than turn
        every remaining run into an error row in that moment."""
        waited = 0.0
        while True:
            try:
                return self._connect()
            except ServerUnavailable:
                if waited >= RECONNECT_WAIT_S:
                    raise
                time.sleep(0.25)  # wall-clock ok: waiting for a server to come back, never a result
                waited += 0.25

    def _read_enums_as_text(self, conn: psycopg.Connection[Any]) -> None:
        """The table's enum values come back as ``str``, as the model holds them."""
        for oid in self._enum_oids:
            conn.adapters.register_loader(oid, psycopg.types.string.TextLoader)
            conn.adapters.register_loader(oid, psycopg.types.string.TextBinaryLoader)

    def _lost(self, exc: BaseException) -> ConnectionLost:
        """The server went away: pooled connections are as dead as this one, and so are those
        sessions hold now (which may look alive until they are used: they never go back to the
        pool); reconnect next run."""
        self._generation += 1
        for link in self._idle:
            link.conn.close()
        self._idle.clear()
        return ConnectionLost(self._say("lost the connection to PostgreSQL", exc))

    def _say(self, what: str, exc: BaseException) -> str:
        sqlstate = getattr(getattr(exc, "diag", None), "sqlstate", None)
        said = f" (SQLSTATE {sqlstate})" if sqlstate else ""  # names the class: 57014 a timeout, 53100 a full disk
        return mask_password(f"{what} at {self.where}: {one_line(str(exc)) or type(exc).__name__}{said}", self.dsn)

    def _create_schema(self) -> None:
        try:
            with self.admin.transaction():
                for statement in schema_statements(self.schema, self.spec):
                    self.admin.execute(statement, prepare=False)
                    self._created = True
                found = self.admin.execute(
                    "SELECT t.oid FROM pg_catalog.pg_type t WHERE t.typtype = 'e' AND t.typnamespace = %s::regnamespace",
                    [self.schema],
                )
                self._enum_oids = [r["oid"] for r in found.fetchall()]
            self._read_enums_as_text(self.admin)
        except psycopg.Error as exc:
            self._created = False
            if isinstance(exc, psycopg.errors.SyntaxErrorOrAccessRuleViolation | psycopg.errors.DataException) or (
                exc.sqlstate or ""
            ).startswith(("42", "22", "2B", "0A")):
                raise TableRefused(
                    f"{self.spec.source}: PostgreSQL refused the table SQL: {one_line(str(exc))}"
                ) from None
            raise ServerUnavailable(self._say(f"cannot create schema {self.schema}", exc)) from None

    # -- the contract ---------------------------------------------------------------------------

    def reset(self) -> None:
        for session in list(self._sessions):
            self.end_session(session)
        self._lock_owner.clear()
        self._held.clear()
        self._commit_order.clear()
        try:
            self._reconnect_if_broken()
            self._admin_result(self._delete_rows, ExecStatus.COMMAND_OK)
        except psycopg.OperationalError:
            try:  # the server went away since the last run (restarted): its connections only look open
                self.admin.close()
                self.monitor.close()
                self._reconnect_if_broken()
                self._admin_result(self._delete_rows, ExecStatus.COMMAND_OK)
            except psycopg.OperationalError as exc:
                raise self._lost(exc) from None

    def _admin_result(self, query: bytes, status: ExecStatus) -> PGresult:
        """``query`` (no parameters) on the admin connection through libpq itself, rows in binary:
        what ``admin.execute`` does, without a cursor's bookkeeping. An answer of another status
        than ``status`` raises as psycopg would raise it."""
        pg = self.admin.pgconn
        result = _execute(self.admin, pg.exec_params, pg.send_query_params, query, None, result_format=Format.BINARY)
        if result.status != status:
            raise _error(self.admin, result)
        return result

    def _reconnect_if_broken(self) -> None:
        if self.admin.closed or self.admin.broken:
            self.admin = self._reconnect()
        if self.monitor.closed or self.monitor.broken:
            self.monitor = self._reconnect()

    def interrupt(self) -> None:
        """Ctrl-C, from another thread than the one running on this tracker: its statements
        running now are cancelled on the server and its next ``execute`` or ``resume`` raises
        ``KeyboardInterrupt`` in the running thread, at a point where nothing is half done (an
        exception raised into a thread from outside can land inside a lock or a thread's start)."""
        self._interrupted = True
        for state in list(self._sessions.values()):
            try:
                state.conn.cancel()
            except psycopg.Error:
                pass  # a closed or broken connection runs nothing

    def _check_interrupted(self) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        self._check_interrupted()
        state = self._session(session)
        if state.future is not None:
            raise RuntimeError(f"session {session} already has a statement in flight")
        if isinstance(op, (Begin, Commit, Rollback)):
            return self._transaction(session, state, op, db_now_us)
        if isinstance(op, Rpc):  # the same statements as the model runs, on this one connection
            return self._rpcs.execute(op, db_now_us, state.in_tx, lambda o: self.execute(session, o, db_now_us), session)
        clock = micros_to_text(db_now_us) if reads_now(op) and not state.in_tx else None
        query, params, clock = self.compiler.statement(op, clock)
        job_id = op.job_id
        if not self._may_wait(session, op):
            return self._finish(session, state, op, self._run(state, query, params, clock))
        state.op = op
        state.future = self._pool().submit(self._run, state, query, params, clock)
        outcome = self._await(session, state, job_id)
        return outcome

    def resume(self, session: str) -> Outcome:
        self._check_interrupted()
        if session in self._rpcs:
            return self._rpcs.resume(session, lambda: self._resume(session), self._rpc_statement(session))
        return self._resume(session)

    def _rpc_statement(self, session: str) -> Callable[[DbOp], Outcome]:
        # Inside the call's transaction: the clock was set at its BEGIN (or the caller's).
        return lambda op: self.execute(session, op, 0)

    def _resume(self, session: str) -> Outcome:
        state = self._sessions.get(session)
        if state is None or state.future is None or state.op is None:
            raise RuntimeError(f"session {session} has no statement waiting")
        return self._await(session, state, state.op.job_id)  # type: ignore[union-attr]

    def end_session(self, session: str) -> None:
        self._rpcs.end(session)
        state = self._sessions.pop(session, None)
        if state is None:
            return
        self._release(session)
        self._pid_session.pop(state.pid, None)
        conn = state.conn
        try:
            if state.future is not None:  # still waiting: cancel it server-side, then collect it
                conn.cancel()
                try:
                    state.future.result(timeout=STUCK_AFTER_S)
                except Exception:  # the cancelled statement's error is nobody's answer any more
                    pass
            if state.link.generation != self._generation:  # connected before the server went away
                conn.close()
                return
            if conn.info.transaction_status != TransactionStatus.IDLE:
                end_transaction(conn, "ROLLBACK")
            self._idle.append(state.link)
        except psycopg.Error:
            conn.close()  # a broken connection is not returned to the pool

    def rows(self) -> dict[str, Row]:
        try:
            result = self._admin_result(self._select_rows, ExecStatus.TUPLES_OK)
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        if self._admin_tx is None or self._admin_tx[0] is not self.admin:
            self._admin_tx = (self.admin, Transformer(self.admin))
        tx = self._admin_tx[1]
        tx.set_pgresult(result)
        names = self._columns or self._learn_columns(result, self.admin)  # SELECT *: a statement's whole row
        key = names.index(self.spec.key)
        found = {t[key]: dict(zip(names, t, strict=True)) for t in tx.load_rows(0, result.ntuples, tuple)}
        order = [j for j in self._commit_order if j in found] + [j for j in found if j not in self._commit_order]
        return {j: found[j] for j in order}

    def row_verdicts(self, conditions: tuple[str, ...], rows: list[Row]) -> list[tuple[bool | None, ...]]:
        """PostgreSQL's value of each of ``conditions`` (a scenario's row invariants: SQL boolean
        expressions over the table's columns, as pglast printed them back) on each of ``rows``
        (row versions a run committed), in one SELECT: each version is rebuilt as a row of the
        table's type (``jsonb_populate_record``), so the server casts, compares and orders as
        it would in a CHECK."""
        if not rows or not conditions:
            return [() for _ in rows]
        stamps = {c.name for c in self.spec.columns if c.kind == "timestamptz"}
        docs = [
            {c: micros_to_text(v) if c in stamps and isinstance(v, int) else v for c, v in row.items() if v is not None}
            for row in rows
        ]
        query = sql.SQL(
            "SELECT {} FROM pg_catalog.jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS racetrack_v(racetrack_doc, racetrack_n)"
            " CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::{}, racetrack_v.racetrack_doc) AS {}"
            " ORDER BY racetrack_v.racetrack_n"
        ).format(
            # the conditions were parsed and printed back by pglast: one expression each, no statement
            sql.SQL(", ").join(sql.SQL(f"({c.replace('%', '%%')}) AS racetrack_{i}") for i, c in enumerate(conditions)),
            sql.Identifier(self.schema, self.spec.name),
            sql.Identifier(self.spec.name),
        )
        try:
            found = self.admin.execute(query, [Jsonb(docs)]).fetchall()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            raise RowInvariantRefused(f"PostgreSQL could not evaluate a row invariant: {one_line(str(exc))}") from None
        return [tuple(r[f"racetrack_{i}"] for i in range(len(conditions))) for r in found]

    def close(self) -> None:
        """End every session, drop the schema racetrack created, close every connection."""
        for session in list(self._sessions):
            self.end_session(session)
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._created and not (self.admin.closed or self.admin.broken):
            try:
                self.admin.execute(drop_schema_statement(self.schema))
                self._created = False
            except psycopg.Error:
                pass  # busy (a Ctrl-C landed mid-statement: "another command is already in progress")
        # a killed or busy admin connection: over a fresh one (the server gone: `racetrack clean`)
        self.drop_from_outside()
        for conn in [*(link.conn for link in self._idle), self.admin, self.monitor]:
            conn.close()
        self._idle.clear()
        _open_trackers.discard(self)

    def drop_from_outside(self) -> None:
        """Drop the schema over a fresh connection, ending this tracker's own sessions first: for a
        signal handler, which may have interrupted a statement on one of them."""
        if not self._created:
            return
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                drop_schema(conn, self.schema)
            self._created = False
        except psycopg.Error:
            pass  # the server is gone: `racetrack clean` drops it later


    # -- sessions and transactions --------------------------------------------------------------

    def _session(self, session: str) -> _Session:
        state = self._sessions.get(session)
        if state is None:
            link = self._idle.pop() if self._idle else _Link(self._connect(mid_run=True), self._generation)
            state = self._sessions[session] = _Session(link)
            self._pid_session[state.pid] = session
        return state

    def _transaction(self, session: str, state: _Session, op: DbOp, db_now_us: int) -> Outcome:
        try:
            if isinstance(op, Begin):
                if state.in_tx:
                    if state.begin_clock is None:  # before the first BEGIN is sent this one would only warn
                        state.conn.execute("BEGIN")  # PostgreSQL warns and goes on; so does the model
                    return Done()
                # BEGIN takes no snapshot and no lock: it waits for the first statement, and goes with it
                state.begin_clock, state.in_tx = micros_to_text(db_now_us), True
                return Done()
            if state.begin_clock is not None:  # nothing was sent: nothing to end on the server
                state.begin_clock = None
                status: str | None = "COMMIT" if isinstance(op, Commit) else "ROLLBACK"
            else:
                status = end_transaction(state.conn, "COMMIT" if isinstance(op, Commit) else "ROLLBACK")
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            return Done(error=tracker_error(exc, self.spec.name))
        if status == "COMMIT":  # an aborted transaction's COMMIT answers ROLLBACK
            self._commit_order.update(dict.fromkeys(state.inserted))
        state.in_tx, state.inserted = False, []
        self._release(session)
        return Done()

    def _release(self, session: str) -> None:
        for job_id in self._held.pop(session, set()):
            if self._lock_owner.get(job_id) == session:
                del self._lock_owner[job_id]

    def _may_wait(self, session: str, op: DbOp) -> bool:
        if isinstance(op, Select) and not op.for_update:
            return False  # a plain SELECT never waits for a row lock
        job_id = op.job_id  # type: ignore[union-attr]
        return any(job_id in rows for other, rows in self._held.items() if other != session)

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=512, thread_name_prefix="racetrack-pg")  # one per waiting session
        return self._threads

    # -- running one statement ------------------------------------------------------------------

    def _run(self, state: _Session, query: str, params: list[Any], clock: str | None) -> Outcome:
        """Execute on the session's connection (inline or on a worker thread)."""
        link = state.link
        try:
            if clock is None and state.begin_clock is None:  # one statement: straight through libpq
                result = run_prepared(link, query, params)
            else:
                if state.begin_clock is not None:  # the transaction's first statement: BEGIN goes with it
                    begin_clock, state.begin_clock = state.begin_clock, None
                    first: list[tuple[str, list[Any]]] = [(BEGIN, []), (SET_CLOCK_LOCAL, [CLOCK_SETTING, begin_clock])]
                else:
                    first = [(SET_CLOCK, [CLOCK_SETTING, clock])]
                result = run_pipeline(link, [*first, (query, params)])
            if not result.ntuples:
                return Done()
            link.tx.set_pgresult(result, set_loaders=not link.loaders_set)
            link.loaders_set = True
            row = link.tx.load_row(0, tuple)
            columns = self._columns or self._learn_columns(result, link.conn)
            return Done(value=dict(zip(columns, row, strict=True)))
        except psycopg.OperationalError as exc:
            self._check_interrupted()  # cancelled by interrupt(): Ctrl-C, not a lost server
            if isinstance(exc, errors.LockNotAvailable):  # a wait the bookkeeping did not foresee
                raise ConnectionLost(f"a statement waited on a row lock past lock_timeout at {self.where}") from None
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            return Done(error=tracker_error(exc, self.spec.name))

    def _learn_columns(self, result: PGresult | None, conn: psycopg.Connection[Any]) -> tuple[str, ...]:
        """The column names of the first whole row read (see ``_columns``)."""
        assert result is not None
        encoding = conn.info.encoding
        self._columns = tuple(result.fname(i).decode(encoding) for i in range(result.nfields))  # type: ignore[union-attr]
        return self._columns

    def _finish(self, session: str, state: _Session, op: DbOp, outcome: Outcome) -> Outcome:
        """Book what a finished statement locked (for Blocked answers and for may-wait guesses)."""
        if isinstance(op, Insert) and isinstance(outcome, Done) and outcome.value is not None:
            if state.in_tx:
                state.inserted.append(op.job_id)
            else:
                self._commit_order[op.job_id] = None
        if not state.in_tx or not isinstance(outcome, Done):
            return outcome
        if outcome.error is not None:
            self._release(session)  # the error aborted the transaction: the server freed its locks
            return outcome
        job_id = op.job_id  # type: ignore[union-attr]
        upsert = isinstance(op, Insert) and op.on_conflict_update is not None  # locks even when its guard fails
        if upsert or (outcome.value is not None and (isinstance(op, (Insert, Update)) or getattr(op, "for_update", False))):
            self._held.setdefault(session, set()).add(job_id)
            if self._lock_owner.get(job_id) in (None, session):
                self._lock_owner[job_id] = session
        return outcome

    def _await(self, session: str, state: _Session, job_id: str) -> Outcome:
        """Poll a statement on its thread until it finishes or waits on a lock (never hang)."""
        assert state.future is not None and state.op is not None
        started = time.monotonic()  # wall-clock ok: only bounds how long we poll, never a result
        delay = 0.0002
        while True:
            self._check_interrupted()
            try:
                outcome = state.future.result(timeout=delay)
            except FutureTimeout:
                pass
            else:
                op, state.future, state.op = state.op, None, None
                return self._finish(session, state, op, outcome)
            blockers = self._blocking(state.pid)
            if blockers and not state.future.done():
                return Blocked(self._blocked_by(session, job_id, blockers))
            if time.monotonic() - started > STUCK_AFTER_S:  # wall-clock ok: a safety net
                raise ConnectionLost(
                    f"a statement of {session} neither finished nor waited on a lock for {STUCK_AFTER_S:.0f} s at {self.where}"
                )
            delay = min(delay * 2, 0.005)

    def _blocking(self, pid: int) -> list[int]:
        try:
            row = self.monitor.execute(BLOCKING_PIDS, [pid]).fetchone()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        return list(row["pids"]) if row else []

    def _blocked_by(self, session: str, job_id: str, pids: list[int]) -> tuple[str, ...]:
        """The session holding the row lock (as the model says it), else whom the server names."""
        owner = self._lock_owner.get(job_id)
        if owner is not None and owner != session:
            return (owner,)
        named = tuple(self._pid_session[p] for p in pids if p in self._pid_session)
        if not named:
            raise RuntimeError(f"session {session} waits on backends {pids} that are not racetrack's sessions")
        return named


#: How long a run waits for a server that went away to accept connections again (a restart).
RECONNECT_WAIT_S = 30.0


def check_prefix(prefix: str) -> None:
    """A schema prefix must be a plain lower-case identifier short enough for a suffix."""
    ok = prefix[:1].isalpha() or prefix[:1] == "_"
    if not ok or not all(c.isalnum() or c == "_" for c in prefix) or prefix != prefix.lower() or len(prefix) > 40:
        raise ValueError(
            f"--schema {prefix!r}: use a lower-case name of letters, digits and '_' (at most 40), "
            "racetrack adds _<pid>_<n> and creates that schema"
        )
    if f"{prefix}_".startswith("pg_"):  # the server refuses such a schema (racetrack adds _<pid>_<n>: pg -> pg_...)
        raise ValueError(f"--schema {prefix!r}: schema names starting with pg_ are reserved by PostgreSQL, and racetrack "
                         "adds _<pid>_<n> to the prefix; choose another prefix")


def close_open_trackers() -> None:
    """Close every tracker this process still has open (at exit: their schemas are dropped)."""
    for tracker in list(_open_trackers):
        try:
            tracker.close()
        except Exception:  # at exit, one broken tracker must not keep the others' schemas
            tracker.drop_from_outside()


def interrupt_open_trackers() -> None:
    """Ctrl-C reaching runs on other threads of this process: see :meth:`PostgresTracker.interrupt`."""
    for tracker in list(_open_trackers):
        tracker.interrupt()


def drop_open_trackers_from_outside() -> None:
    """On a terminating signal: drop every open tracker's schema without touching its connections."""
    for tracker in list(_open_trackers):
        tracker.drop_from_outside()


atexit.register(close_open_trackers)
