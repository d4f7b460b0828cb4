"""Which tracker backend a run uses, as a small picklable spec (so worker processes can open
their own): ``memory`` (the in-memory model), ``postgres`` (a real server, ``tracker.postgres``)
or ``both`` (differential: every operation on both, compared, ``tracker.differential``).

The server for ``postgres``/``both`` is chosen by ``tracker.pg_server.choose_server``: ``--dsn``,
else ``DATABASE_URL``, else libpq's ``PG*`` variables, else an embedded server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.runs.backend_kinds import KINDS as KINDS  # the names live there: the parser needs only them
from tracker.errors import UserError

if TYPE_CHECKING:  # the model is imported when a backend is opened: the command line's parser
    from tracker.backend import TrackerBackend  # needs only KINDS and BackendSpec
    from tracker.table import Table


class BackendUnavailable(UserError):
    """The backend cannot be opened (no server, bad credentials, no permission, bad schema
    name): one line for the user, password masked; the command exits 2."""


@dataclass(frozen=True)
class BackendSpec:
    kind: str = "memory"
    dsn: str | None = None
    schema: str | None = None


def open_backend(spec: BackendSpec, table: Table | None = None) -> TrackerBackend:
    """A ready backend for ``spec`` tracking ``table`` (None: the bundled one). The caller closes
    it (``close_backend``) when done."""
    from tracker.memory import MemoryTracker

    if spec.kind == "memory":
        return MemoryTracker(table)
    if spec.kind not in KINDS:
        raise ValueError(f"unknown backend {spec.kind!r}: use one of {', '.join(KINDS)}")
    from tracker.differential import DifferentialTracker
    from tracker.pg_server import ServerUnavailable, choose_server
    from tracker.postgres import PostgresTracker

    memory = MemoryTracker(table) if spec.kind == "both" else None  # an unmodelled table fails before any server work
    try:
        server = choose_server(spec.dsn)
        postgres = PostgresTracker(server.dsn, spec.schema, table=table)
    except (ServerUnavailable, ValueError) as exc:
        raise BackendUnavailable(str(exc)) from None
    if spec.kind == "postgres":
        return postgres
    assert memory is not None
    return DifferentialTracker(memory, postgres)


def run_errors() -> tuple[type[Exception], ...]:
    """Exceptions that spoil one run but not a sweep (the server went away mid-run)."""
    from tracker.pg_server import ServerUnavailable
    from tracker.postgres import ConnectionLost

    return (ConnectionLost, ServerUnavailable)


def disagreements(backend: TrackerBackend) -> list[str] | None:
    """The differential backend's disagreements of the last run, one line each (None otherwise)."""
    found = getattr(backend, "disagreements", None)
    return None if found is None else [d.line() for d in found]


def close_backend(backend: TrackerBackend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()
