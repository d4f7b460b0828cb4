"""Reading a report's inputs: sweep results files (Parquet or CSV, format ``racetrack-results/1``)
and trace files (JSON, format ``racetrack-trace/1``), checked before anything is drawn.

May import pandas, ``sim.runs.columns`` (the declared columns) and ``sim.search.trace`` (a
reader); never SimPy, ``sim.engine.world`` or ``sim.runs.runner``
(a report reads what runs wrote, it does not run them). Bad input raises :class:`ReportInputError`
whose message is the one line the user sees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.runs.columns import BY_NAME, REQUIRED_COLUMNS, RESULTS_FORMAT
from sim.search.trace import TRACE_FORMAT, TraceError
from sim.search.trace import read as read_trace
from tracker.errors import UserError


class ReportInputError(UserError, ValueError):
    """A file a report cannot use; ``str()`` is one line naming the file and the problem."""


@dataclass(frozen=True)
class TraceDoc:
    """One trace file: who ran, how many database operations, and the document itself."""

    path: Path
    scenario: str
    strategy: str
    backend: str
    seed: int
    ops: int
    violations: tuple[dict[str, Any], ...]
    data: dict[str, Any]


@dataclass(frozen=True)
class Inputs:
    results: pd.DataFrame
    traces: tuple[TraceDoc, ...]
    sources: tuple[str, ...]
    unfinished: int = 0  # rows of runs that could not finish (an ``error``), left out of every table


def read_results(path: Path) -> pd.DataFrame:
    """One results file as a frame with every required column, typed; or ReportInputError."""
    if not path.is_file():
        raise ReportInputError(f"{path}: no such results file")
    if path.stat().st_size == 0:
        raise ReportInputError(f"{path}: empty file (no runs in it)")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pyarrow and the CSV parser raise many kinds; all mean "not readable"
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportInputError(f"{path}: not a readable {kind} results file ({reason})") from None
    if "format" not in frame.columns:
        raise ReportInputError(f"{path}: not a racetrack results file (no 'format' column; expected {RESULTS_FORMAT})")
    if frame.empty:
        raise ReportInputError(f"{path}: no runs in it (a header but no rows)")
    formats = sorted(set(frame["format"].astype(str)))
    if formats != [RESULTS_FORMAT]:
        other = next(f for f in formats if f != RESULTS_FORMAT)
        raise ReportInputError(f"{path}: results format {other!r} is not supported (this racetrack reads {RESULTS_FORMAT!r})")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportInputError(f"{path}: {RESULTS_FORMAT} file without column(s) {', '.join(missing)}")
    unfinished = 0
    if "error" in frame.columns:  # runs that could not finish (the server went away) judged nothing
        failed = frame["error"].notna() & (frame["error"].astype(str) != "")  # CSV reads an empty column as NaN
        if failed.all():
            first = str(frame.loc[failed, "error"].iloc[0])
            raise ReportInputError(f"{path}: no run in it finished (first error: {first})")
        unfinished = int(failed.sum())
        frame = frame[~failed]
    try:
        typed = _typed(frame)
    except (ValueError, TypeError) as exc:
        raise ReportInputError(f"{path}: a column holds a value of the wrong kind ({exc})") from None
    typed.attrs["unfinished"] = unfinished
    return typed


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in ("scenario", "strategy", "backend"):
        out[column] = out[column].astype(str)
    out["first_violation"] = out["first_violation"].map(lambda v: "" if pd.isna(v) else str(v))
    for column in REQUIRED_COLUMNS:  # the numbers, typed as declared
        if BY_NAME[column].arrow == "int64":
            out[column] = pd.to_numeric(out[column], errors="raise").astype("int64")
        elif BY_NAME[column].arrow == "float64":
            out[column] = pd.to_numeric(out[column], errors="raise").astype(float)
    violating = out["violating"]
    if violating.dtype == object:  # CSV keeps True/False as text when a column mixes kinds
        violating = violating.map(lambda v: str(v).strip().lower() in ("true", "1"))
    out["violating"] = violating.astype(bool)
    for column in ("visibility_lags_ms", "timestamp_errors_ms"):
        out[column] = out[column].map(_json_list)
    out["params"] = out["params"].map(_json_object)
    return out


def _json_list(text: Any) -> list[float]:
    value = json.loads(text) if isinstance(text, str) and text else []
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {text!r:.40}")
    return [float(v) for v in value]


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) and text else {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text!r:.40}")
    return value


def read_trace_doc(path: Path) -> TraceDoc:
    try:
        data = read_trace(path)
    except TraceError as exc:
        raise ReportInputError(str(exc)) from None
    return TraceDoc(
        path=path,
        scenario=str(data["scenario"]),
        strategy=str(data["strategy"]),
        backend=str(data["backend"]),
        seed=int(data["seed"]),
        ops=sum(1 for s in data["steps"] if s["kind"] == "db"),
        violations=tuple(data["violations"]),
        data=data,
    )


def read_inputs(paths: list[Path]) -> Inputs:
    """Every results file concatenated (in the order given) and every trace; at least one
    results file is needed."""
    frames, traces = [], []
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:  # counted twice, every rate and cost would be skewed
            raise ReportInputError(f"{path}: given twice")
        seen.add(path.resolve())
        if path.suffix in (".parquet", ".csv"):
            frames.append(read_results(path))
        elif path.suffix == ".json":
            traces.append(read_trace_doc(path))
        elif not path.exists():
            raise ReportInputError(f"{path}: no such file")
        else:
            raise ReportInputError(
                f"{path}: not a report input; give results files (.parquet, .csv) and traces (.json, {TRACE_FORMAT})"
            )
    if not frames:
        raise ReportInputError("no results file given: a report needs at least one .parquet or .csv from 'racetrack sweep --out'")
    unfinished = sum(int(f.attrs.get("unfinished", 0)) for f in frames)
    results = pd.concat(frames, ignore_index=True)
    return Inputs(results, tuple(traces), tuple(str(p) for p in paths), unfinished)
