"""``racetrack clean``: remove what a killed racetrack process left behind, and say what.

A process that exits drops its own schemas and stops its embedded server; one that is killed
(``kill -9``, a crashed machine's session) cannot. This command stops and deletes the embedded
servers whose owner is gone (``tracker.pg_server.reap_embedded_servers``) and, on the server
``--dsn`` / ``DATABASE_URL`` / ``PG*`` names, drops the schemas racetrack provably created whose
process is gone (``tracker.leftovers``). On the Redis ``--redis`` / ``REDIS_URL`` names, it deletes
the keys of ``racetrack live`` runs whose owner marker names a process that is gone, and it stops
and deletes the embedded Redis servers of dead owners (``sim.live.leftovers``). It never touches a
schema without racetrack's marker, keys without the owner marker, anything from another host, or
anything of a live process. One line per item removed.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("clean", help="remove the schemas and embedded servers that killed racetrack processes left")
    from sim.cli.args import nonempty

    p.add_argument("--dsn", type=nonempty("--dsn", "a connection string"), help="the PostgreSQL server to clean (default: DATABASE_URL, else PG* variables; "
                                 "without any, only embedded servers are cleaned)")
    p.add_argument("--redis", metavar="URL", type=nonempty("--redis", "a Redis URL"), help="the Redis to clean of killed live runs' keys (default: REDIS_URL; "
                                                  "without either, no Redis keys are cleaned)")
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=cmd_clean)


def cmd_clean(args: argparse.Namespace) -> int:
    import psycopg

    from tracker.leftovers import drop_abandoned
    from tracker.pg_server import (
        PG_ENV,
        ServerUnavailable,
        check_dsn,
        describe_server,
        mask_password,
        one_line,
        reap_embedded_servers,
    )

    removed: list[dict[str, Any]] = []
    for server in reap_embedded_servers():
        removed.append({"kind": "embedded-server", "owner_pid": server.owner, "postmaster_pid": server.postmaster,
                        "directory": server.directory})
    removed.extend(_clean_live(args.redis or os.environ.get("REDIS_URL")))
    dsn = args.dsn or os.environ.get("DATABASE_URL")
    if dsn is None and any(os.environ.get(name) for name in PG_ENV):
        dsn = ""  # libpq reads the PG* variables itself
    if dsn:  # the same one line for a parameter libpq cannot use as every other command gives
        check_dsn(dsn, "--dsn" if args.dsn else "DATABASE_URL")
    if dsn is not None:
        try:
            dropped = drop_abandoned(dsn)
        except psycopg.Error as exc:
            raise ServerUnavailable(mask_password(f"cannot clean PostgreSQL at {describe_server(dsn)}: {one_line(str(exc))}", dsn)) from None
        where = describe_server(dsn)
        for schema in dropped:
            removed.append({"kind": "schema", "name": schema.name, "owner_pid": schema.pid, "server": where})
    if args.json:
        print(json.dumps({"removed": removed}))
        return 0
    for item in removed:
        if item["kind"] == "redis-keys":
            print(f"deleted {item['keys']} Redis key(s) under {item['prefix']} at {item['server']} "
                  f"(process {item['owner_pid']} is gone)")
        elif item["kind"] == "embedded-redis":
            stopped = f"stopped its server (pid {item['server_pid']}), " if item["server_pid"] else ""
            print(f"embedded Redis of process {item['owner_pid']} (gone): {stopped}deleted {', '.join(item['directories'])}")
        elif item["kind"] == "schema":
            print(f"dropped schema {item['name']} at {item['server']} (process {item['owner_pid']} is gone)")
        else:
            stopped = f"stopped its postmaster (pid {item['postmaster_pid']}), " if item["postmaster_pid"] else ""
            print(f"embedded PostgreSQL of process {item['owner_pid']} (gone): {stopped}deleted {item['directory']}")
    if not removed:
        print("clean: nothing left behind")
    return 0


def _clean_live(redis_url: str | None) -> list[dict[str, Any]]:
    """Embedded Redis servers of dead owners, and (given a Redis) the keys of killed live runs."""
    from tracker.errors import redact
    from tracker.pg_server import ServerUnavailable, one_line

    try:
        from sim.live.leftovers import drop_abandoned_keys, reap_embedded_redis
        from sim.live.redis_server import describe_redis
    except ImportError:  # the live extra is not installed: no live run can have left anything
        if redis_url:
            raise ServerUnavailable("clean --redis needs the redis package: pip install 'racetrack[live]'") from None
        return []
    removed: list[dict[str, Any]] = [
        {"kind": "embedded-redis", "owner_pid": r.owner, "server_pid": r.server, "directories": list(r.directories)}
        for r in reap_embedded_redis()
    ]
    if redis_url:
        try:
            dropped = drop_abandoned_keys(redis_url)
        except Exception as exc:  # refused, auth, a URL redis-py cannot parse: one line
            raise ServerUnavailable(redact(f"cannot clean Redis at {_where(redis_url, describe_redis)}: "
                                             f"{one_line(str(exc)) or type(exc).__name__}")) from None
        where = _where(redis_url, describe_redis)
        removed.extend({"kind": "redis-keys", "prefix": d.prefix, "keys": d.keys, "owner_pid": d.pid, "server": where}
                       for d in dropped)
    return removed


def _where(url: str, describe: Any) -> str:
    try:
        return str(describe(url))
    except ValueError:
        return "an unparsable URL"
