"""A violation as a record, and its text.

Each checker in :mod:`sim.judge.invariants` yields a :class:`Violation` holding the values that
broke its invariant (``facts``: plain JSON data, so a trace stores it and reads it back);
:func:`explain` turns those values into the sentence every output shows. The sentences are
written here and nowhere else (Elle keeps ``explain-pair-data`` apart from
``render-explanation`` the same way).

May import: ``tracker.ops`` (timestamp formatting). No checker, no SimPy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracker.ops import format_timestamp

#: The one fact of a violation read from a trace written before violations were records: its
#: sentence, shown as it was recorded.
RECORDED_TEXT = "detail"


@dataclass(frozen=True)
class Violation:
    """One broken invariant for one job: which, where (``at_us``: true time when it happened,
    None when judged on the final rows; ``step``: the history step that caused it, when one did)
    and the values that broke it (``facts``, keyed per invariant: see :func:`explain`)."""

    invariant: str
    job: str
    at_us: int | None = None
    step: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def detail(self) -> str:
        """The sentence that says what broke (see :func:`explain`)."""
        return explain(self)

    def line(self) -> str:
        return f"{self.invariant}: {self.job}: {self.detail}"

    def to_data(self) -> dict[str, Any]:
        """The violation as a trace stores it: the record and, for readers of text, its sentence."""
        return {"invariant": self.invariant, "job": self.job, "detail": self.detail, "at_us": self.at_us,
                "step": self.step, "facts": dict(self.facts)}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Violation:
        """A violation from a trace; one written before ``facts`` existed keeps its sentence."""
        facts = data["facts"] if "facts" in data else {RECORDED_TEXT: str(data["detail"])}
        if not isinstance(facts, Mapping):
            raise TypeError("a violation's facts must be an object")
        return cls(str(data["invariant"]), str(data["job"]), data.get("at_us"), data.get("step"), dict(facts))


def _ms(us: int) -> str:
    return f"{us / 1000:.3f} ms"


def _ts(us: int | None) -> str:
    return "NULL" if us is None else format_timestamp(us)


def _at(v: Violation) -> str:
    assert v.at_us is not None, f"{v.invariant} is judged at a step, which has a time"
    return _ms(v.at_us)


def _no_rejected_writes(v: Violation, f: Mapping[str, Any]) -> str:
    return (
        f"{f['actor']} {f['operation']} rejected by {f['constraint']} at {_at(v)}"
        f" (row had status={f['row_status']}, started_at={_ts(f['row_started_at'])},"
        f" completed_at={_ts(f['row_completed_at'])})"
    )


def _ordered_timestamps(v: Violation, f: Mapping[str, Any]) -> str:
    return (
        f"committed by {f['actor']} at {_at(v)}: {f['later']}={_ts(f['later_value'])}"
        f" is before {f['earlier']}={_ts(f['earlier_value'])}"
    )


def _terminal_status(v: Violation, f: Mapping[str, Any]) -> str:
    if f["status"] is None:
        return f"no row, but the job {f['outcome']}"
    if f["status"] not in f["expected"]:
        return (
            f"final status is {f['status']!r} but the job {f['outcome']} at {_ms(f['outcome_us'])}"
            f" (expected {' or '.join(repr(a) for a in f['expected'])})"
        )
    return f"the job was removed at {_ms(f['outcome_us'])} but cancelled is false"


def _monotonic_status(v: Violation, f: Mapping[str, Any]) -> str:
    return (
        f"{f['actor']} moved status {f['from_status']!r} -> {f['to_status']!r} at {_at(v)}"
        f" (reports the state of {_ms(f['reports_us'])}, the row already showed {_ms(f['showed_us'])})"
    )


def _first_start_kept(v: Violation, f: Mapping[str, Any]) -> str:
    return f"{f['actor']} changed {f.get('column', 'started_at')} {_ts(f['first'])} -> {_ts(f['now'])} at {_at(v)}"


def _row_invariant(v: Violation, f: Mapping[str, Any]) -> str:
    values = ", ".join(f"{c}={'NULL' if x is None else x}" for c, x in f["values"].items())
    return f"committed by {f['actor']} at {_at(v)}: {f['sql']} is false" + (f" ({values})" if values else "")


def _faithful_timestamps(v: Violation, f: Mapping[str, Any]) -> str:
    problems = [
        f"{c['column']} is NULL" if c["recorded"] is None else f"{c['column']} off by {c['error_us'] / 1000:+.3f} ms"
        for c in f["columns"]
    ]
    return "; ".join(problems) + f" (tolerance {f['tolerance_us'] / 1000:.3f} ms)"


def _accurate_attempts(v: Violation, f: Mapping[str, Any]) -> str:
    return f"attempts is {f['recorded']} but {f['started']} attempt(s) started"


_TEXT: dict[str, Callable[[Violation, Mapping[str, Any]], str]] = {
    "no-rejected-writes": _no_rejected_writes,
    "ordered-timestamps": _ordered_timestamps,
    "terminal-status": _terminal_status,
    "monotonic-status": _monotonic_status,
    "first-start-kept": _first_start_kept,
    "faithful-timestamps": _faithful_timestamps,
    "accurate-attempts": _accurate_attempts,
}


def explain(v: Violation) -> str:
    """The sentence for a violation, from its facts (a recorded sentence is shown as it was)."""
    if RECORDED_TEXT in v.facts:
        return str(v.facts[RECORDED_TEXT])
    if v.invariant.startswith("row:"):  # a scenario's own row invariant
        return _row_invariant(v, v.facts)
    return _TEXT[v.invariant](v, v.facts)
