"""The tracker table on a real PostgreSQL over psycopg's asyncio connections: the live driver's
database.

The async twin of :class:`tracker.postgres.PostgresTracker`: the same schema of its own
(``<prefix>_<pid>_<n>``, created by ``tracker.postgres.schema_statements`` and dropped at
:meth:`close`), the same session settings, the same statements (``tracker.postgres.Compiler``,
``BEGIN``, ``SET_CLOCK``) and the same ``now()`` handling: the schema's ``now()`` reads the
``racetrack.now`` setting, which the driver sets to the database host's clock reading when a
statement (or a transaction) is sent. No SQL text lives here.

What differs is who decides the order: nothing. Each session (one handler invocation) has its own
connection from a small pool and its statements go over the wire when the handler asks; lock waits
happen in the server, for real. While another session has a transaction open, a statement that
could wait and is still running after a couple of milliseconds is watched from a monitor connection (``pg_blocking_pids``, as the isolation tester does), so a lock
wait is recorded with the sessions that held it.

Imports ``tracker``, psycopg (async) and the standard library.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from tracker.backend import Done
from tracker.ops import Begin, Commit, DbOp, Rollback, Row, Rpc, Select
from tracker.pg_server import ServerUnavailable, describe_server, mask_password, one_line
from tracker.postgres import (
    ADAPTERS,
    BEGIN,
    BLOCKING_PIDS,
    CLOCK_SETTING,
    SET_CLOCK,
    SET_CLOCK_LOCAL,
    Compiler,
    check_prefix,
    delete_rows,
    drop_schema_statement,
    micros_to_text,
    reads_now,
    schema_statements,
    select_rows,
    session_settings,
    tracker_error,
)
from tracker.table import Table
from tracker.table_sql import bundled_table

DEFAULT_PREFIX = "racetrack_live"
#: A statement that has not answered after this long is watched for lock waits, then this often.
WATCH_AFTER_S = 0.002
WATCH_EVERY_S = 0.002
_numbers = itertools.count(1)


class LiveDatabaseLost(Exception):
    """The server went away during a live run: one line, password masked."""


class AsyncTracker:
    """The job_status table in its own schema; one pooled async connection per session."""

    def __init__(self, dsn: str, prefix: str | None = None, lock_timeout_ms: int = 20_000, table: Table | None = None) -> None:
        prefix = prefix or DEFAULT_PREFIX
        self.table = table or bundled_table()
        check_prefix(prefix)
        self.dsn = dsn
        self.where = describe_server(dsn)
        self.lock_timeout_ms = lock_timeout_ms
        self.schema = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        self.compiler: Compiler | None = None
        self._admin: psycopg.AsyncConnection[Any] | None = None
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._sessions: dict[str, psycopg.AsyncConnection[Any]] = {}
        self._pid_session: dict[int, str] = {}
        self._monitor: psycopg.AsyncConnection[Any] | None = None
        self._in_tx: set[str] = set()
        self._created = False

    async def open(self) -> None:
        """Connect and create the schema; :class:`ServerUnavailable` (one line) if that fails."""
        self._admin = await self._connect()
        try:
            async with self._admin.transaction():
                for statement in schema_statements(self.schema, self.table):
                    await self._admin.execute(statement, prepare=False)
                    self._created = True
        except psycopg.Error as exc:
            self._created = False
            raise ServerUnavailable(self._say(f"cannot create schema {self.schema}", exc)) from None
        admin = self._admin
        self.compiler = Compiler(self.schema, lambda c: c.as_string(admin), self.table)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, context=ADAPTERS, row_factory=dict_row, prepare_threshold=0,
                connect_timeout=10, application_name=self.schema,
            )
        except psycopg.Error as exc:
            raise ServerUnavailable(self._say("cannot connect to PostgreSQL", exc)) from None
        async with conn.cursor() as cur:
            for statement, params in session_settings(self.schema, self.lock_timeout_ms):
                await cur.execute(statement, params or None)
        return conn

    def _say(self, what: str, exc: BaseException) -> str:
        return mask_password(f"{what} at {self.where}: {one_line(str(exc)) or type(exc).__name__}", self.dsn)

    async def warm(self, sessions: int) -> None:
        """Open ``sessions`` connections ahead of the run: connecting is not what a handler pays."""
        fresh = [await self._connect() for _ in range(max(0, sessions - len(self._idle)))]
        self._idle.extend(fresh)

    async def execute(self, session: str, op: DbOp, db_now_us: int) -> tuple[Done, tuple[str, ...]]:
        """Run one operation for ``session`` now: its answer (or the error the handler sees), and
        the sessions whose locks it waited for."""
        conn = self._sessions.get(session)
        if conn is None:
            conn = self._sessions[session] = self._idle.pop() if self._idle else await self._connect()
            self._pid_session[conn.info.backend_pid] = session
        if not (self._in_tx - {session}) or (isinstance(op, Select) and not op.for_update):
            # Only another session's open transaction holds a row lock across round trips (an
            # autocommit write holds it for microseconds); a plain SELECT never waits for one.
            return await self._execute(session, conn, op, db_now_us), ()
        running = asyncio.ensure_future(self._execute(session, conn, op, db_now_us))
        blockers: tuple[str, ...] = ()
        done, _ = await asyncio.wait({running}, timeout=WATCH_AFTER_S)
        while not done:  # still running: is it waiting for a lock?
            for pid in await self._blocking(conn.info.backend_pid):
                name = self._pid_session.get(pid, f"backend {pid}")
                blockers += (name,) if name not in blockers else ()
            done, _ = await asyncio.wait({running}, timeout=WATCH_EVERY_S)
        return running.result(), blockers

    async def _blocking(self, pid: int) -> list[int]:
        if self._monitor is None:
            self._monitor = await self._connect()
        try:
            cur = await self._monitor.execute(BLOCKING_PIDS, [pid])
            row = await cur.fetchone()
        except psycopg.OperationalError as exc:
            raise LiveDatabaseLost(self._say("lost the connection to PostgreSQL", exc)) from None
        return list(row["pids"]) if row else []

    async def _execute(self, session: str, conn: psycopg.AsyncConnection[Any], op: DbOp, db_now_us: int) -> Done:
        assert self.compiler is not None, "open() first"
        try:
            if isinstance(op, Begin):
                if session in self._in_tx:
                    await conn.execute("BEGIN")  # PostgreSQL warns and goes on; so does the model
                    return Done()
                async with conn.pipeline():
                    await conn.execute(BEGIN)
                    await conn.execute(SET_CLOCK_LOCAL, [CLOCK_SETTING, micros_to_text(db_now_us)])
                self._in_tx.add(session)
                return Done()
            if isinstance(op, (Commit, Rollback)):
                self._in_tx.discard(session)
                await conn.execute("COMMIT" if isinstance(op, Commit) else "ROLLBACK")
                return Done()
            if isinstance(op, Rpc):
                return await self._call(session, conn, op, db_now_us)
            clock = micros_to_text(db_now_us) if reads_now(op) and session not in self._in_tx else None
            query, params, clock = self.compiler.statement(op, clock)
            async with conn.cursor(binary=True) as cur:
                if clock is None:
                    await cur.execute(query, params)
                else:
                    async with conn.pipeline():
                        await cur.execute(SET_CLOCK, [CLOCK_SETTING, clock])
                        await cur.execute(query, params)
                row = await cur.fetchone()
            return Done(value=None if row is None else dict(row))
        except psycopg.OperationalError as exc:
            raise LiveDatabaseLost(self._say("lost the connection to PostgreSQL", exc)) from None
        except psycopg.Error as exc:
            return Done(error=tracker_error(exc))

    async def _call(self, session: str, conn: psycopg.AsyncConnection[Any], op: Rpc, db_now_us: int) -> Done:
        """A function call as the simulated backends run it: its body in a transaction of its own
        (or the caller's), one statement after another on the session's connection."""
        own = session not in self._in_tx
        if own:
            await self._execute(session, conn, Begin(), db_now_us)
        answers = []
        for statement in op.body:
            done = await self._execute(session, conn, statement, db_now_us)
            if done.error is not None:
                if own:
                    await self._execute(session, conn, Rollback(), db_now_us)
                return done
            answers.append(done.value)
        if own:
            await self._execute(session, conn, Commit(), db_now_us)
        return Done(value=tuple(answers))

    async def end_session(self, session: str) -> None:
        """Roll back whatever the session left open and return its connection to the pool."""
        conn = self._sessions.pop(session, None)
        self._in_tx.discard(session)
        if conn is None:
            return
        self._pid_session.pop(conn.info.backend_pid, None)
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.execute("ROLLBACK")
            self._idle.append(conn)
        except psycopg.Error:
            await conn.close()

    async def reset(self) -> None:
        """Empty the table between runs (the schema and the pooled connections stay)."""
        assert self._admin is not None
        try:
            await self._admin.execute(delete_rows(self.schema, self.table))
        except psycopg.OperationalError as exc:
            raise LiveDatabaseLost(self._say("lost the connection to PostgreSQL", exc)) from None

    async def rows(self) -> dict[str, Row]:
        assert self._admin is not None
        cur = await self._admin.execute(select_rows(self.schema, self.table), binary=True)
        return {r[self.table.key]: dict(r) for r in await cur.fetchall()}

    async def close(self) -> None:
        """Drop the schema this tracker created and close every connection."""
        for session in list(self._sessions):
            await self.end_session(session)
        if self._admin is not None:
            try:
                if self._created and not self._admin.broken:
                    await self._admin.execute(drop_schema_statement(self.schema))
                    self._created = False
            except psycopg.Error:
                pass  # the server is gone: nothing to drop it from
        for conn in [*self._idle, *(c for c in (self._admin, self._monitor) if c is not None)]:
            await conn.close()
        self._idle.clear()
