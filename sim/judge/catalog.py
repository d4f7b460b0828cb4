"""The invariants' IDs and one-line summaries, in judging order, without their checkers: what
``racetrack invariants`` lists and output names, cheap to import (``sim.judge.invariants`` pairs
each with its checker).

Imports nothing."""

from __future__ import annotations

#: ID -> summary, in the order the checkers run and output lists them.
SUMMARIES: dict[str, str] = {
    "no-rejected-writes": "no tracker write was rejected by a constraint (the seed's symptom)",
    "ordered-timestamps": "every committed row version has created <= started <= completed/failed",
    "terminal-status": "once handlers settle, status is the job's real outcome",
    "monotonic-status": "status never moves backwards (completed -> active is a regression)",
    "first-start-kept": "started_at, once set, is never overwritten",
    "faithful-timestamps": "recorded times are within tolerance of the true times",
    "accurate-attempts": "attempts equals the attempts really started",
}
INVARIANT_IDS = tuple(SUMMARIES)
