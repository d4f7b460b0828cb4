"""``racetrack clean``: remove what a killed racetrack process left behind, and say what.

A process that exits drops its own schemas and stops its embedded server; one that is killed
(``kill -9``, a crashed machine's session) cannot. This command stops and deletes the embedded
servers whose owner is gone (``tracker.pg_server.reap_embedded_servers``) and, on the server
``--dsn`` / ``DATABASE_URL`` / ``PG*`` names, drops the schemas racetrack provably created whose
process is gone (``tracker.leftovers``). It never touches a schema without racetrack's marker,
from another host, or of a live process. One line per item removed.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("clean", help="remove the schemas and embedded servers that killed racetrack processes left")
    p.add_argument("--dsn", help="the PostgreSQL server to clean (default: DATABASE_URL, else PG* variables; "
                                 "without any, only embedded servers are cleaned)")
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=cmd_clean)


def cmd_clean(args: argparse.Namespace) -> int:
    import psycopg

    from tracker.leftovers import drop_abandoned
    from tracker.pg_server import (
        PG_ENV,
        ServerUnavailable,
        describe_server,
        mask_password,
        one_line,
        reap_embedded_servers,
    )

    removed: list[dict[str, Any]] = []
    for server in reap_embedded_servers():
        removed.append({"kind": "embedded-server", "owner_pid": server.owner, "postmaster_pid": server.postmaster,
                        "directory": server.directory})
    dsn = args.dsn or os.environ.get("DATABASE_URL")
    if dsn is None and any(os.environ.get(name) for name in PG_ENV):
        dsn = ""  # libpq reads the PG* variables itself
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
        if item["kind"] == "schema":
            print(f"dropped schema {item['name']} at {item['server']} (process {item['owner_pid']} is gone)")
        else:
            stopped = f"stopped its postmaster (pid {item['postmaster_pid']}), " if item["postmaster_pid"] else ""
            print(f"embedded PostgreSQL of process {item['owner_pid']} (gone): {stopped}deleted {item['directory']}")
    if not removed:
        print("clean: nothing left behind")
    return 0
