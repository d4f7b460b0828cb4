"""Coverage you can read: the orders of conflicting operations a run took, and how fast new
ones still appear over many runs.

Two database operations *conflict* when different handlers (actors) run them on the same row and
at least one writes (INSERT, UPDATE, SELECT ... FOR UPDATE). A run's *conflict order* for one job
is the set of its conflicting pairs in the order they ran, each operation named by its actor's
role (``completed#1``: the event and invocation, not the job) and its position in that actor's
operations; two runs that order every conflicting pair alike are the same interleaving as far as
the row can tell (Mazurkiewicz traces). :func:`conflict_orders` gives one short digest per job;
:class:`Saturation` counts distinct ones over runs and remembers when the last new one appeared:
"clean after N runs" then reads "and K distinct conflict orders, the last new one at run M".

Imports ``sim.record.history`` and ``tracker.ops`` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sim.record.history import RunRecord
from tracker.ops import Insert, Rpc, Select, Update


def _writes(op: Any) -> bool:
    if isinstance(op, Rpc):
        return any(_writes(s) for s in op.body)
    return isinstance(op, (Insert, Update)) or (isinstance(op, Select) and op.for_update)


#: A step's place in execution order: its execution time, then its place in the history.
_in_execution_order = attrgetter("executed_us", "index")


def conflict_orders(record: RunRecord) -> tuple[str, ...]:
    """One 12-hex digest per job whose row saw conflicting operations, sorted (a run's coverage)."""
    rows: dict[str, list[tuple[str, str, bool]]] = {}
    nth: dict[str, int] = {}
    roles: dict[str, str] = {}
    steps = [s for s in record.steps if s.kind == "db"]
    steps.sort(key=_in_execution_order)
    for step in steps:
        op = step.op
        # a function's row: its first statement's (bodies touch one row)
        job = op.body[0].job_id if isinstance(op, Rpc) else getattr(op, "job_id", None)
        if job is None:
            continue
        actor = step.actor
        k = nth[actor] = nth.get(actor, 0) + 1
        role = roles.get(actor)
        if role is None:
            role = roles[actor] = actor.split(".", 1)[-1]
        rows.setdefault(job, []).append((actor, f"{role}/{k}", _writes(op)))
    digests = []
    for ops in rows.values():
        pairs = []
        for i, (actor, name, writes) in enumerate(ops):
            for other, other_name, other_writes in ops[i + 1 :]:
                if actor != other and (writes or other_writes):
                    pairs.append(f"{name}<{other_name}")
        pairs.sort()
        if pairs:
            digests.append(hashlib.sha256("|".join(pairs).encode()).hexdigest()[:12])
    return tuple(sorted(digests))


@dataclass
class Saturation:
    """Distinct conflict orders over runs, and the runs at which new ones appeared."""

    runs: int = 0
    seen: set[str] = field(default_factory=set)
    last_new_run: int = 0
    #: (run, distinct so far) at each run that added one: the saturation curve.
    curve: list[tuple[int, int]] = field(default_factory=list)

    def add(self, orders: tuple[str, ...] | list[str]) -> None:
        self.runs += 1
        new = set(orders) - self.seen
        if new:
            self.seen |= new
            self.last_new_run = self.runs
            self.curve.append((self.runs, len(self.seen)))

    def add_record(self, record: RunRecord) -> None:
        self.add(conflict_orders(record))

    @property
    def distinct(self) -> int:
        return len(self.seen)

    def to_data(self) -> dict[str, Any]:
        return {"runs": self.runs, "distinct": self.distinct, "last_new_run": self.last_new_run,
                "curve": [list(p) for p in self.curve]}

    def sentence(self) -> str:
        return sentence(self.to_data())


def sentence(data: dict[str, Any]) -> str:
    """``K distinct conflict orders in N runs, the last new one at run M`` (of ``to_data()``)."""
    if not data["distinct"]:
        return f"no conflicting operations in {data['runs']} runs"
    return (f"{data['distinct']} distinct conflict orders in {data['runs']} runs, "
            f"the last new one at run {data['last_new_run']}")
