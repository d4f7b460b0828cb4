"""What racetrack leaves on a server when a process dies before it can clean up, and removing it.

Every schema racetrack creates carries a marker, a ``COMMENT ON SCHEMA`` written in the same
transaction that creates it: ``racetrack-owned {"pid": P, "host": H}``, the creating process and
its host. A schema counts as racetrack's leftover only when its name ends in ``_<P>_<n>`` for
the marker's pid P, the marker names this host, and process P is gone here: a schema without
the marker, from another host, or whose process is alive is never touched.

Removing one first ends the server sessions still named after it (``application_name`` is the
schema's name), so a dead process's half-open transactions cannot make ``DROP SCHEMA`` wait.

Imports only the standard library and psycopg.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

MARKER_PREFIX = "racetrack-owned "


def schema_marker(pid: int | None = None) -> str:
    """The comment racetrack puts on a schema it creates: this process and this host."""
    return MARKER_PREFIX + json.dumps({"pid": os.getpid() if pid is None else pid, "host": socket.gethostname()})


def marker_owner(comment: str | None) -> tuple[int, str] | None:
    """(pid, host) from a schema comment racetrack wrote, else None."""
    if not comment or not comment.startswith(MARKER_PREFIX):
        return None
    try:
        owner = json.loads(comment[len(MARKER_PREFIX) :])
        return int(owner["pid"]), str(owner["host"])
    except (ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie has ended: it holds no connection)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: trust kill(0)


def stop_owned_process(pid: int, owner_mark: bytes, signals: tuple[signal.Signals, ...]) -> int | None:
    """Stop process ``pid`` only if its command line holds ``owner_mark`` (a pid may have been
    reused by another process: not ours to stop): each signal in turn until it is gone. Its pid,
    or None when it was not ours."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if owner_mark not in f.read():
                return None
    except OSError:
        return None
    for sig in signals:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        for _ in range(100):
            if not process_alive(pid):
                return pid
            time.sleep(0.05)  # wall-clock ok: waiting for a process to exit
    return pid


@dataclass(frozen=True)
class MarkedSchema:
    """A schema racetrack created, with the process and host its marker names."""

    name: str
    pid: int
    host: str


def marked_schemas(conn: psycopg.Connection[Any]) -> list[MarkedSchema]:
    """Every schema on the server that racetrack provably created (marker and matching name)."""
    rows = conn.execute(
        "SELECT nspname, pg_catalog.obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace ORDER BY nspname"
    ).fetchall()
    found = []
    for row in rows:
        name, comment = (row["nspname"], row["obj_description"]) if isinstance(row, dict) else row
        owner = marker_owner(comment)
        if owner is not None and re.fullmatch(rf"[a-z_][a-z0-9_]*_{owner[0]}_[0-9]+", name):
            found.append(MarkedSchema(name, owner[0], owner[1]))
    return found


def abandoned_schemas(conn: psycopg.Connection[Any], pids: set[int] | None = None) -> list[MarkedSchema]:
    """Marked schemas of this host whose process is gone (only those of ``pids`` when given)."""
    here = socket.gethostname()
    return [
        s for s in marked_schemas(conn)
        if s.host == here and (pids is None or s.pid in pids) and not process_alive(s.pid)
    ]


def drop_schema(conn: psycopg.Connection[Any], name: str) -> None:
    """End the sessions named after the schema, then drop it with everything in it."""
    conn.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE application_name = %s AND pid <> pg_catalog.pg_backend_pid()",
        [name],
    )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def drop_abandoned(dsn: str, pids: set[int] | None = None) -> list[MarkedSchema]:
    """Connect and drop what :func:`abandoned_schemas` finds; returns what was dropped."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        gone = abandoned_schemas(conn, pids)
        for schema in gone:
            drop_schema(conn, schema.name)
    return gone
