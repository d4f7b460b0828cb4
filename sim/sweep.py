"""Executing a sweep: the runs of a plan, each reduced to its result row, in plan order.

The command line builds the plan (``sim.runner.plan``) and hands it here; how the runs are
executed (one process today) is this module's business, not the CLI's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sim.backends import BackendSpec, close_backend, open_backend
from sim.runner import SweepItem, run_one


def execute(
    items: Iterable[SweepItem],
    spec: BackendSpec | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each run's result row, in plan order."""
    backend = open_backend(spec or BackendSpec())
    try:
        for item in items:
            row = run_one(item.scenario, item.strategy, item.seed, backend).row()
            if on_row is not None:
                on_row(row)
            yield row
    finally:
        close_backend(backend)
