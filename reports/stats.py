"""The numbers a report shows: Wilson intervals and pandas aggregations of result rows.

Pure functions of a results frame (as :mod:`reports.inputs` reads it). Groups keep the order
strategies first appear in (a sweep's plan order), so tables read the same way every time.
May import pandas, numpy, ``sim.engine.scenario.base_name`` (a pure name rule) and
``sim.judge.rates.wilson``; nothing that runs a simulation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sim.engine.scenario import base_name
from sim.judge.invariants import INVARIANT_IDS
from sim.judge.rates import wilson

GROUP = ["scenario", "strategy", "backend"]


def with_base(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with ``scenario`` set to the base scenario and the variant kept in ``variant``
    (a report pools a grid's variants in its tables and splits them in its heatmaps)."""
    out = frame.copy()
    out["variant"] = out["scenario"]
    out["scenario"] = out["scenario"].map(base_name)
    return out


def violation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, strategy and backend: runs, runs violating anything, and per invariant the
    runs that violated it, each with its rate and 95% Wilson interval."""
    flags = frame[GROUP].copy()
    flags["any"] = frame["violating"].astype(int)
    for inv in INVARIANT_IDS:
        flags[inv] = (frame[inv] > 0).astype(int)
    grouped = flags.groupby(GROUP, sort=False)
    table = grouped.size().rename("runs").to_frame()
    for name in ("any", *INVARIANT_IDS):
        table[f"{name}:runs"] = grouped[name].sum()
    for name in ("any", *INVARIANT_IDS):
        k, n = table[f"{name}:runs"], table["runs"]
        table[f"{name}:rate"] = k / n
        bounds = [wilson(int(a), int(b)) for a, b in zip(k, n, strict=False)]
        table[f"{name}:lo"] = [b[0] for b in bounds]
        table[f"{name}:hi"] = [b[1] for b in bounds]
    return table.reset_index()


def _pooled(lists: pd.Series, q: float) -> float:
    values = [v for run in lists for v in run]
    return float(np.percentile(values, q)) if values else math.nan


def cost_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, strategy and backend: database work per job and how late the row shows the
    truth (visibility lag, pooled over every job of every run), plus |timestamp error|."""
    grouped = frame.groupby(GROUP, sort=False)
    sums = grouped[["jobs", "round_trips", "statements", "lock_waits", "lock_wait_ms"]].sum()
    table = pd.DataFrame(index=sums.index)
    table["runs"] = grouped.size()
    table["jobs"] = sums["jobs"]
    for column in ("round_trips", "statements", "lock_waits", "lock_wait_ms"):
        table[f"{column}_per_job"] = sums[column] / sums["jobs"]
    table["lag_p50_ms"] = grouped["visibility_lags_ms"].apply(lambda s: _pooled(s, 50))
    table["lag_p99_ms"] = grouped["visibility_lags_ms"].apply(lambda s: _pooled(s, 99))
    table["abs_error_p99_ms"] = grouped["timestamp_errors_ms"].apply(lambda s: _pooled(s.map(lambda r: [abs(v) for v in r]), 99))
    return table.reset_index()


def flat_params(params: dict[str, Any]) -> dict[str, Any]:
    """``{"job.duration": {"median_ms": 50, ...}}`` -> ``{"job.duration.median_ms": 50, ...}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            for field, inner in value.items():
                out[f"{key}.{field}"] = inner
        else:
            out[key] = value
    return out


def grid_axes(frame: pd.DataFrame) -> list[str]:
    """The swept parameters of one base scenario: the ones its variants' names give
    (``base[a=..,b=..]``, in that order), or without such names every parameter that varies."""
    distinct = {id(p): p for p in frame["params"]}.values()  # runs share their variant's dict (read_results)
    flat = pd.DataFrame([flat_params(p) for p in distinct])
    varying = [c for c in flat.columns if flat[c].astype(str).nunique() > 1]
    named: list[str] = []
    for variant in pd.unique(frame["variant"]):
        if "[" in variant:
            for part in variant.split("[", 1)[1].rstrip("]").split(","):
                key = part.split("=", 1)[0]
                if key in varying and key not in named:
                    named.append(key)
    # a grid names its axes; anything else that varies with them (a scaled p99) is not an axis
    return named or sorted(varying)


def grid_table(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Per strategy (and backend) and grid point: runs, violating runs, violation rate."""
    flat = pd.DataFrame([flat_params(p) for p in frame["params"]], index=frame.index)
    data = frame[["strategy", "backend", "violating"]].copy()
    for axis in axes:
        data[axis] = flat[axis]
    grouped = data.groupby(["strategy", "backend", *axes], sort=False)
    table = grouped.size().rename("runs").to_frame()
    table["violating_runs"] = grouped["violating"].sum().astype(int)
    table["rate"] = table["violating_runs"] / table["runs"]
    return table.reset_index()


def pooled_errors(frame: pd.DataFrame) -> dict[str, list[float]]:
    """Per strategy: every recorded-minus-true timestamp error (ms) of every run."""
    out: dict[str, list[float]] = {}
    for strategy, group in frame.groupby("strategy", sort=False):
        out[str(strategy)] = [v for run in group["timestamp_errors_ms"] for v in run]
    return out


def coverage_curves(frame: pd.DataFrame) -> dict[tuple[str, str], list[int]]:
    """Per (strategy, backend), in run order: the count of distinct conflict orders seen so far
    (the ``conflict_orders`` digests of each run; a run adds the ones no earlier run showed).
    Empty when the results file has no ``conflict_orders`` column (written before it existed)."""
    if "conflict_orders" not in frame.columns:
        return {}
    curves: dict[tuple[str, str], list[int]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    for strategy, backend, digests in zip(frame["strategy"], frame["backend"], frame["conflict_orders"], strict=True):
        key = (str(strategy), str(backend))
        known = seen.setdefault(key, set())
        if isinstance(digests, str) and digests:
            known.update(d for d in digests.split(",") if d)
        curves.setdefault(key, []).append(len(known))
    return curves


def last_new(curve: list[int]) -> int:
    """The run (1-based) that showed the last new conflict order (0: none ever)."""
    for i in range(len(curve) - 1, -1, -1):
        if i == 0 or curve[i] > curve[i - 1]:
            return i + 1 if curve[i] else 0
    return 0

