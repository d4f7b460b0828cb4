"""Reading a report's inputs: results files (Parquet or CSV, format ``racetrack-results/1``) of
sweeps and of live runs (a ``mode`` column; a file without it is simulated), every cell checked
against its column's kind; trace files (JSON: ``racetrack-trace/1`` run records as ``sweep
--report`` keeps them, or ``racetrack-trace/2`` traces as ``explore`` writes them) and
calibrations (the JSON object ``racetrack calibrate --json`` prints), checked before anything is
drawn.

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

import numpy as np
import pandas as pd

from sim.runs.columns import BY_NAME, MODES, REQUIRED_COLUMNS, RESULTS_FORMAT, ROW_INVARIANTS_COLUMN, Column
from sim.search.trace import READABLE_FORMATS, TRACE_FORMAT, TraceError
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
class CalibratedInvariant:
    """One invariant of a calibration: each side's violation rate (None: no runs) and 95% Wilson interval."""

    invariant: str
    sim_rate: float | None
    sim_ci: tuple[float, float]
    live_rate: float | None
    live_ci: tuple[float, float]
    consistent: bool
    paired: str = ""  # live seeds whose simulated twin gave the same verdict, "k/n"; empty when not given


@dataclass(frozen=True)
class CalibrationDoc:
    """One ``racetrack calibrate --json`` object, as the report shows it."""

    path: Path
    scenario: str
    strategy: str
    sim_runs: int
    live_runs: int
    consistent: bool
    invariants: tuple[CalibratedInvariant, ...]
    db_rtt: str = ""  # the matched network.db_rtt the simulated side ran with, when given


@dataclass(frozen=True)
class Inputs:
    results: pd.DataFrame | None  # None: only calibrations were given
    traces: tuple[TraceDoc, ...]
    sources: tuple[str, ...]
    unfinished: int = 0  # rows of runs that could not finish (an ``error``), left out of every table
    calibrations: tuple[CalibrationDoc, ...] = ()


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
    frame = frame.reset_index(drop=True)  # row i of the file is label i, for the messages below
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
    frame = frame.assign(mode=_modes(path, frame))
    unfinished = 0
    if "error" in frame.columns:  # runs that could not finish (the server went away) judged nothing
        failed = frame["error"].notna() & (frame["error"].astype(str) != "")  # CSV reads an empty column as NaN
        if failed.all():
            first = str(frame.loc[failed, "error"].iloc[0])
            raise ReportInputError(f"{path}: no run in it finished (first error: {first})")
        unfinished = int(failed.sum())
        frame = frame[~failed]
    _check_cells(path, frame)
    typed = _typed(path, frame)
    typed.attrs["unfinished"] = unfinished
    return typed


def _row(frame: pd.DataFrame, label: Any, column: str) -> str:
    """``row 3 (naive, seed 2)``: where a cell is, counted from 1 after the header, with the
    run it belongs to when the row says so (not from the cell being refused)."""
    who = []
    strategy = frame.at[label, "strategy"] if "strategy" in frame.columns else None
    if column != "strategy" and isinstance(strategy, str) and strategy:
        who.append(strategy)
    seed = pd.to_numeric(pd.Series([frame.at[label, "seed"]]), errors="coerce").iloc[0] if "seed" in frame.columns else None
    if column != "seed" and seed is not None and pd.notna(seed) and float(seed).is_integer():
        who.append(f"seed {int(seed)}")
    return f"row {int(label) + 1}" + (f" ({', '.join(who)})" if who else "")


def _refused(path: Path, frame: pd.DataFrame, label: Any, column: Column, value: Any) -> ReportInputError:
    """One line: the file, the column, the row, the value and what the column allows."""
    if _empty(value):
        shown = "is empty" + (" (the column is required)" if column.required else "")
    else:
        shown = f"holds {value!r:.40}" if isinstance(value, str) else f"holds {value}"
    return ReportInputError(f"{path}: column '{column.name}' in {_row(frame, label, column.name)} {shown}; "
                            f"allowed: {column.allowed}")


def _empty(value: Any) -> bool:
    """A null or an empty text (never compared as ``value == ""``: a Parquet cell may be an array)."""
    return (value is None or value is pd.NA or (isinstance(value, str) and value == "")
            or (isinstance(value, float) and np.isnan(value)))


#: The booleans a cell may hold as text, in any case: the sweep's CSV writes ``True``/``False``.
#: Nothing else is read as a boolean (``" True"``, ``"1"``, ``"yes"`` are refused, never truthy).
BOOLEANS = {"true": True, "false": False}


def _boolean(value: Any) -> bool | None:
    """The boolean a cell holds, or None when it holds none (a text other than true/false in any
    case, a number, a null)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return BOOLEANS.get(value.lower())
    return None


def _booleans(cells: pd.Series) -> pd.Series:
    """A boolean column as numpy bools, each cell read by :func:`_boolean` (never ``astype(bool)``
    on text, where ``"False"`` is true). Its cells were checked: one that holds no boolean here is
    a bug."""
    if pd.api.types.is_bool_dtype(cells.dtype) and not cells.isna().any():
        return cells.astype(bool)
    values = [_boolean(v) for v in cells]
    if any(v is None for v in values):
        raise RuntimeError(f"column {cells.name!r} holds a cell that is no boolean after its cells were checked")
    return pd.Series(values, index=cells.index, dtype=bool, name=cells.name)


def _flags(cells: pd.Series, test: Any) -> pd.Series:
    """Per row, ``test(cell)`` as a boolean Series."""
    return pd.Series([bool(test(v)) for v in cells], index=cells.index, dtype=bool)


#: The largest whole number an int64 column holds (a bigger one cannot be counted).
INT64_MAX = 2**63 - 1


def _check_cells(path: Path, frame: pd.DataFrame) -> None:
    """Every declared column the file has, cell by cell, against its kind (docs/results.md):
    read as it comes, a boolean ``maybe`` would count as true, a blank as false and a count of -5
    would be summed, and the report would say so with confidence. The first cell that is not
    what its column allows is refused, naming it. ``format`` and ``mode`` are checked with their
    own words; JSON columns where they are parsed (:func:`_typed`)."""
    for name in frame.columns:
        column = ROW_INVARIANTS_COLUMN if name == ROW_INVARIANTS_COLUMN.name else BY_NAME.get(name)
        if column is None or name in ("format", "mode") or column.json:
            continue
        bad = _bad_cells(frame[name], column)
        if bad.any():
            label = bad.idxmax()  # the first refused row
            raise _refused(path, frame, label, column, frame.at[label, name])


def _bad_cells(cells: pd.Series, column: Column) -> pd.Series:
    """Per row: whether the cell is not what ``column`` allows (vectorized: files hold millions of runs)."""
    empty = cells.isna()
    if not (pd.api.types.is_numeric_dtype(cells.dtype) or pd.api.types.is_bool_dtype(cells.dtype)):
        # text: pandas' ``str`` dtype (Parquet strings, CSV text) as much as ``object``
        empty |= _flags(cells, lambda v: isinstance(v, str) and v == "")
    missing = empty if column.required else pd.Series(False, index=cells.index)
    if column.arrow == "bool":
        if pd.api.types.is_bool_dtype(cells.dtype):
            return missing
        return (_flags(cells, lambda v: _boolean(v) is None) & ~empty) | missing
    if column.arrow in ("int64", "float64"):
        if pd.api.types.is_bool_dtype(cells.dtype):
            return ~empty | missing  # True is no count
        numbers = cells if pd.api.types.is_numeric_dtype(cells.dtype) else pd.to_numeric(cells, errors="coerce")
        numbers = numbers.astype(float)
        bad = (numbers.isna() & ~empty) | (numbers.notna() & ~np.isfinite(numbers.fillna(0)))
        if column.arrow == "int64":
            bad |= numbers.notna() & ((numbers != np.floor(numbers)) | (numbers.abs() > INT64_MAX))
        if column.minimum is not None:
            bad |= numbers < column.minimum
        return bad | missing
    if column.choices:
        return ~cells.isin(column.choices) & ~(empty & ~column.required)
    if column.filled:
        return empty
    return pd.Series(False, index=cells.index)


def _modes(path: Path, frame: pd.DataFrame) -> pd.Series:
    """The ``mode`` of every row: as written (``sim`` or ``live``), ``sim`` where the file has no
    such column (a sweep's) or leaves it empty."""
    if "mode" not in frame.columns:
        return pd.Series("sim", index=frame.index)
    modes = frame["mode"].map(lambda v: "sim" if pd.isna(v) or v == "" else str(v))
    bad = ~modes.isin(MODES)
    if bad.any():
        label = bad.idxmax()
        raise ReportInputError(f"{path}: column 'mode' in {_row(frame, label, 'mode')} holds {modes[label]!r:.40}; "
                               f"allowed: {', '.join(MODES)} (empty means sim)")
    return modes


def _typed(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its columns typed as declared (cells already checked by :func:`_check_cells`;
    a JSON cell that does not parse is refused here, naming it)."""
    out = frame.copy()
    for column in ("scenario", "strategy", "backend"):
        out[column] = out[column].astype(str)
    out["first_violation"] = out["first_violation"].map(lambda v: "" if pd.isna(v) else str(v))
    for column in REQUIRED_COLUMNS:  # the numbers, typed as declared
        try:
            if BY_NAME[column].arrow == "int64":
                out[column] = pd.to_numeric(out[column], errors="raise").astype("int64")
            elif BY_NAME[column].arrow == "float64":
                out[column] = pd.to_numeric(out[column], errors="raise").astype(float)
        except (ValueError, TypeError, OverflowError) as exc:  # past _check_cells only a number int64 cannot hold
            raise ReportInputError(f"{path}: column '{column}' holds a value of the wrong kind ({exc}); "
                                   f"allowed: {BY_NAME[column].allowed}") from None
    out["violating"] = _booleans(out["violating"])  # text (CSV, a Parquet string column) read as written
    for column in ("visibility_lags_ms", "timestamp_errors_ms"):
        out[column] = _parsed(path, frame, column, _json_list)
    # Every run of a scenario variant has the same params: parsed once per distinct text, the
    # runs share one dict (read-only), and grid_axes looks at each distinct one once.
    out["params"] = _parsed(path, frame, "params", _json_object, shared=True)
    if ROW_INVARIANTS_COLUMN.name in out.columns:  # not shown, but a report must not take a broken file
        _parsed(path, frame, ROW_INVARIANTS_COLUMN.name, _counts_object, shared=True)
    return out


def _parsed(path: Path, frame: pd.DataFrame, name: str, parse: Any, shared: bool = False) -> pd.Series:
    """A JSON column parsed cell by cell (``shared``: once per distinct text, the rows sharing
    the result), the first cell that does not parse refused naming its row."""
    column = ROW_INVARIANTS_COLUMN if name == ROW_INVARIANTS_COLUMN.name else BY_NAME[name]
    cache: dict[str, Any] = {}
    values = []
    for label, text in frame[name].items():
        if shared and isinstance(text, str) and text in cache:
            values.append(cache[text])
            continue
        if _empty(text):
            if column.required:  # "[]" and "{}" are what a sweep writes for none; empty is no JSON
                raise _refused(path, frame, label, column, text)
            values.append(parse(""))
            continue
        try:
            if not isinstance(text, str):  # a Parquet column of another type (a list, a number)
                raise ValueError(f"not JSON text but {type(text).__name__}")
            value = parse(text)
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            raise ReportInputError(f"{path}: column '{name}' in {_row(frame, label, name)} holds {text!r:.40} "
                                   f"({exc}); allowed: {column.allowed}") from None
        if shared:
            cache[text] = value
        values.append(value)
    return pd.Series(values, index=frame.index, dtype=object)


def _json_list(text: Any) -> list[float]:
    value = json.loads(text) if isinstance(text, str) and text else []
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {text!r:.40}")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):  # float("1"), float(True) would pass
        raise ValueError("every item must be a number")
    return [float(v) for v in value]


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(text) if isinstance(text, str) and text else {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {text!r:.40}")
    return value


def _counts_object(text: Any) -> dict[str, Any]:
    """``row_invariants``: a JSON object of counts (empty: no row invariant in that scenario)."""
    value = _json_object(text)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value.values()):
        raise ValueError("a count per row invariant must be a whole number >= 0")
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


CALIBRATION_HINT = "as 'racetrack calibrate --json' prints it"


def _is_calibration(path: Path) -> bool:
    """A JSON object with ``invariants`` and no trace format: calibrate output, not a trace."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # the trace reader says what is wrong with it
    return isinstance(data, dict) and "invariants" in data and data.get("format") != TRACE_FORMAT


def _field(path: Path, data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    if name not in data:
        raise ReportInputError(f"{path}: calibration without field '{where}{name}' ({CALIBRATION_HINT})")
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # JSON true is no count
        allowed = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ReportInputError(f"{path}: calibration field '{where}{name}' is {value!r:.40}; expected {allowed}")
    return value


def _share(path: Path, data: dict[str, Any], name: str, where: str, nullable: bool) -> float | None:
    value = _field(path, data, name, (int, float, type(None)) if nullable else (int, float), where)
    if value is not None and not 0 <= value <= 1:
        raise ReportInputError(f"{path}: calibration field '{where}{name}' is {value!r}; expected a share from 0 to 1")
    return None if value is None else float(value)


def _interval(path: Path, data: dict[str, Any], name: str, where: str) -> tuple[float, float]:
    value = _field(path, data, name, list, where)
    if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 for v in value) \
            or value[0] > value[1]:
        raise ReportInputError(f"{path}: calibration field '{where}{name}' is {value!r:.40}; expected [low, high] within 0..1")
    return float(value[0]), float(value[1])


def read_calibration(path: Path) -> CalibrationDoc:
    """One calibrate output, every field the report shows checked; or ReportInputError."""
    data = json.loads(path.read_text(encoding="utf-8"))
    runs = _field(path, data, "runs", dict)
    counts = {side: _field(path, runs, side, int, "runs.") for side in ("sim", "live")}
    if any(n < 0 for n in counts.values()):
        raise ReportInputError(f"{path}: calibration field 'runs' is {runs!r:.60}; run counts cannot be negative")
    paired = data.get("paired") if isinstance(data.get("paired"), dict) else {}
    rows = []
    for i, item in enumerate(_field(path, data, "invariants", list)):
        where = f"invariants[{i}]."
        if not isinstance(item, dict):
            raise ReportInputError(f"{path}: calibration field 'invariants[{i}]' is {item!r:.40}; expected an object")
        name = _field(path, item, "invariant", str, where)
        rows.append(CalibratedInvariant(
            name, _share(path, item, "sim_rate", where, True), _interval(path, item, "sim_ci", where),
            _share(path, item, "live_rate", where, True), _interval(path, item, "live_ci", where),
            _field(path, item, "consistent", bool, where), str(paired.get(name, "")),
        ))
    matched = data.get("matched") if isinstance(data.get("matched"), dict) else {}
    rtt = matched.get("network.db_rtt")
    return CalibrationDoc(
        path, _field(path, data, "scenario", str), _field(path, data, "strategy", str), counts["sim"], counts["live"],
        _field(path, data, "consistent", bool), tuple(rows),
        json.dumps(rtt, sort_keys=True) if isinstance(rtt, dict) else "",
    )


def read_inputs(paths: list[Path]) -> Inputs:
    """Every results file concatenated (in the order given), every trace and every calibration;
    at least one results file or calibration is needed."""
    frames, traces, calibrations = [], [], []
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:  # counted twice, every rate and cost would be skewed
            raise ReportInputError(f"{path}: given twice")
        seen.add(path.resolve())
        if path.suffix in (".parquet", ".csv"):
            frames.append(read_results(path))
        elif path.suffix == ".json" and _is_calibration(path):
            calibrations.append(read_calibration(path))
        elif path.suffix == ".json":
            traces.append(read_trace_doc(path))
        elif not path.exists():
            raise ReportInputError(f"{path}: no such file")
        else:
            raise ReportInputError(
                f"{path}: not a report input; give results files (.parquet, .csv), traces (.json, {' or '.join(READABLE_FORMATS)}) "
                "and calibrations (.json from 'racetrack calibrate --out')"
            )
    if not frames and not calibrations:
        raise ReportInputError(
            "no results file given: a report needs at least one .parquet or .csv from 'racetrack sweep --out' or "
            "'racetrack live --out', or a calibration from 'racetrack calibrate --out'"
        )
    unfinished = sum(int(f.attrs.get("unfinished", 0)) for f in frames)
    results = pd.concat(frames, ignore_index=True) if frames else None
    return Inputs(results, tuple(traces), tuple(str(p) for p in paths), unfinished, tuple(calibrations))
