"""Recording the shortest counterexamples of a sweep as trace files, for a report to draw.

After a sweep, per base scenario (a grid's variants pooled), strategy and backend that broke,
the violating run with the fewest database operations (ties: lowest seed, then plan order) is
run again from its seed and written as a ``racetrack-trace/1`` file. Runs are deterministic, so
the re-run is the run the sweep saw; this is the sim side of ``racetrack sweep --report``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sim.engine.scenario import base_name
from sim.runs.backends import BackendSpec, close_backend, open_backend
from sim.runs.runner import SweepItem, run_one
from sim.search import trace as traces


def shortest_violating(pairs: Iterable[tuple[SweepItem, dict[str, Any]]]) -> list[tuple[SweepItem, dict[str, Any]]]:
    """Per (base scenario, strategy, backend) the violating (item, row) with the fewest ops."""
    best: dict[tuple[str, str, str], tuple[SweepItem, dict[str, Any]]] = {}
    for item, row in pairs:
        if not row["violating"]:
            continue
        key = (base_name(row["scenario"]), row["strategy"], row["backend"])
        current = best.get(key)
        if current is None or (row["ops"], row["seed"]) < (current[1]["ops"], current[1]["seed"]):
            best[key] = (item, row)
    return list(best.values())


def trace_name(row: dict[str, Any]) -> str:
    """``seed-fast-jobs.naive.memory.seed3.json``: readable, and safe as a file name."""
    parts = (base_name(row["scenario"]), row["strategy"], row["backend"], f"seed{row['seed']}")
    return ".".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(p)) for p in parts) + ".json"


def save_shortest(
    items: list[SweepItem], rows: list[dict[str, Any]], directory: Path, spec: BackendSpec | None = None
) -> list[Path]:
    """Re-run and write the shortest counterexample of each broken pair; returns the files."""
    picks = shortest_violating(zip(items, rows, strict=True))
    written: list[Path] = []
    if not picks:
        return written
    backends: dict[Any, Any] = {}
    try:
        for item, row in picks:
            table = item.scenario.table
            if table not in backends:
                backends[table] = open_backend(spec or BackendSpec(), table)
            result = run_one(item.scenario, item.strategy, item.seed, backends[table])
            data = traces.to_data(
                result.record, result.violations, scenario=result.scenario, params=result.params,
                strategy=result.strategy, backend=result.backend, seed=result.seed,
            )
            path = directory / trace_name(row)
            traces.write(path, data)
            written.append(path)
    finally:
        for backend in backends.values():
            close_backend(backend)
    return written
