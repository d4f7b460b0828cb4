"""The contract between a driver and a tracker backend (the in-memory model or PostgreSQL).

A driver owns time and order; a backend only executes. The driver calls
:meth:`TrackerBackend.execute` at the instant a statement arrives at the server, with the
database clock's reading for ``now()``. The backend answers at once with :class:`Done` or, when
the statement must wait for a row lock, with :class:`Blocked` naming the sessions it waits for.
When one of those sessions ends its transaction the driver calls :meth:`TrackerBackend.resume`
and gets the same two kinds of answer. Nothing here knows about SimPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tracker.ops import DbOp, Row, TrackerError


@dataclass(frozen=True)
class Done:
    """The statement finished: ``value`` as the handler receives it, or ``error``."""

    value: Row | None = None
    error: TrackerError | None = None


@dataclass(frozen=True)
class Blocked:
    """The statement waits on a row lock held by these sessions' open transactions."""

    blockers: tuple[str, ...]


Outcome = Done | Blocked


class TrackerBackend(Protocol):
    """What a driver needs from a backend. One instance serves one run at a time."""

    name: str

    def reset(self) -> None:
        """Start a run: an empty table, no sessions."""

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        """Run ``op`` for ``session`` (a connection of its own) at database time ``db_now_us``."""

    def resume(self, session: str) -> Outcome:
        """Continue the statement of ``session`` that answered :class:`Blocked`."""

    def end_session(self, session: str) -> None:
        """The actor is done: roll back anything it left open and release its connection."""

    def rows(self) -> dict[str, Row]:
        """Every committed row, by job id."""
