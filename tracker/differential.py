"""Differential mode: every operation on the in-memory model and on PostgreSQL, compared.

:class:`DifferentialTracker` is a backend that forwards each call of the driver to both, compares
the answers (the row returned, the error's SQLSTATE and constraint, whether and on whom it
waits) and the final rows, and records every :class:`Disagreement`. The schedule follows the
model: the driver gets the model's answers, so a run under ``both`` is the same run as under
``memory``. When the two disagree on *waiting* the schedules can no longer be kept in step; from
then on PostgreSQL is detached for the rest of the run (the first disagreement is what matters).

Imports only ``tracker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracker.backend import Blocked, Outcome, TrackerBackend
from tracker.ops import DbOp, Row, describe


@dataclass(frozen=True)
class Disagreement:
    """The first place the two backends answered differently, in one line."""

    call: int  # 1-based count of execute/resume calls in the run
    session: str
    what: str
    memory: str
    postgres: str

    def line(self) -> str:
        return f"call {self.call} {self.session}: {self.what}: memory {self.memory}; postgres {self.postgres}"


def _show(outcome: Outcome) -> str:
    if isinstance(outcome, Blocked):
        return f"waits for {', '.join(outcome.blockers)}"
    if outcome.error is not None:
        return f"error {outcome.error.sqlstate} {outcome.error.constraint or ''}".rstrip()
    return "no row" if outcome.value is None else f"row {_row(outcome.value)}"


def _row(row: Row | None) -> str:
    return "none" if row is None else "{" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + "}"


def _key(outcome: Outcome) -> Any:
    if isinstance(outcome, Blocked):
        return ("blocked", outcome.blockers)
    return ("done", outcome.value, outcome.error.key() if outcome.error else None)


class DifferentialTracker:
    """Memory and PostgreSQL side by side. State: the two backends and what disagreed."""

    name = "both"

    def __init__(self, memory: TrackerBackend, postgres: TrackerBackend) -> None:
        self.memory = memory
        self.postgres = postgres
        self.disagreements: list[Disagreement] = []
        self._calls = 0
        self._detached = False
        self._pg_waiting: set[str] = set()

    def reset(self) -> None:
        self.memory.reset()
        self.postgres.reset()
        self.disagreements = []
        self._calls = 0
        self._detached = False
        self._pg_waiting.clear()

    def execute(self, session: str, op: DbOp, db_now_us: int) -> Outcome:
        mine = self.memory.execute(session, op, db_now_us)
        if not self._detached:
            theirs = self.postgres.execute(session, op, db_now_us)
            self._compare(session, describe(op), mine, theirs)
        return mine

    def resume(self, session: str) -> Outcome:
        mine = self.memory.resume(session)
        if not self._detached:
            if session in self._pg_waiting:
                theirs = self.postgres.resume(session)
                self._compare(session, "resume", mine, theirs)
            else:
                self._record(session, "resume", _show(mine), "was not waiting")
                self._detach()
        return mine

    def end_session(self, session: str) -> None:
        self.memory.end_session(session)
        if not self._detached:
            self.postgres.end_session(session)
        self._pg_waiting.discard(session)

    def rows(self) -> dict[str, Row]:
        mine = self.memory.rows()
        if not self._detached:
            theirs = self.postgres.rows()
            for job_id in sorted(set(mine) | set(theirs)):
                if mine.get(job_id) != theirs.get(job_id):
                    self._record("final rows", job_id, _row(mine.get(job_id)), _row(theirs.get(job_id)))
                    break
            else:
                if list(mine) != list(theirs):  # results must not depend on the backend, order included
                    self._record("final rows", "order", ", ".join(mine), ", ".join(theirs))
        return mine

    def row_verdicts(self, conditions: tuple[str, ...], rows: list[Row]) -> list[tuple[bool | None, ...]] | None:
        """PostgreSQL's verdicts on a scenario's row invariants (the runner compares them with
        the model's); None once the two backends parted (PostgreSQL's versions are not these)."""
        if self._detached:
            return None
        ask = getattr(self.postgres, "row_verdicts", None)
        return None if ask is None else ask(conditions, rows)

    def close(self) -> None:
        close = getattr(self.postgres, "close", None)
        if close is not None:
            close()

    # -- comparing ------------------------------------------------------------------------------

    def _compare(self, session: str, what: str, mine: Outcome, theirs: Outcome) -> None:
        self._calls += 1
        if isinstance(theirs, Blocked):
            self._pg_waiting.add(session)
        else:
            self._pg_waiting.discard(session)
        if _key(mine) == _key(theirs):
            return
        self._record(session, what, _show(mine), _show(theirs))
        if isinstance(mine, Blocked) != isinstance(theirs, Blocked):
            self._detach()  # one waits, the other does not: the schedules part here

    def _record(self, session: str, what: str, memory: str, postgres: str) -> None:
        self.disagreements.append(Disagreement(self._calls, session, what, memory, postgres))

    def _detach(self) -> None:
        self._detached = True
        for session in list(self._pg_waiting):
            self.postgres.end_session(session)
        self._pg_waiting.clear()
        # Sessions still open on PostgreSQL are ended by the next reset().

