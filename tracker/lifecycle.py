"""Which of the tracked table's columns and statuses mean what to the invariants, and the rules a
scenario adds or switches off.

The lifecycle invariants (``sim.judge.invariants``) never name a column: they ask a
:class:`Lifecycle` which column holds the status, the attempt count and each timestamp, and which
status values report which true state of a job. The default is the seed's ``job_status`` table;
a scenario maps its own table in ``[table.columns]`` / ``[table.statuses]``, switches invariants
off in ``[invariants] off`` and adds row invariants (SQL boolean expressions, translated into
``tracker.table``'s expressions) in ``[invariants.rows]``.

A frozen, hashable record: it travels with a run's record into worker processes and traces.
Imports ``tracker.table`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from tracker.table import Expr

#: What each column role is for, in the order ``[table.columns]`` lists them.
COLUMN_ROLES: dict[str, str] = {
    "status": "the job's status (required)",
    "attempts": "the attempt count",
    "created_at": "when the row was created",
    "started_at": "when the first attempt started",
    "completed_at": "when the job completed",
    "failed_at": "when the job failed",
    "cancelled": "a boolean set when the job was removed",
    "cancelled_at": "when the job was removed",
}
#: The true states of a job in the order a job goes through them (``removed``, ``completed`` and
#: ``failed`` are the terminal ones), and what each means.
STATES: dict[str, str] = {
    "waiting": "added, waiting for a worker",
    "delayed": "waiting for its delay or a retry's backoff",
    "active": "an attempt is running",
    "completed": "completed (terminal)",
    "failed": "failed for good (terminal)",
    "removed": "removed by the producer (terminal)",
}
TERMINAL_STATES = ("completed", "failed", "removed")


@dataclass(frozen=True)
class RowInvariant:
    """A scenario's own rule over every committed row version: ``sql`` as written and its
    translation. Like a CHECK, a row version violates it only when it is false (NULL passes)."""

    name: str
    sql: str
    expr: Expr
    #: The columns it reads (a violation shows their values), and which of them are timestamps.
    reads: tuple[str, ...] = ()
    stamps: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"row:{self.name}"


@dataclass(frozen=True)
class Lifecycle:
    """Column roles (a column name; ``""``: the table has no such column, and the invariants skip
    what would read it), the statuses that report each true state, the invariants switched off
    and the scenario's row invariants."""

    status: str = "status"
    attempts: str = "attempts"
    created_at: str = "created_at"
    started_at: str = "started_at"
    completed_at: str = "completed_at"
    failed_at: str = "failed_at"
    cancelled: str = "cancelled"
    cancelled_at: str = "cancelled_at"
    waiting: tuple[str, ...] = ("pending", "waiting")
    delayed: tuple[str, ...] = ("delayed",)
    active: tuple[str, ...] = ("active",)
    completed: tuple[str, ...] = ("completed",)
    failed: tuple[str, ...] = ("failed",)
    #: Statuses a removed job may keep; the seed's table keeps a waiting one with ``cancelled`` set.
    removed: tuple[str, ...] = ("pending", "waiting", "delayed")
    off: tuple[str, ...] = ()
    rows: tuple[RowInvariant, ...] = ()

    def column(self, role: str) -> str | None:
        """The column playing ``role`` (None when the table has none)."""
        return getattr(self, role) or None

    def statuses(self, state: str) -> tuple[str, ...]:
        return tuple(getattr(self, state))

    def state_of(self) -> dict[str, str]:
        """Status -> the true state it reports. A status listed under two states reports the
        first (the seed's ``pending`` is a waiting status a removed job also keeps)."""
        out: dict[str, str] = {}
        for state in STATES:
            for status in self.statuses(state):
                out.setdefault(status, state)
        return out

    def terminal(self) -> tuple[str, ...]:
        """Statuses that report a terminal state (``completed``/``failed``, and ``removed``
        statuses that report nothing else)."""
        states = self.state_of()
        return tuple(s for s, state in states.items() if state in TERMINAL_STATES)

    @property
    def timestamps(self) -> tuple[str, ...]:
        return tuple(c for c in (self.created_at, self.started_at, self.completed_at, self.failed_at, self.cancelled_at) if c)

    @property
    def shown(self) -> tuple[str, ...]:
        """The columns a timeline shows for a row."""
        return tuple(c for c in (self.status, self.attempts, self.started_at, self.completed_at, self.failed_at, self.cancelled) if c)

    def judges(self, invariant: str) -> bool:
        return invariant not in self.off


DEFAULT_LIFECYCLE = Lifecycle()
ROLE_NAMES = tuple(COLUMN_ROLES)
STATE_NAMES = tuple(STATES)
assert {f.name for f in fields(Lifecycle)} >= set(ROLE_NAMES) | set(STATE_NAMES)
