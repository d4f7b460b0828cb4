"""Trace files: one run, written as JSON, read back exactly, and replayable.

A trace holds what a run did and what it meant: the scenario (name and every parameter), the
strategy, backend and seed, every step of the history (operations encoded with their
expressions), the ground truth, the final rows and the violations. Format ``racetrack-trace/2``
adds what a replay needs: the schedule (the order in which the database operations reached the
server, one actor name per operation), the actors (job view, settings, host, start time,
latencies) and the hosts' clocks, and, when the run tracked a table of its own (``table.sql``),
that table's SQL (``table``), so that a replay runs on the table the trace was found on. Each
violation is stored as its record (``facts``: the values that broke the invariant) and its
sentence (``detail``); a trace written before violations had facts still reads, its violations
keeping their sentence. A plain run record (:func:`to_data` alone) is still written and read as
``racetrack-trace/1``; it cannot be replayed. Documented in docs/traces.md; readers refuse other
versions, and a trace missing a required field, with :class:`TraceError`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sim.engine.interpreter import actor_of
from sim.engine.limit_defaults import MAX_SEED
from sim.engine.ordered import ActorSpec, Case, require_modelled
from sim.engine.scenario import PARAM_BY_PATH, ScenarioError, lifecycle_for, validate_value
from sim.judge.invariants import INVARIANT_IDS
from sim.judge.violation import Violation
from sim.record.clocks import Clock
from sim.record.history import Attempt, JobTruth, RunRecord, Step
from tracker import ops
from tracker.errors import UserError
from tracker.lifecycle import DEFAULT_LIFECYCLE, Lifecycle
from tracker.strategies import HandlerContext, JobView
from tracker.table import Table

#: A replayable trace (a counterexample): a run plus its schedule, actors and clocks.
TRACE_FORMAT = "racetrack-trace/2"
#: One run's record without what a replay needs (what ``to_data`` alone writes, e.g. the
#: counterexamples ``sweep --report`` records): read by reports, not replayable.
RUN_FORMAT = "racetrack-trace/1"
#: Every version this racetrack reads; only ``TRACE_FORMAT`` can be replayed.
READABLE_FORMATS = (RUN_FORMAT, TRACE_FORMAT)


class TraceError(UserError, ValueError):
    """A trace that cannot be read; ``str()`` is one line naming the file and the problem."""


# --- operations and expressions <-> JSON -------------------------------------------------------

_EXPR_TYPES = {"Col": ops.Col, "DbNow": ops.DbNow, "Greatest": ops.Greatest, "Least": ops.Least, "Coalesce": ops.Coalesce}
_OP_TYPES = {
    "Select": ops.Select, "Insert": ops.Insert, "Update": ops.Update, "Begin": ops.Begin,
    "Commit": ops.Commit, "Rollback": ops.Rollback, "Sleep": ops.Sleep, "ReadClock": ops.ReadClock,
    "Rpc": ops.Rpc,
}


def encode_value(value: Any) -> Any:
    """A value or expression as JSON data; expressions become ``{"$": type, ...}``."""
    if isinstance(value, ops.Col):
        return {"$": "Col", "name": value.name}
    if isinstance(value, ops.DbNow):
        return {"$": "DbNow"}
    if isinstance(value, ops.Excluded):
        return {"$": "Excluded", "name": value.name}
    if isinstance(value, (ops.Greatest, ops.Least, ops.Coalesce)):
        return {"$": type(value).__name__, "args": [encode_value(a) for a in value.args]}
    if isinstance(value, ops.Case):
        return {"$": "Case", "when": [encode_cond(c) for c in value.when],
                "then": encode_value(value.then), "otherwise": encode_value(value.otherwise)}
    if isinstance(value, tuple):
        return {"$": "tuple", "items": [encode_value(v) for v in value]}
    if isinstance(value, dict):
        return {"$": "json", "value": value}
    return value


def decode_value(data: Any) -> Any:
    if isinstance(data, dict):
        kind = data.get("$")
        if kind == "Col":
            return ops.Col(data["name"])
        if kind == "DbNow":
            return ops.DbNow()
        if kind == "Excluded":
            return ops.Excluded(data["name"])
        if kind in ("Greatest", "Least", "Coalesce"):
            return _EXPR_TYPES[kind](*(decode_value(a) for a in data["args"]))
        if kind == "Case":
            return ops.Case(tuple(decode_cond(c) for c in data["when"]), decode_value(data["then"]),
                            decode_value(data["otherwise"]))
        if kind == "tuple":
            return tuple(decode_value(v) for v in data["items"])
        if kind == "json":
            return data["value"]
        raise ValueError(f"unknown value tag {kind!r}")
    return data


def encode_cond(cond: ops.Cond) -> dict[str, Any]:
    return {"column": cond.column, "op": cond.op, "value": encode_value(cond.value)}


def decode_cond(data: dict[str, Any]) -> ops.Cond:
    return ops.Cond(data["column"], data["op"], decode_value(data["value"]))


def encode_op(op: ops.Op | None) -> dict[str, Any] | None:
    """An operation as JSON; SET and VALUES are ``[column, value]`` pairs, keeping their order."""
    if op is None:
        return None
    out: dict[str, Any] = {"type": type(op).__name__}
    if isinstance(op, ops.Select):
        out.update(job_id=op.job_id, for_update=op.for_update)
    elif isinstance(op, ops.Insert):
        out.update(job_id=op.job_id, values=[[k, encode_value(v)] for k, v in op.values.items()],
                   on_conflict_do_nothing=op.on_conflict_do_nothing)
        if op.on_conflict_update is not None:  # only an upsert has these keys: older traces stay as they were
            out.update(on_conflict_update=[[k, encode_value(v)] for k, v in op.on_conflict_update.items()],
                       conflict_where=[encode_cond(c) for c in op.conflict_where])
    elif isinstance(op, ops.Update):
        out.update(job_id=op.job_id, set=[[k, encode_value(v)] for k, v in op.set.items()],
                   where=[encode_cond(c) for c in op.where])
    elif isinstance(op, ops.Sleep):
        out.update(ms=op.ms)
    elif isinstance(op, ops.Rpc):
        out.update(name=op.name, body=[encode_op(s) for s in op.body])
    return out


def decode_op(data: dict[str, Any] | None) -> ops.Op | None:
    if data is None:
        return None
    kind = data["type"]
    if kind not in _OP_TYPES:
        raise ValueError(f"unknown operation type {kind!r}")
    if kind == "Select":
        return ops.Select(data["job_id"], bool(data["for_update"]))
    if kind == "Insert":
        update = data.get("on_conflict_update")
        return ops.Insert(data["job_id"], {k: decode_value(v) for k, v in data["values"]},
                          bool(data["on_conflict_do_nothing"]),
                          None if update is None else {k: decode_value(v) for k, v in update},
                          tuple(decode_cond(c) for c in data.get("conflict_where", ())))
    if kind == "Update":
        return ops.Update(data["job_id"], {k: decode_value(v) for k, v in data["set"]},
                          tuple(decode_cond(c) for c in data["where"]))
    if kind == "Sleep":
        return ops.Sleep(float(data["ms"]))
    if kind == "Rpc":
        return ops.Rpc(str(data["name"]), tuple(decode_op(s) for s in data["body"]))  # type: ignore[misc]
    return _OP_TYPES[kind]()  # type: ignore[no-any-return]


# --- runs <-> JSON ------------------------------------------------------------------------------


def _step_data(step: Step) -> dict[str, Any]:
    data = asdict(step)
    data["op"] = encode_op(step.op)
    data["blocked_by"] = list(step.blocked_by)
    data["error"] = list(step.error) if step.error else None
    data["committed"] = list(step.committed)
    return data


def _step(data: dict[str, Any]) -> Step:
    fields = dict(data)
    fields["op"] = decode_op(data["op"])
    fields["blocked_by"] = tuple(data["blocked_by"])
    fields["error"] = tuple(data["error"]) if data["error"] else None
    fields["committed"] = tuple(data["committed"])
    if isinstance(fields["op"], ops.Rpc) and isinstance(data["result"], list):
        fields["result"] = tuple(data["result"])  # a function's answers, one per statement
    return Step(**fields)


def to_data(
    record: RunRecord,
    violations: list[Violation] | tuple[Violation, ...],
    *,
    scenario: str,
    params: dict[str, Any],
    strategy: str,
    backend: str,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document for one run (``extra`` adds top-level fields, e.g. a schedule; a
    replayable trace also sets ``format``, see :func:`counterexample_data`)."""
    return {
        "format": RUN_FORMAT,
        "scenario": scenario,
        "params": params,
        "strategy": strategy,
        "backend": backend,
        "seed": seed,
        "tolerance_us": record.tolerance_us,
        "end_us": record.end_us,
        "steps": [_step_data(s) for s in record.steps],
        "truth": {job: asdict(t) for job, t in record.truth.items()},
        "rows": record.rows,
        "violations": [v.to_data() for v in violations],
        **(extra or {}),
    }


def record_from_data(data: dict[str, Any]) -> tuple[RunRecord, list[Violation]]:
    """The run record and violations of a trace document (raises ``KeyError``/``TypeError`` on
    a malformed one; :func:`read` turns those into :class:`TraceError`)."""
    truth = {}
    for job, t in data["truth"].items():
        attempts = tuple(Attempt(**a) for a in t["attempts"])
        transitions = tuple((int(x), str(s)) for x, s in t["transitions"])
        truth[job] = JobTruth(**{**t, "attempts": attempts, "transitions": transitions})
    record = RunRecord(
        steps=tuple(_step(s) for s in data["steps"]),
        rows=data["rows"],
        truth=truth,
        tolerance_us=int(data["tolerance_us"]),
        end_us=int(data["end_us"]),
    )
    violations = [Violation.from_data(v) for v in data["violations"]]
    return record, violations


def digest(data: dict[str, Any]) -> str:
    """The SHA-256 of a trace's content (every field but ``digest``), as written."""
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, indent=1).encode("utf-8")).hexdigest()


def write(path: Path, data: dict[str, Any], said: str | None = None) -> None:
    """Write a trace document (sorted keys, so equal runs give equal bytes), with its digest, as
    every output file is written (``sim.runs.results_file.write_output_file``: whole or not at
    all, through a symbolic link, into a FIFO or character device in place); a file system error
    is one line starting with ``said`` (default: the path)."""
    from sim.runs.results_file import OutputError, write_output_bytes

    data = {**data, "digest": digest(data)}
    try:
        write_output_bytes(path, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8"), said or str(path))
    except OutputError as exc:
        raise TraceError(str(exc)) from None


def read(path: Path) -> dict[str, Any]:
    """A trace document, checked for its format version and shape."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: not a JSON trace ({exc})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise TraceError(f"{path}: not a racetrack trace (no \"format\" field)")
    if data["format"] not in READABLE_FORMATS:
        raise TraceError(
            f"{path}: trace format {data['format']!r} is not supported (this racetrack reads {', '.join(READABLE_FORMATS)})"
        )
    if "digest" in data and data["digest"] != digest(data):
        raise TraceError(f"{path}: digest: the trace's content does not match its digest (edited by hand?); "
                         "write a new trace with racetrack explore")
    problem = required_field_problem(data) or structural_problem(data)
    if problem:
        raise TraceError(f"{path}: {problem}")
    if data["format"] == TRACE_FORMAT:
        require_modelled(data["params"], str(path))
    try:
        _, violations = record_from_data(data)
        for i, v in enumerate(violations):
            _sentence(v, i)
        if data["format"] == TRACE_FORMAT:
            # The table and its mapping are checked here; a trace whose table is not recorded still
            # reads (a report can show it), only a replay or an export refuses it (table_of).
            case_from_data(data, require_table=False)
    except TraceError as exc:
        raise TraceError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TraceError(f"{path}: malformed trace ({type(exc).__name__}: {exc})") from None
    return data


#: The fields every trace has (``racetrack-trace/1`` and ``/2``), with their JSON types.
REQUIRED_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("scenario", str), ("params", dict), ("strategy", str), ("backend", str), ("seed", int),
    ("tolerance_us", int), ("end_us", int), ("steps", list), ("truth", dict), ("rows", dict), ("violations", list),
)
#: What a replay needs besides (``racetrack-trace/2``).
REPLAY_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("schedule", list), ("actors", list), ("clocks", dict), ("slack_us", int), ("default_latency", list),
    ("end_floor_us", int),
)


def required_field_problem(data: dict[str, Any]) -> str | None:
    """The first required field a trace lacks or holds as the wrong JSON type, as ``field: what
    is wrong`` (None: all there). Checked before anything reads them, so that a hand-edited trace
    is one line naming the field, never a ``KeyError``."""
    fields = REQUIRED_FIELDS + (REPLAY_FIELDS if data.get("format") == TRACE_FORMAT else ())
    for key, kind in fields:
        if key not in data:
            return f"{key}: missing (every {data.get('format')} trace has it; write a new trace with racetrack explore)"
        names = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(data[key], kind) or (isinstance(data[key], bool) and bool not in names):
            return f"{key}: must be {_TYPE_WORDS.get(names[0], names[0].__name__)} (got {_json_type(data[key])})"
    for i, v in enumerate(data["violations"]):
        if not isinstance(v, dict):
            return f"violations[{i}]: must be an object with invariant, job and detail (got {_json_type(v)})"
        for key in ("invariant", "job"):
            if not isinstance(v.get(key), str):
                return f"violations[{i}].{key}: missing or not a string"
        invariant = v["invariant"]
        rows = data["params"].get("invariants.rows") or {}
        own = invariant.startswith("row:") and isinstance(rows, dict) and invariant[4:] in rows
        if invariant not in INVARIANT_IDS and not own:
            declared = [f"row:{n}" for n in rows] if isinstance(rows, dict) else []
            return (f"violations[{i}].invariant: unknown invariant {invariant!r} "
                    f"(known: {', '.join([*INVARIANT_IDS, *declared])})")
    return None


_TYPE_WORDS = {str: "a string", int: "a whole number", list: "a list", dict: "an object"}


def _json_type(value: Any) -> str:
    return {bool: "a boolean", type(None): "null", str: "a string", int: "a whole number", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _sentence(v: Violation, i: int) -> str:
    """A violation's sentence (its facts rendered), or :class:`TraceError` naming its facts."""
    try:
        return v.detail
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise TraceError(f"violations[{i}].facts: cannot say what broke {v.invariant} "
                         f"({type(exc).__name__}: {exc}); write a new trace with racetrack explore") from None


def structural_problem(data: dict[str, Any]) -> str | None:
    """The first field of a trace that cannot be true of any run racetrack writes (None: none),
    named as ``field: what is wrong``."""
    for key, kind in (("scenario", str), ("strategy", str), ("seed", int), ("steps", list), ("params", dict)):
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            return f"{key}: must be a {kind.__name__} (got {type(data[key]).__name__})"
    source = data.get("strategy_source")
    if source is not None and (not isinstance(source, dict) or not all(isinstance(v, str) for v in source.values())):
        return "strategy_source: must be a table of strings (ref, root, file, sha256)"
    if isinstance(data.get("seed"), int) and not 0 <= data["seed"] <= MAX_SEED:
        return f"seed: must be from 0 to {MAX_SEED} (got {data['seed']})"
    if "found_by" in data and not isinstance(data["found_by"], dict):
        return f"found_by: must be a table (method, seed...) (got {_json_type(data['found_by'])})"
    for key, value in (data.get("params") or {}).items():
        param = PARAM_BY_PATH.get(key)
        if param is None:
            return f"params.{key}: not a scenario parameter"
        _, reason = validate_value(param, value)
        if reason:
            return f"params.{key}: {reason}"
    if data.get("format") != TRACE_FORMAT:
        return None
    actors = data.get("actors")
    if not isinstance(actors, list) or not all(isinstance(a, dict) and isinstance(a.get("name"), str) for a in actors):
        return "actors: must be a list of actors, each with a name"
    schedule = data.get("schedule")
    if not isinstance(schedule, list) or not all(isinstance(n, str) for n in schedule):
        return "schedule: must be a list of actor names"
    names = {a["name"] for a in actors}

    def known(name: str) -> bool:  # an actor, or a statement of its Parallel: "<actor>/<n>"
        return name in names or actor_of(name) in names

    unknown = [n for n in schedule if not known(n)]
    if unknown:
        return f"schedule: names {unknown[0]!r}, which is not one of the trace's actors"
    problem = _world_fields_problem(data, known)
    if problem:
        return problem
    ran = Counter(st.get("actor") for st in data.get("steps", []) if isinstance(st, dict) and st.get("kind") == "db")
    scheduled = Counter(schedule)
    if ran != scheduled:
        actor = sorted(str(a) for a in (ran - scheduled) + (scheduled - ran))[0]
        return (f"schedule: lists {scheduled.get(actor, 0)} operation(s) of {actor!r} but its steps record "
                f"{ran.get(actor, 0)}: the schedule is not the order of the recorded run")
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _micros(value: Any) -> bool:
    return _whole(value) and value >= 0


def _latency(pair: Any) -> bool:
    """``[request, reply]``: two whole numbers of microseconds >= 0."""
    return isinstance(pair, list) and len(pair) == 2 and all(_micros(v) for v in pair)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _world_fields_problem(data: dict[str, Any], known: Any) -> str | None:
    """The first malformed optional world field of a replayable trace (``deaths``, ``queued``,
    ``branches``), named with what it must be."""
    clocks: dict[str, Any] = data["clocks"] if isinstance(data.get("clocks"), dict) else {}
    for host, clock in clocks.items():
        if not isinstance(clock, dict) or not _whole(clock.get("offset_us")) or not _number(clock.get("drift_ppm")) \
                or not _whole(clock.get("resolution_us")) or clock["resolution_us"] < 1:
            return (f"clocks.{host}: must be a table of offset_us (a whole number), drift_ppm (a number) and "
                    "resolution_us (a whole number >= 1)")
    for actor in data.get("actors", []):
        latencies = actor.get("latencies", [])
        if not isinstance(latencies, list) or not all(_latency(x) for x in latencies):
            return f"actors.{actor['name']}.latencies: must be a list of [request, reply] microseconds >= 0"
    for key in ("slack_us", "end_floor_us"):
        if key in data and not _micros(data[key]):
            return f"{key}: must be a whole number of microseconds >= 0 (got {data[key]!r})"
    latency = data.get("default_latency", [0, 0])
    if not _latency(latency):
        return "default_latency: must be [request, reply] microseconds >= 0"
    deaths = data.get("deaths", [])
    if not isinstance(deaths, list) or not all(
        isinstance(d, list) and len(d) == 2 and _micros(d[0]) and isinstance(d[1], str) for d in deaths
    ):
        return "deaths: must be a list of [microseconds >= 0, host name] pairs"
    unknown_hosts = sorted({d[1] for d in deaths} - set(clocks))
    if unknown_hosts:
        return f"deaths: host {unknown_hosts[0]!r} is not one of the trace's clocks"
    queued = data.get("queued", {})
    if not isinstance(queued, dict) or not all(
        isinstance(q, list) and all(_micros(w) for w in q) for q in queued.values()
    ):
        return "queued: must be a table of session name -> list of microseconds >= 0"
    branches = data.get("branches", {})
    if not isinstance(branches, dict) or not all(
        isinstance(lat, list) and all(_latency(x) for x in lat)
        for lat in branches.values()
    ):
        return "branches: must be a table of '<actor>/<n>' -> list of [request, reply] microseconds >= 0"
    for name in [*queued, *branches]:
        if not known(name):
            return f"{'queued' if name in queued else 'branches'}: {name!r} is not one of the trace's actors or their statements"
    return None


# --- what a replay needs (racetrack-trace/2) ---------------------------------------------------


def case_data(case: Case) -> dict[str, Any]:
    """The replay fields of a trace: actors, clocks, tolerance slack, default latency."""
    return {
        "actors": [
            {
                "name": a.name, "job_id": a.job_id, "event": a.event, "host": a.host, "spawn_us": a.spawn_us,
                "after": list(a.after), "latencies": [list(x) for x in a.latencies],
                "view": asdict(a.view), "ctx": asdict(a.ctx),
            } | ({"job_changes": [[at, [list(c) for c in changed]] for at, changed in a.job_changes]} if a.job_changes else {})
            for a in case.actors
        ],
        "clocks": {h: {"offset_us": c.offset_us, "drift_ppm": c.drift_ppm, "resolution_us": c.resolution_us}
                   | ({"step_at_us": c.step_at_us, "step_us": c.step_us} if c.step_us else {})
                   for h, c in case.clocks.items()},
        "slack_us": case.slack_us,
        "default_latency": list(case.default_latency),
        "end_floor_us": case.end_floor_us,
    } | ({"branches": {b: [list(x) for x in lat] for b, lat in case.branch_latencies.items()}} if case.branch_latencies else {}) \
      | ({"deaths": [[at, host] for at, host in case.deaths]} if case.deaths else {}) \
      | ({"queued": {n: list(q) for n, q in case.queued.items()}} if case.queued else {})


def table_data(table: Table | None) -> dict[str, Any]:
    """The ``table`` field of a trace found on ``table`` (empty for the bundled one, so those
    traces keep their bytes): its SQL as PostgreSQL runs it, which parses back to the same table,
    and the file it came from (``source``, for messages)."""
    if table is None:
        return {}
    return {"table": {"source": table.source, "sql": table.sql}}


def table_of(data: dict[str, Any], *, require: bool = True) -> Table | None:
    """The table a trace was found on, from its ``table`` field (None: the bundled ``job_status``).

    A trace whose ``params`` name a ``table.sql`` but that does not carry the table (written
    before traces recorded it, or by hand) cannot be replayed: running it on the bundled table
    would judge another table's verdicts. With ``require`` that is a :class:`TraceError`; without,
    None (a report only reads what the trace recorded)."""
    recorded = data.get("table")
    named = (data.get("params") or {}).get("table.sql") or ""
    if recorded is None:
        if named and require:
            raise TraceError(
                f"table: the trace was found on table.sql = {named!r} but does not carry that table's SQL (traces "
                "written before racetrack recorded it do not), and a replay on the bundled job_status would judge "
                "another table; write a new trace with racetrack explore"
            )
        return None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sql"), str) or not isinstance(recorded.get("source"), str):
        raise TraceError("table: must be an object with the table's sql and source (strings)")
    if not named:
        raise TraceError("table: the trace carries a table but its params name no table.sql")
    from tracker.table_sql import TableSqlError, parse_table  # pglast: only for a trace of one's own table

    try:
        return parse_table(recorded["sql"], recorded["source"])
    except TableSqlError as exc:
        raise TraceError(f"table.sql: {exc}") from None


def lifecycle_of(data: dict[str, Any], table: Table | None) -> Lifecycle:
    """What the invariants read in the trace's table: its ``params``' ``[table.columns]``,
    ``[table.statuses]``, ``invariants.off`` and ``[invariants.rows]``, as the scenario had them."""
    try:
        return lifecycle_for(data["params"], table, "params", "")
    except ScenarioError as exc:
        raise TraceError(str(exc)) from None


def case_from_data(data: dict[str, Any], *, require_table: bool = True) -> Case:
    """The :class:`~sim.engine.ordered.Case` of a ``racetrack-trace/2`` document, with the table
    it was found on and what the invariants read in it (:func:`table_of`; ``require_table``
    False: a trace whose table is not recorded gets no table and the default mapping, to be
    read but not run)."""
    record, _ = record_from_data(data)
    table = table_of(data, require=require_table)
    if table is None and (data["params"].get("table.sql") or ""):
        lifecycle, tracked = DEFAULT_LIFECYCLE, None  # not recorded: read, never run (require_table)
    else:
        lifecycle = lifecycle_of(data, table)
        if table is None:
            from tracker.table_sql import bundled_table  # the bundled job_status: what the trace was found on

            table = bundled_table()
        tracked = table
    actors = tuple(
        ActorSpec(
            name=str(a["name"]), job_id=str(a["job_id"]), event=str(a["event"]), host=str(a["host"]),
            spawn_us=int(a["spawn_us"]), view=JobView(**a["view"]), ctx=HandlerContext(**a["ctx"]),
            after=tuple(str(x) for x in a["after"]),
            latencies=tuple((int(r), int(p)) for r, p in a["latencies"]),
            job_changes=tuple((int(at), tuple((str(f), v) for f, v in changed)) for at, changed in a.get("job_changes", ())),
        )
        for a in data["actors"]
    )
    clocks = {str(h): Clock(str(h), int(c["offset_us"]), float(c["drift_ppm"]), int(c["resolution_us"]),
                            int(c.get("step_at_us", 0)), int(c.get("step_us", 0)))
              for h, c in data["clocks"].items()}
    if "db" not in clocks:
        raise KeyError("clocks has no 'db' host")
    missing = {a.host for a in actors} - set(clocks)
    if missing:
        raise KeyError(f"clocks has no host {sorted(missing)[0]!r}")
    request, reply = data["default_latency"]
    return Case(
        scenario=str(data["scenario"]), params=dict(data["params"]), seed=int(data["seed"]), actors=actors,
        clocks=clocks, truth=record.truth, slack_us=int(data["slack_us"]),
        default_latency=(int(request), int(reply)), end_floor_us=int(data["end_floor_us"]),
        branch_latencies={str(b): tuple((int(r), int(p)) for r, p in lat) for b, lat in data.get("branches", {}).items()},
        deaths=tuple((int(at), str(host)) for at, host in data.get("deaths", ())),
        queued={str(n): tuple(int(w) for w in q) for n, q in data.get("queued", {}).items()},
        lifecycle=lifecycle, table=tracked,
    )


def counterexample_data(
    case: Case,
    record: RunRecord,
    schedule: list[str] | tuple[str, ...],
    violations: list[Violation] | tuple[Violation, ...],
    *,
    strategy: str,
    backend: str,
    found_by: dict[str, Any],
    strategy_source: dict[str, str] | None = None,
    table: Table | None = None,
) -> dict[str, Any]:
    """A replayable trace (``racetrack-trace/2``) of a forced-order run of ``case``; a user's
    strategy is ``strategy`` = ``module:attr`` with ``strategy_source`` (where it lives, its
    file's digest: :mod:`sim.runs.strategy_source`). ``table`` is the scenario's own table (None:
    the bundled one, or the case's own when it has one): a replay runs on it."""
    table = table if table is not None else case.table
    if table is not None and not (case.params.get("table.sql") or ""):
        table = None  # the bundled table (a case read from a trace carries it): nothing to record
    extra = {
        **({"strategy_source": strategy_source} if strategy_source else {}),
        **table_data(table),
        "format": TRACE_FORMAT,
        "schedule": list(schedule),
        "ops": len(schedule),
        "found_by": found_by,
        **case_data(case),
    }
    return to_data(record, violations, scenario=case.scenario, params=case.params, strategy=strategy,
                   backend=backend, seed=case.seed, extra=extra)
