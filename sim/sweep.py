"""Executing a sweep: the runs of a plan, each reduced to its result row, in plan order.

The command line builds the plan (``sim.runner.plan``) and hands it here; how the runs are
executed (one process today) is this module's business, not the CLI's.

A run whose server goes away (PostgreSQL backends) becomes an error row (``error`` set, nothing
judged) and the sweep goes on; rows already yielded are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sim.backends import BackendSpec, close_backend, open_backend, run_errors
from sim.runner import SweepItem, error_row, run_one


def execute(
    items: Iterable[SweepItem],
    spec: BackendSpec | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield each run's result row, in plan order."""
    spec = spec or BackendSpec()
    backend = open_backend(spec)
    spoilers = run_errors() if spec.kind != "memory" else ()
    try:
        for item in items:
            try:
                row = run_one(item.scenario, item.strategy, item.seed, backend).row()
            except spoilers as exc:
                row = error_row(item, backend.name, str(exc))
            if on_row is not None:
                on_row(row)
            yield row
    finally:
        close_backend(backend)
