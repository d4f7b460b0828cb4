"""Exports of a trace for other tools: a pytest regression test, and a PostgreSQL isolation
tester spec (``setup`` / ``teardown`` / ``session`` + ``step`` / ``permutation``) with the real
schema and real SQL.

The SQL is the recorded operations rendered as text with literal values (the values the
handlers wrote, timestamps as ``timestamptz`` literals). Three changes keep a run on a real server
the same as the trace: the INSERT names ``created_at``/``updated_at`` (the database clock's value
in the trace; ``DEFAULT now()`` would take the server's real time), ``now()`` in an expression
becomes the database clock's reading recorded for that statement, and every UPDATE sets
``updated_at`` to that reading, which the spec's own version of the ``updated_at`` trigger keeps
(the schema's trigger would stamp the server's real time). A spec is written for the bundled
``job_status`` only: a trace found on a table of its own (``table.sql``) is refused, and a
pytest test only of a trace that carries its table (the test replays on it).

Imports ``sim.search.trace``, ``sim.engine.ordered`` and ``tracker``; nothing here runs a simulation.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from sim.record.history import Step
from sim.search.trace import TRACE_FORMAT, TraceError, case_from_data, record_from_data
from tracker import ops

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- SQL text ----------------------------------------------------------------------------------


def timestamp_literal(us: int) -> str:
    """``'2025-10-12 16:36:52.368000+00'::timestamptz`` for integer microseconds since 1970."""
    when = EPOCH + timedelta(microseconds=us)
    return f"'{when.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'::timestamptz"


def literal(value: Any, column_type: str | None = None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and (column_type == "timestamptz" or (column_type is None and value >= ops.TIMESTAMP_FLOOR_US)):
        return timestamp_literal(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (dict, list)):
        return literal(json.dumps(value, sort_keys=True)) + "::jsonb"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ")"
    raise TypeError(f"cannot write {value!r} as SQL")


def expression(value: Any, db_now_us: int | None, column_type: str | None = None, qualifier: str = "") -> str:
    """An operation's value or expression as SQL; ``now()`` as the recorded database clock.
    ``qualifier`` (``job_status.``) names the existing row's columns in an upsert's DO UPDATE."""
    if isinstance(value, ops.Col):
        return qualifier + value.name
    if isinstance(value, ops.Excluded):
        return f"EXCLUDED.{value.name}"
    if isinstance(value, ops.DbNow):
        return "now()" if db_now_us is None else f"{timestamp_literal(db_now_us)} /* now() */"
    if isinstance(value, (ops.Greatest, ops.Least, ops.Coalesce)):
        name = type(value).__name__.upper()
        return f"{name}(" + ", ".join(expression(a, db_now_us, column_type, qualifier) for a in value.args) + ")"
    if isinstance(value, ops.Case):
        when = " AND ".join(condition(c, db_now_us, qualifier) for c in value.when)
        return (f"CASE WHEN {when} THEN {expression(value.then, db_now_us, column_type, qualifier)}"
                f" ELSE {expression(value.otherwise, db_now_us, column_type, qualifier)} END")
    return literal(value, column_type)


def condition(cond: ops.Cond, db_now_us: int | None, qualifier: str = "") -> str:
    column = qualifier + cond.column
    if cond.op in ("is null", "is not null"):
        return f"{column} {cond.op.upper()}"
    if cond.op in ("in", "not in"):
        return f"{column} {cond.op.upper()} {literal(tuple(cond.value))}"
    return f"{column} {cond.op} {expression(cond.value, db_now_us, ops.COLUMNS.get(cond.column), qualifier)}"


def statement(op: ops.Op, db_now_us: int | None = None) -> str:
    """One operation as an SQL statement (what a backend would send, values inlined)."""
    table = ops.TABLE
    if isinstance(op, ops.Select):
        return f"SELECT * FROM {table} WHERE job_id = {literal(op.job_id)}" + (" FOR UPDATE" if op.for_update else "") + ";"
    if isinstance(op, ops.Insert):
        values: dict[str, Any] = {"job_id": op.job_id, **op.values}
        if db_now_us is not None:
            values.setdefault("created_at", db_now_us)
            values.setdefault("updated_at", db_now_us)
        columns = ", ".join(values)
        rendered = ", ".join(expression(v, db_now_us, ops.COLUMNS.get(k)) for k, v in values.items())
        conflict = " ON CONFLICT (job_id) DO NOTHING" if op.on_conflict_do_nothing else ""
        if op.on_conflict_update is not None:
            conflict = upsert_clause(op, db_now_us)
        return f"INSERT INTO {table} ({columns}) VALUES ({rendered}){conflict} RETURNING *;"
    if isinstance(op, ops.Update):
        assignments = dict(op.set)
        if db_now_us is not None:
            # The trigger's now(), as the trace's database clock (the spec's trigger keeps it).
            assignments.setdefault("updated_at", ops.DbNow())
        sets = ", ".join(f"{k} = {expression(v, db_now_us, ops.COLUMNS.get(k))}" for k, v in assignments.items())
        where = " AND ".join([f"job_id = {literal(op.job_id)}"] + [condition(c, db_now_us) for c in op.where])
        return f"UPDATE {table} SET {sets} WHERE {where} RETURNING *;"
    if isinstance(op, (ops.Begin, ops.Commit, ops.Rollback)):
        return type(op).__name__.upper() + ";"
    if isinstance(op, ops.Rpc):
        # One step of several statements: PostgreSQL runs one query message's statements as one
        # transaction (or in the caller's): atomic in one round trip, as the function call was.
        return " ".join(statement(s, db_now_us) for s in op.body)
    raise TypeError(f"{type(op).__name__} is not a database operation")


def upsert_clause(op: ops.Insert, db_now_us: int | None) -> str:
    """`` ON CONFLICT (job_id) DO UPDATE SET ... [WHERE ...]``: the existing row's columns named
    ``job_status.<column>`` (unqualified they would be ambiguous with ``EXCLUDED``'s)."""
    assert op.on_conflict_update is not None
    qualifier = ops.TABLE + "."
    assignments = dict(op.on_conflict_update)
    if db_now_us is not None:
        assignments.setdefault("updated_at", ops.DbNow())  # the trigger's now(), as in an UPDATE
    sets = ", ".join(
        f"{k} = {expression(v, db_now_us, ops.COLUMNS.get(k), qualifier)}" for k, v in assignments.items()
    ) or "job_id = EXCLUDED.job_id"
    where = " AND ".join(condition(c, db_now_us, qualifier) for c in op.conflict_where)
    return f" ON CONFLICT (job_id) DO UPDATE SET {sets}" + (f" WHERE {where}" if where else "")


# --- isolation tester spec ---------------------------------------------------------------------

#: Replaces the schema's trigger function in a spec: the UPDATE's own ``updated_at`` (the trace's
#: database clock) stands, instead of the server's ``now()``.
TRACE_CLOCK_TRIGGER = """CREATE OR REPLACE FUNCTION job_status_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;  -- updated_at: the trace's database clock, set by each UPDATE
END
$$;"""


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _db_steps(data: dict[str, Any]) -> list[Step]:
    record, _ = record_from_data(data)
    return [s for s in record.steps if s.kind == "db" and s.op is not None]


def isolation_spec(data: dict[str, Any], source: str = "trace") -> str:
    """The trace as a PostgreSQL isolation tester spec: one session per actor, one step per
    statement, and the permutation the trace executed."""
    if data.get("format") != TRACE_FORMAT:
        raise TraceError(f"{source}: an isolation spec needs a {TRACE_FORMAT} trace (it has the schedule)")
    named = (data.get("params") or {}).get("table.sql") or ""
    if named:
        # The spec's SQL (table name, key, column types, trigger) is the bundled table's: on the
        # trace's own table it would run other statements against other rules.
        raise TraceError(f"{source}: --isolation: the trace was found on its own table (table.sql = {named!r}); "
                         "an isolation spec is written for the bundled job_status table only (use --pytest)")
    _, violations = record_from_data(data)
    steps = _db_steps(data)
    schema = resources.files("tracker").joinpath("schema.sql").read_text(encoding="utf-8")
    schema = "\n".join(line for line in schema.splitlines() if not line.startswith("--")).strip()
    lines = [
        f"# Generated by racetrack from {source}: scenario {data['scenario']}, strategy {data['strategy']}, seed {data['seed']}.",
        "# The handlers' statements with the values they sent, in the order the trace ran them.",
        "# INSERT names created_at/updated_at, now() is the database clock the trace recorded, and",
        "# every UPDATE sets updated_at to it (the trigger below keeps it), so that the server's",
        "# real clock changes neither the outcome nor the timestamps.",
    ]
    lines += [f"# violation: {v.invariant}: {v.job}: {v.detail}" for v in violations]
    lines += ["", "setup", "{", *("  " + line if line else "" for line in schema.splitlines()), "",
              *("  " + line for line in TRACE_CLOCK_TRIGGER.splitlines()), "}", "",
              "teardown", "{", f"  DROP TABLE {ops.TABLE};", "  DROP FUNCTION job_status_set_updated_at();", "}"]
    by_actor: dict[str, list[Step]] = {}
    for step in steps:
        by_actor.setdefault(step.actor, []).append(step)
    names: dict[str, list[str]] = {}
    for actor, actor_steps in by_actor.items():
        session = _ident(actor)
        lines += ["", f"session {session}"]
        names[actor] = []
        for k, step in enumerate(actor_steps, start=1):
            assert step.op is not None
            name = f"{session}_{k}"
            names[actor].append(name)
            lines.append(f"step {name} {{ {statement(step.op, step.db_now_us)} }}")
    order: list[str] = []
    taken: dict[str, int] = {}
    for actor in data["schedule"]:
        k = taken.get(actor, 0)
        if actor in names and k < len(names[actor]):
            order.append(names[actor][k])
            taken[actor] = k + 1
    lines += ["", "permutation " + " ".join(order), ""]
    return "\n".join(lines)


# --- pytest regression test --------------------------------------------------------------------


def pytest_file(
    data: dict[str, Any], strategy: str, source: str = "trace", strategy_source: dict[str, str] | None = None
) -> str:
    """A self-contained pytest module that replays the trace against ``strategy`` and fails
    while the recorded violation reproduces (red until the strategy is fixed). A user's
    strategy comes with ``strategy_source`` (where it imports from), so the test finds it from
    any directory."""
    if data.get("format") != TRACE_FORMAT:
        raise TraceError(f"{source}: a regression test needs a {TRACE_FORMAT} trace (it has the schedule)")
    try:
        case_from_data(data)  # the table it was found on must come with it: the test replays there
    except TraceError as exc:
        raise TraceError(f"{source}: {exc}") from None
    _, violations = record_from_data(data)
    invariants = sorted({v.invariant for v in violations}) or ["any"]
    name = _ident(f"test_{strategy}_does_not_violate_{'_'.join(invariants)}_in_{data['scenario']}")
    text = json.dumps(data, sort_keys=True)
    quoted = f'r"""{text}"""' if '"""' not in text and not text.endswith("\\") else repr(text)
    found = "\n".join(f"    {v.invariant}: {v.job}: {v.detail}" for v in violations)
    if strategy_source:
        imports = "from sim.runs.strategy_source import load_from\nfrom sim.search.replay import replay_data\n"
        source_line = f"STRATEGY_SOURCE = {strategy_source!r}\n"
        load = "load_from(STRATEGY, STRATEGY_SOURCE)[0]"
    else:
        imports = "from sim.search.replay import replay_data\nfrom tracker.strategies import load_strategy\n"
        source_line = ""
        load = "load_strategy(STRATEGY)"
    return f'''"""Regression test generated by ``racetrack export {source} --pytest``.

The trace ({data['scenario']}, strategy {data['strategy']}, seed {data['seed']}, {len(data['schedule'])} operations)
violated:
{found}

It replays the trace's schedule against STRATEGY (``racetrack replay`` semantics) and fails while
the same invariant is violated for the same job again.
"""

import json

{imports}
STRATEGY = {strategy!r}
{source_line}TRACE = json.loads({quoted})


def {name}():
    result = replay_data(TRACE, {load})
    assert not result.reproduced, result.summary()
'''
