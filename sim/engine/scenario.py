"""Scenario files: what a run simulates, read from TOML, validated, with a default for everything.

:data:`PARAMS` is the whole format: every key, its default, what it allows, what it means. The
docs/scenarios.md's table is generated from it (``racetrack scenarios --params``), validation reads it, and a
test keeps the bundled files and docs/scenarios.md in step with it. A bad file gives a
:class:`ScenarioError` whose message is one line naming the file, the line and the key.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from sim.engine.distributions import FORMS, SIGNED_FORMS, Dist, SignedRange, parse_dist, parse_signed
from tracker.errors import UserError
from tracker.lifecycle import COLUMN_ROLES, DEFAULT_LIFECYCLE, ROLE_NAMES, STATE_NAMES, Lifecycle, RowInvariant
from tracker.table import Table


class ScenarioError(UserError, ValueError):
    """Bad scenario input; ``str()`` is the one line the user sees."""


@dataclass(frozen=True)
class Param:
    path: str
    default: Any
    kind: str  # int, number, probability, dist, choice, text, signed_ms, signed_ppm
    doc: str
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    choices: tuple[str, ...] = ()


def _p(path: str, default: Any, kind: str, doc: str, **kw: Any) -> Param:
    return Param(path, default, kind, doc, **kw)


#: Upper bounds of times in milliseconds: a day for delays and locks, an hour for a clock's offset
#: (a laptop can be seconds off; beyond an hour the scenario describes a broken host, not a race).
MAX_MS = 86_400_000.0
MAX_OFFSET_MS = 3_600_000.0

#: Clocks per host group (``db``, ``api``: the producer, ``workers``: each worker draws its own).
#: Unset (``None``), a group keeps the ``clocks.max_*`` draw; these keys are left out of a run's
#: ``params`` while unset, so results of scenarios that do not use them stay as they were.
CLOCK_HOST_GROUPS = ("db", "api", "workers")
MAX_DRIFT_PPM = 100_000.0
CLOCK_HOST_PARAMS: tuple[Param, ...] = tuple(
    param
    for group, who in (("db", "the database's"), ("api", "the producer's"), ("workers", "each worker's"))
    for param in (
        _p(f"clocks.{group}.offset", None, "signed_ms", f"Range {who} clock offset is drawn from (replaces `clocks.max_offset_ms` for it)."),
        _p(f"clocks.{group}.drift", None, "signed_ppm", f"Range {who} clock rate error is drawn from (replaces `clocks.max_drift_ppm` for it)."),
        _p(f"clocks.{group}.step", None, "signed_ms", f"An NTP correction: {who} clock jumps by a value drawn from this range (needs `step_at`)."),
        _p(f"clocks.{group}.step_at", None, "dist", f"When (true time since the run began) {who} clock jumps."),
    )
)

#: Latency as production has it (``sim.engine.network``); unset, a run is the plain driver's.
NETWORK_PARAMS: tuple[Param, ...] = (
    *(
        _p(f"network.{kind}_rtt", None, "dist", f"Round trip of {what}, instead of `db_rtt`.")
        for kind, what in (("read", "a `SELECT`"), ("write", "an `INSERT`/`UPDATE`"), ("begin", "a `BEGIN`"), ("commit", "a `COMMIT`/`ROLLBACK`"))
    ),
    _p("network.api.db_rtt", None, "dist", "Round trip from the producer's host, instead of `db_rtt` (an operation kind's own wins)."),
    _p("network.workers.db_rtt", None, "dist", "Round trip from the workers' hosts, instead of `db_rtt` (an operation kind's own wins)."),
    _p("network.pause_probability", None, "probability", "Chance that one direction of an operation also waits a `pause` (needs `pause`)."),
    _p("network.pause", None, "dist", "A heavy-tail pause: a GC pause, a TCP retransmit (needs `pause_probability`)."),
    _p("network.pool_size", None, "int", "Connections in each host process's pool; handlers queue for one (unset: one per handler).", minimum=1, maximum=10_000),
    _p("network.client", None, "choice", "`http`: every call is its own transaction over PostgREST, with one more round trip.", choices=("sql", "http")),
    _p("network.http_rtt", None, "dist", "The HTTP hop's round trip in `client = \"http\"` (unset: `db_rtt`)."),
)

PARAMS: tuple[Param, ...] = (
    _p("description", "", "text", "One line saying what the scenario is for."),
    _p("job.count", 5, "int", "Jobs the producer adds in one run.", minimum=1, maximum=100_000),
    _p("job.interarrival", {"fixed_ms": 20}, "dist", "Gap between two jobs being added."),
    _p("job.duration", {"median_ms": 50, "p99_ms": 200}, "dist", "Processing time of one attempt."),
    _p("job.fail_probability", 0.0, "probability", "Chance that an attempt fails."),
    _p("job.attempts", 1, "int", "BullMQ `opts.attempts`: attempts allowed (1 = no retry).", minimum=1, maximum=100),
    _p("job.delay_ms", 0.0, "number", "BullMQ `opts.delay`: the job starts delayed this long.", minimum=0, maximum=MAX_MS),
    _p("job.progress_updates", 0, "int", "`job.updateProgress` calls per attempt, evenly spread.", minimum=0, maximum=100),
    _p("job.classes", None, "classes", "Job classes mixed in one run: `[job.classes.NAME]` tables of `share` and their own job keys (see below)."),
    _p("backoff.type", "exponential", "choice", "Retry backoff.", choices=("none", "fixed", "exponential")),
    _p("backoff.delay_ms", 1000.0, "number", "Backoff base: fixed wait, or `round(2^(n-1) * delay)`.", minimum=0, maximum=MAX_MS),
    _p("backoff.jitter", 0.0, "probability", "Wait is uniform in [max*(1-jitter), max)."),
    _p("workers.count", 1, "int", "Worker hosts, each with its own clock.", minimum=1, maximum=1000),
    _p("workers.concurrency", 1, "int", "Jobs one worker runs at once.", minimum=1, maximum=1000),
    _p("workers.lock_duration_ms", 30000.0, "number", "Job lock; a frozen worker loses it after this.", minimum=0, exclusive_minimum=True, maximum=MAX_MS),
    _p("workers.stalled_interval_ms", 30000.0, "number", "Stall checker period: detection lags lock expiry by up to this.", minimum=0, exclusive_minimum=True, maximum=MAX_MS),
    _p("workers.max_stalled_count", 1, "int", "Stalls allowed before the job fails (0 = at-most-once).", minimum=0, maximum=100),
    _p("workers.crash_probability", None, "probability", "Chance that an attempt's worker process dies during it: its handlers stop where they are (sessions end, open transactions roll back), its active jobs stall (needs nothing else; see `crash_after`)."),
    _p("workers.crash_after", None, "dist", "With `crash_probability`: when, after the attempt starts, the process dies (unset: at a uniform point of the attempt)."),
    _p("stalls.probability", 0.0, "probability", "Chance that an attempt's worker freezes past its lock (the job is re-run)."),
    _p("cancel.probability", 0.0, "probability", "Chance the producer removes a job after adding it."),
    _p("cancel.after", {"fixed_ms": 10}, "dist", "When, after adding, the producer tries to remove it."),
    _p("cancel.active", None, "choice", "A cancel that finds the job active: `refuse` (unset: BullMQ's `remove` refuses a locked job) or `abort` (the worker aborts the attempt: 'failed' with an abort reason, no retry).", choices=("refuse", "abort")),
    _p("handlers.active_delay_ms", 500.0, "number", "Fixed delay the integration gives 'active' handlers.", minimum=0, maximum=MAX_MS),
    _p("handlers.completed_delay_ms", 300.0, "number", "Fixed delay for 'completed' handlers.", minimum=0, maximum=MAX_MS),
    _p("handlers.failed_delay_ms", 0.0, "number", "Fixed delay for 'failed' handlers.", minimum=0, maximum=MAX_MS),
    _p("handlers.progress_delay_ms", 0.0, "number", "Fixed delay for 'progress' handlers.", minimum=0, maximum=MAX_MS),
    _p("handlers.removed_delay_ms", 0.0, "number", "Fixed delay for 'removed' handlers.", minimum=0, maximum=MAX_MS),
    _p("listeners.source", None, "choice", "`queue-events`: handlers listen on `QueueEvents` (a Redis stream, in order, later) instead of `Worker` events.", choices=("worker", "queue-events")),
    _p("listeners.delay", None, "dist", "With `queue-events`: how long after the event the stream delivers it (unset: at once)."),
    _p("listeners.miss_probability", None, "probability", "With `queue-events`: chance an event is never delivered (the listener was reconnecting)."),
    _p("network.db_rtt", {"median_ms": 3, "p99_ms": 30}, "dist", "Round trip to the database; each direction is half a draw, drawn per operation."),
    *NETWORK_PARAMS,
    _p("clocks.max_offset_ms", 5.0, "number", "Each host's clock offset is uniform in [-max, +max] (the database's too).", minimum=0, maximum=MAX_OFFSET_MS),
    _p("clocks.max_drift_ppm", 50.0, "number", "Each host's clock rate error is uniform in [-max, +max] ppm.", minimum=0, maximum=100_000),
    *CLOCK_HOST_PARAMS,
    _p("invariants.timestamp_slack_ms", 50.0, "number", "`faithful-timestamps` allows this plus the clocks' worst error.", minimum=0, maximum=MAX_MS),
    _p("invariants.off", None, "invariant_list", "Invariants this scenario does not judge (their counts stay 0); e.g. `[\"faithful-timestamps\"]`."),
    _p("invariants.rows", None, "row_invariants", "`[invariants.rows]` NAME = \"SQL boolean expression\": checked on every committed row version; a false one is a violation `row:NAME` ([own-table.md](own-table.md))."),
    _p("table.sql", "", "text", "SQL file (path relative to the scenario file) creating the tracked table, as in your migrations; default: the bundled `job_status` ([own-table.md](own-table.md))."),
    _p("table.columns", None, "columns", "`[table.columns]` ROLE = \"column\" (or `\"\"`: none): which column the invariants read as " + ", ".join(f"`{r}`" for r in ROLE_NAMES) + "; unset roles keep their own name."),
    _p("table.statuses", None, "statuses", "`[table.statuses]` STATE = [\"status\", ...]: which statuses report each true state, in lifecycle order " + ", ".join(f"`{s}`" for s in STATE_NAMES) + " (the last three terminal); unset states keep the seed's."),
)
#: Keys that say which table a run tracks, not how the world behaves: results carry them only when
#: set, so a scenario without them records exactly what it did before they existed.
TABLE_KEYS = ("table.sql",)
#: Keys read once the table is known (:func:`lifecycle_for`): what the invariants read in it.
LIFECYCLE_KEYS = ("table.columns", "table.statuses", "invariants.off", "invariants.rows")
PARAM_BY_PATH = {p.path: p for p in PARAMS}
SECTIONS = sorted({p.path.split(".")[0] for p in PARAMS if "." in p.path} | {"expect"})
EXPECT_FORM = '"clean", "violates:<invariant>[,<invariant>...]" or "any"'


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: ``values`` maps every path in :data:`PARAMS` to its value
    (distributions as :class:`Dist`); ``expect`` maps a strategy name to its expectation;
    ``search`` is ``[expect]``'s search budget (runs per judged strategy; None: check's default)."""

    name: str
    source: str
    values: dict[str, Any] = field(hash=False)
    expect: dict[str, str] = field(default_factory=dict, hash=False)
    #: The tracked table (None: the bundled ``job_status``), from ``table.sql`` or ``--table-sql``.
    table: Table | None = None
    search: int | None = None
    #: What the invariants read in the table: its column mapping, statuses and the scenario's rules.
    lifecycle: Lifecycle = DEFAULT_LIFECYCLE

    def __getitem__(self, path: str) -> Any:
        return self.values[path]

    def dist(self, path: str) -> Dist:
        value = self.values[path]
        assert isinstance(value, Dist)
        return value

    def with_values(self, changes: dict[str, Any]) -> Scenario:
        """A copy with some parameters changed (already validated values)."""
        return replace(self, values={**self.values, **changes}, expect=dict(self.expect))

    def with_table(self, table: Table | None, path: str) -> Scenario:
        """A copy that tracks ``table`` (read from ``path``, which results record); the
        scenario's column mapping and row invariants are checked against it."""
        try:
            lifecycle = lifecycle_for(self.values, table, self.source, "")
        except ScenarioError as exc:  # the table given on the command line, not the scenario file, lacks it
            said = str(exc).removeprefix(f"{self.source}: ")
            hint = "; in a scenario file of your own, whose [table] sql names this file (see docs/own-table.md)" if "[table.columns]" in said else ""
            raise ScenarioError(f"--table-sql {path} (with scenario {self.name}): {said}{hint}") from None
        return replace(self, values={**self.values, "table.sql": path}, expect=dict(self.expect), table=table, lifecycle=lifecycle)

    @cached_property
    def params_json(self) -> str:
        """:meth:`to_toml_table` as a result row's ``params`` column (JSON, keys sorted): the same
        for every run of a scenario, so written once per scenario, not once per row. (A
        scenario's values are never changed in place: :meth:`with_values` makes a copy.)"""
        return json.dumps(self.to_toml_table(), sort_keys=True)

    def to_toml_table(self) -> dict[str, Any]:
        """Every parameter as plain TOML-able data (distributions as their tables)."""
        out: dict[str, Any] = {}
        for path, value in self.values.items():
            if path in TABLE_KEYS and value == PARAM_BY_PATH[path].default:
                continue
            if value is None:  # an optional key left unset (see CLOCK_HOST_PARAMS)
                continue
            out[path] = value.to_toml() if isinstance(value, (Dist, SignedRange, JobClasses)) else value
        return out


# --- locating keys for messages ---------------------------------------------------------------


def _line_of(text: str, path: str) -> int | None:
    """The line where ``path`` (``section.key`` or ``key``) is set, for error messages."""
    section, _, key = path.rpartition(".")
    has_header = re.search(rf"^\s*\[\s*{re.escape(section)}\s*\]", text, re.M) is not None
    if "." in section and not has_header:  # a field inside an inline table: point at the table's line
        section, _, key = section.rpartition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped)
        if header:
            current = header.group(1)
            if current == path:
                return number
            continue
        if current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
        if not section and current == "" and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return number
    return None


def _where(source: str, text: str, path: str) -> str:
    line = _line_of(text, path) if text else None
    return f"{source}: line {line}: " if line else f"{source}: "


def _where_reason(source: str, text: str, path: str, reason: str) -> str:
    """:func:`_where` for a table's key that ``reason`` names first (``.bogus: unknown column
    role`` of ``table.columns``): that key's own line, else the table's."""
    named = re.match(r"\.([A-Za-z0-9_-]+)", reason)
    if named and text and _line_of(text, f"{path}.{named.group(1)}"):
        return _where(source, text, f"{path}.{named.group(1)}")
    return _where(source, text, path)


# --- validation --------------------------------------------------------------------------------


def _check_number(param: Param, value: Any) -> str | None:
    if param.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number (got {value!r})"
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"must be a number (got {value!r})"
    if param.kind == "probability" and not 0 <= value <= 1:
        return f"must be a probability between 0 and 1 (got {value!r})"
    if param.minimum is not None:
        if param.exclusive_minimum and value <= param.minimum:
            return f"must be > {param.minimum:g} (got {value!r})"
        if value < param.minimum:
            return f"must be >= {param.minimum:g} (got {value!r})"
    if param.maximum is not None and value > param.maximum:
        return f"must be <= {param.maximum:g} (got {value!r})"
    return None


def validate_value(param: Param, value: Any) -> tuple[Any, str | None]:
    """``(converted value, None)`` or ``(None, reason)`` for one parameter."""
    if param.kind == "dist":
        try:
            return parse_dist(value), None
        except ValueError as exc:
            return None, str(exc)
    if param.kind in ("signed_ms", "signed_ppm"):
        unit = param.kind.removeprefix("signed_")
        try:
            return parse_signed(value, unit, MAX_OFFSET_MS if unit == "ms" else MAX_DRIFT_PPM), None
        except ValueError as exc:
            return None, str(exc)
    if param.kind == "classes":
        try:
            return parse_job_classes(value), None
        except ValueError as exc:
            return None, str(exc)
    if param.kind == "choice":
        if value not in param.choices:
            return None, f"must be one of {', '.join(param.choices)} (got {value!r})"
        return value, None
    if param.kind == "text":
        if not isinstance(value, str):
            return None, f"must be a string (got {value!r})"
        return value, None
    if param.kind in ("columns", "statuses", "invariant_list", "row_invariants"):
        reason = _check_lifecycle_value(param.kind, value)
        return (None, reason) if reason else (value, None)
    reason = _check_number(param, value)
    if reason:
        return None, reason
    return (float(value) if param.kind in ("number", "probability") else value), None


def _validate_expectation(value: Any, where: str) -> str | None:
    if not isinstance(value, str):
        return f"must be a string: {EXPECT_FORM} (got {value!r})"
    if value in ("clean", "any"):
        return None
    if value.startswith("violates:"):
        from sim.judge.invariants import UnknownInvariant, require_known  # the IDs are the checkers' to own

        ids = [i.strip() for i in value[len("violates:") :].split(",") if i.strip()]
        if not ids:
            return f"must name at least one invariant: {EXPECT_FORM} (got {value!r})"
        try:
            require_known(ids, where)
        except UnknownInvariant as exc:
            raise ScenarioError(str(exc)) from None
        return None
    return f"must be {EXPECT_FORM} (got {value!r})"


def from_mapping(data: dict[str, Any], name: str, source: str, text: str = "", base: Path | None = None) -> Scenario:
    """Validate parsed TOML; raise :class:`ScenarioError` naming the first bad key."""
    values: dict[str, Any] = {}
    expect: dict[str, str] = {}
    search: int | None = None
    for key, value in data.items():
        if key in PARAM_BY_PATH:  # top-level keys (description)
            continue
        if key == "expect":
            if not isinstance(value, dict):
                raise ScenarioError(f"{_where(source, text, key)}[expect] must be a table of strategy = expectation")
            for strategy, expectation in value.items():
                if strategy == "search":  # not a strategy: how much `racetrack check` searches
                    if isinstance(expectation, bool) or not isinstance(expectation, int) or not 0 <= expectation <= 10**7:
                        raise ScenarioError(f"{_where(source, text, 'expect.search')}expect.search must be a whole number "
                                            f"of search runs from 0 to 10000000 (got {expectation!r})")
                    search = expectation
                    continue
                reason = _validate_expectation(expectation, f"{_where(source, text, f'expect.{strategy}')}expect.{strategy}")
                if reason:
                    raise ScenarioError(f"{_where(source, text, f'expect.{strategy}')}expect.{strategy} {reason}")
                expect[strategy] = expectation
            continue
        if key not in SECTIONS:
            raise ScenarioError(
                f"{_where(source, text, key)}unknown key {key!r}; allowed: description, "
                + ", ".join(f"[{s}]" for s in SECTIONS)
            )
        if not isinstance(value, dict):
            raise ScenarioError(f"{_where(source, text, key)}{key} must be a table ([{key}])")
        allowed = list(dict.fromkeys(p.path.split(".")[1] for p in PARAMS if p.path.startswith(key + ".")))
        for sub in value:
            if sub not in allowed:
                raise ScenarioError(
                    f"{_where(source, text, f'{key}.{sub}')}unknown key {key}.{sub}; allowed in [{key}]: "
                    + ", ".join(allowed)
                )
            _check_subtable(key, sub, value[sub], source, text)
    for param in PARAMS:
        section, _, sub = param.path.rpartition(".")
        container = _container(data, section) if "." in section else data.get(section, {}) if section else data
        if sub not in container:
            values[param.path] = parse_dist(param.default) if param.kind == "dist" and param.default is not None else param.default
            continue
        converted, reason = validate_value(param, container[sub])
        if reason:
            sep = "" if reason.startswith((".", " ")) else " "  # a job class's own key: job.classes.slow.share
            raise ScenarioError(f"{_where_reason(source, text, param.path, reason)}{param.path}{sep}{reason}")
        values[param.path] = converted
    _check_together(values, source, text)
    table = None
    if values["table.sql"]:
        sql_path = (base or Path.cwd()) / values["table.sql"]
        if not sql_path.is_file():
            raise ScenarioError(f"{_where(source, text, 'table.sql')}table.sql: no such file {str(sql_path)!r}")
        from tracker.table_sql import TableSqlError, load_table  # pglast: only when a scenario names a table

        try:
            table = load_table(sql_path, values["table.sql"])
        except TableSqlError as exc:
            raise ScenarioError(f"{_where(source, text, 'table.sql')}table.sql: {exc}") from None
    lifecycle = lifecycle_for(values, table, source, text)
    _check_expected_ids(expect, lifecycle, source, text)
    return Scenario(name=name, source=source, values=values, expect=expect, table=table, search=search, lifecycle=lifecycle)


def _check_expected_ids(expect: dict[str, str], lifecycle: Lifecycle, source: str, text: str) -> None:
    """``violates:`` may name only what the scenario judges: a declared row invariant, an
    invariant not switched off."""
    own = {r.id for r in lifecycle.rows}
    for strategy, expectation in expect.items():
        if not expectation.startswith("violates:"):
            continue
        for i in (x.strip() for x in expectation[len("violates:"):].split(",")):
            where = f"{_where(source, text, f'expect.{strategy}')}expect.{strategy}"
            if i.startswith("row:") and i not in own:
                declared = ", ".join(sorted(own)) or "none"
                raise ScenarioError(f"{where}: {i!r} is not a row invariant of this scenario (declared in [invariants.rows]: {declared})")
            if i in lifecycle.off:
                raise ScenarioError(f"{where}: {i!r} is switched off in [invariants] off, so it can never be violated")


_ROW_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _check_lifecycle_value(kind: str, value: Any) -> str | None:
    """The shape of ``[table.columns]``, ``[table.statuses]``, ``invariants.off`` and
    ``[invariants.rows]`` (what they name is checked against the table by :func:`lifecycle_for`)."""
    if kind == "invariant_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"must be a list of invariant IDs (got {value!r})"
        from sim.judge.invariants import INVARIANT_IDS  # the IDs are the checkers' to own

        for v in value:
            if v not in INVARIANT_IDS:
                return f"names unknown invariant {v!r} (known: {', '.join(INVARIANT_IDS)})"
        return None
    if not isinstance(value, dict):
        return f"must be a table (got {value!r})"
    for key, item in value.items():
        if kind == "columns":
            if key not in ROLE_NAMES:
                return f".{key}: unknown column role; allowed: {', '.join(ROLE_NAMES)}"
            if not isinstance(item, str) or (key == "status" and not item):
                return f".{key} must be a column name{'' if key == 'status' else ' or empty (the table has none)'} (got {item!r})"
        elif kind == "statuses":
            if key not in STATE_NAMES:
                return f".{key}: unknown state; allowed: {', '.join(STATE_NAMES)}"
            if not isinstance(item, list) or not all(isinstance(v, str) and v for v in item):
                return f".{key} must be a list of status values (got {item!r})"
        else:
            if not _ROW_NAME.fullmatch(key):
                return f".{key}: a row invariant's name uses letters, digits, _ and - only"
            if not isinstance(item, str) or not item.strip():
                return f".{key} must be a SQL boolean expression in a string (got {item!r})"
    return None


NONE_HINT = ', or "" if there is none'
_ROLE_KINDS = {"attempts": ("int2", "int4", "int8"), "cancelled": ("boolean",)}


def lifecycle_for(values: dict[str, Any], table: Table | None, source: str, text: str) -> Lifecycle:
    """What the invariants read in ``table`` (None: the bundled one): the scenario's column
    mapping and statuses over the seed's defaults, checked against the table's columns and
    types, its ``off`` list and its row invariants translated like CHECKs. A mapping naming a
    column the table lacks, or a row invariant the model cannot evaluate, is a
    :class:`ScenarioError` (one line, naming the key's line)."""
    columns, statuses = values.get("table.columns") or {}, values.get("table.statuses") or {}
    off, rows = values.get("invariants.off") or [], values.get("invariants.rows") or {}
    if table is None and not (columns or statuses or off or rows):
        return DEFAULT_LIFECYCLE
    if table is None:
        from tracker.table_sql import bundled_table  # pglast: only when a scenario changes the mapping

        table = bundled_table()
    changes: dict[str, Any] = {**columns, **{state: tuple(s) for state, s in statuses.items()}, "off": tuple(off)}
    lifecycle = replace(DEFAULT_LIFECYCLE, **changes)
    for role, meaning in COLUMN_ROLES.items():
        column_name = lifecycle.column(role)
        if column_name is None:
            continue
        key = f"table.columns.{role}"
        mapped = role in columns
        column = table.column(column_name)
        where = _where(source, text, key if mapped else "table.sql")
        if column is None:
            if mapped:
                raise ScenarioError(f"{where}{key} names column {column_name!r}, which table {table.name} does not have "
                                    f"(columns: {', '.join(table.names)})")
            raise ScenarioError(f"{where}table {table.name} has no column {column_name!r}, which the invariants read as "
                                f"{meaning}; map it in [table.columns] ({role} = \"your_column\"{'' if role == 'status' else NONE_HINT})")
        wanted = _ROLE_KINDS.get(role, ("timestamptz",) if role.endswith("_at") else ())
        if wanted and column.kind not in wanted:
            said = f"{key}: " if mapped else ""
            raise ScenarioError(f"{where}{said}column {column_name} is {column.sql_type}; "
                                f"{meaning} must be {' or '.join(wanted)}")
    status = table.column(lifecycle.status)
    if status is not None and status.kind == "enum":
        for state in STATE_NAMES:
            for value in lifecycle.statuses(state):
                if value not in status.labels:
                    key = f"table.statuses.{state}"
                    given = "" if state in statuses else f" (the default; set {key} to your statuses)"
                    raise ScenarioError(f"{_where(source, text, key if state in statuses else 'table.sql')}"
                                        f"{key}: {value!r} is not a label of {status.sql_type} ({', '.join(status.labels)}){given}")
    if rows:
        from tracker.table_sql import TableSqlError, parse_condition

        found = []
        for name, sql_text in rows.items():
            key = f"invariants.rows.{name}"
            try:
                shown, expr, reads = parse_condition(table, sql_text)
            except TableSqlError as exc:
                raise ScenarioError(f"{_where(source, text, key)}{key}: {exc}") from None
            stamps = tuple(c for c in reads if (col := table.column(c)) is not None and col.kind == "timestamptz")
            found.append(RowInvariant(name, shown, expr, reads, stamps))
        lifecycle = replace(lifecycle, rows=tuple(found))
    return lifecycle


#: What a job class may set besides its ``share``: the ``[job]`` keys that describe one job.
CLASS_KEYS = ("duration", "fail_probability", "attempts", "delay_ms", "progress_updates")


@dataclass(frozen=True)
class JobClasses:
    """Job classes: ``(name, share, {job path: value})`` in file order; each job draws one."""

    classes: tuple[tuple[str, float, dict[str, Any]], ...]

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, share, values in self.classes:
            table: dict[str, Any] = {"share": share}
            for path, value in values.items():
                table[path.split(".", 1)[1]] = value.to_toml() if isinstance(value, Dist) else value
            out[name] = table
        return out


def parse_job_classes(table: object) -> JobClasses:
    """:class:`JobClasses` from ``[job.classes]``; ``ValueError`` with a one-line reason naming the
    class and key (the caller prefixes ``job.classes``)."""
    if not isinstance(table, dict) or not table:
        raise ValueError("must hold at least one [job.classes.NAME] table (share = 0.9, duration = ...)")
    classes = []
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ValueError(f".{name} must be a table ([job.classes.{name}]) (got {body!r})")
        if "share" not in body:
            raise ValueError(f".{name} needs share = a probability (the fraction of jobs of this class)")
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "share":
                reason = _check_number(Param("share", 0.0, "probability", ""), value)
                if reason:
                    raise ValueError(f".{name}.share {reason}")
                continue
            if key not in CLASS_KEYS:
                raise ValueError(f".{name}: unknown key {key!r}; allowed: share, {', '.join(CLASS_KEYS)}")
            converted, reason = validate_value(PARAM_BY_PATH[f"job.{key}"], value)
            if reason:
                raise ValueError(f".{name}.{key} {reason}")
            values[f"job.{key}"] = converted
        classes.append((str(name), float(body["share"]), values))
    total = sum(share for _, share, _ in classes)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f" shares must add up to 1 (got {total:g})")
    return JobClasses(tuple(classes))


def _check_subtable(section: str, sub: str, value: Any, source: str, text: str) -> None:
    """A table inside a section (``[clocks.workers]``): a table whose keys are all known."""
    inner = [p.path.split(".")[2] for p in PARAMS if p.path.startswith(f"{section}.{sub}.")]
    if not inner:
        return
    if not isinstance(value, dict):
        raise ScenarioError(f"{_where(source, text, f'{section}.{sub}')}{section}.{sub} must be a table ([{section}.{sub}])")
    for key in value:
        if key not in inner:
            raise ScenarioError(
                f"{_where(source, text, f'{section}.{sub}.{key}')}unknown key {section}.{sub}.{key}; "
                f"allowed in [{section}.{sub}]: " + ", ".join(inner)
            )


def _container(data: dict[str, Any], section: str) -> dict[str, Any]:
    """The table at a dotted ``section`` (``clocks.workers``), or an empty one."""
    table: Any = data
    for part in section.split("."):
        table = table.get(part, {}) if isinstance(table, dict) else {}
    return table if isinstance(table, dict) else {}


def _check_together(values: dict[str, Any], source: str, text: str) -> None:
    """Keys that only mean something with another one."""
    problem = _apart(values)
    if problem is not None:
        key, said = problem
        raise ScenarioError(f"{_where(source, text, key)}{said}")


def _apart(values: dict[str, Any]) -> tuple[str, str] | None:
    """The first key set without the key it needs: (the key, what is wrong), or None. A file
    and a ``--grid`` variant are both checked by it, so a grid cannot make what a file cannot."""
    if values["workers.crash_after"] is not None and values["workers.crash_probability"] is None:
        return "workers.crash_after", "workers.crash_after needs workers.crash_probability too (how often a worker process dies)"
    for key in ("listeners.delay", "listeners.miss_probability"):
        if values[key] is not None and values["listeners.source"] != "queue-events":
            return key, f'{key} needs listeners.source = "queue-events" (Worker events are not delivered through a stream)'
    if values["network.http_rtt"] is not None and values["network.client"] != "http":
        return "network.http_rtt", 'network.http_rtt needs network.client = "http" (the HTTP hop exists only there)'
    if (values["network.pause"] is None) != (values["network.pause_probability"] is None):
        given, missing = (
            ("network.pause", "network.pause_probability") if values["network.pause_probability"] is None
            else ("network.pause_probability", "network.pause")
        )
        return given, f"{given} needs {missing} too (how often, and how long)"
    for group in CLOCK_HOST_GROUPS:
        step, at = f"clocks.{group}.step", f"clocks.{group}.step_at"
        if (values[step] is None) != (values[at] is None):
            given, missing = (step, at) if values[at] is None else (at, step)
            return given, f"{given} needs {missing} too (how far the clock jumps, and when)"
    return None


def _toml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    return repr(value)


def toml_text(table: dict[str, Any]) -> str:
    """A scenario file for ``table`` (:meth:`Scenario.to_toml_table`'s dotted paths): loading it
    gives the same parameters back."""
    sections: dict[str, list[str]] = {"": []}
    for path, value in table.items():
        section, _, key = path.rpartition(".")
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()) \
                and not all(isinstance(x, (int, float)) for v in value.values() for x in v.values()):
            for name, sub in value.items():  # a table of tables (job classes): one section each
                sections.setdefault(f"{path}.{name}", []).extend(f"{k} = {_toml_inline(v)}" for k, v in sub.items())
            continue
        sections.setdefault(section, []).append(f"{key} = {_toml_inline(value)}")
    out = sections.pop("")
    for name, lines in sections.items():
        out += ["", f"[{name}]", *lines]
    return "\n".join(out) + "\n"


def bundled_dir() -> Path:
    """Where the bundled scenario files live (inside the installed ``scenarios`` package)."""
    return Path(str(resources.files("scenarios")))


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.toml"))


def load(name_or_path: str) -> Scenario:
    """A bundled scenario by name, or a TOML file by path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists() or "/" in name_or_path:
        if not path.is_file():
            problem = ("is a folder, not a scenario file" if path.is_dir()
                       else "is not a regular file (a scenario is a .toml file)" if path.exists() else "no such scenario file")
            raise ScenarioError(f"{name_or_path}: {problem}")
        return load_file(path, path.stem)
    bundled = bundled_dir() / f"{name_or_path}.toml"
    if not bundled.is_file():
        names = bundled_names()
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}: bundled are {', '.join(names)}; or give a path to a .toml file"
        )
    return load_file(bundled, name_or_path, source=f"scenarios/{name_or_path}.toml")


def load_file(path: Path, name: str, source: str | None = None) -> Scenario:
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{source}: cannot read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    return from_mapping(data, name, source, text, path.resolve().parent)


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid path=v1,v2,...``: a parameter (``job.fail_probability``) or one field of a
    distribution parameter (``job.duration.median_ms``), and the values to sweep it over."""

    path: str
    param: Param
    field: str | None  # the distribution field, or None for a plain parameter
    values: tuple[Any, ...]
    texts: tuple[str, ...]  # the values as the user wrote them (for variant names)


def _grid_value(text: str, kind: str) -> Any:
    if kind in ("choice", "text"):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # validation names it as not a number


def parse_grid(assignment: str) -> GridAxis:
    """``path=v1,v2,...`` as a :class:`GridAxis`; :class:`ScenarioError` (one line) when the
    path is unknown or a value is not allowed. Distribution fields are checked against each
    scenario's form when the variants are built (:func:`grid_variants`)."""
    path, sep, rest = assignment.partition("=")
    path = path.strip()
    texts = tuple(t.strip() for t in rest.split(",")) if sep else ()
    if not sep or not texts or any(not t for t in texts):
        raise ScenarioError(f"--grid {assignment!r}: expected path=value[,value...], e.g. job.duration.median_ms=10,50,100")
    if len(set(texts)) != len(texts):
        raise ScenarioError(f"--grid {path}: a value is repeated ({rest})")
    param = PARAM_BY_PATH.get(path)
    field_name: str | None = None
    if param is None:
        head, _, tail = path.rpartition(".")
        param = PARAM_BY_PATH.get(head)
        if param is None or param.kind != "dist":
            dists = ", ".join(p.path + ".<field>" for p in PARAMS if p.kind == "dist")
            raise ScenarioError(
                f"--grid {path}: unknown parameter; allowed: a key from 'racetrack scenarios --params' "
                f"(not description) or a distribution field ({dists})"
            )
        field_name = tail
    if param.kind == "text":
        raise ScenarioError(f"--grid {path}: a text parameter cannot be swept")
    if param.kind == "dist" and field_name is None:
        raise ScenarioError(f"--grid {path}: a distribution; sweep one of its fields, e.g. {path}.median_ms or {path}.fixed_ms")
    values: list[Any] = []
    for text in texts:
        value = _grid_value(text, param.kind)
        if field_name is None:
            converted, reason = validate_value(param, value)
        else:
            converted, reason = _check_dist_field(field_name, value)
        if reason:
            raise ScenarioError(f"--grid {path}={text}: {path} {reason}")
        same = next((texts[j] for j, earlier in enumerate(values) if earlier == converted), None)
        if same is not None:  # 2 and 02, 0.5 and 5e-1: one grid point twice, its runs counted twice
            raise ScenarioError(f"--grid {path}: {same} and {text} are the same value; give each value once")
        values.append(converted)
    return GridAxis(path, param, field_name, tuple(values), texts)


DIST_FIELDS = ("fixed_ms", "min_ms", "max_ms", "median_ms", "p99_ms")


def _check_dist_field(field_name: str, value: Any) -> tuple[Any, str | None]:
    if field_name not in DIST_FIELDS:
        return None, f"is not a distribution field; allowed: {', '.join(DIST_FIELDS)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"must be a number (got {value!r})"
    if value < 0:
        return None, f"must be >= 0 (got {value!r})"
    return float(value), None


def grid_variants(scenario: Scenario, axes: list[GridAxis]) -> list[Scenario]:
    """The cross product of the axes over ``scenario``, in axis order (the last varies fastest).

    Each variant is named ``base[path=value,...]`` and carries its values in its parameters.
    Setting ``median_ms`` of a log-normal scales its ``p99_ms`` by the same factor (the spread
    stays; "jobs twice as slow" moves the tail too) unless ``p99_ms`` is on the grid as well. A
    combination the scenario cannot take (a field outside its distribution's form, p99_ms
    below median_ms, a key set without the key it needs, as a file would be refused for)
    raises :class:`ScenarioError` naming the value and what is allowed.
    """
    if not axes:
        return [scenario]
    paths = [a.path for a in axes]
    if len(set(paths)) != len(paths):
        raise ScenarioError(f"--grid {next(p for p in paths if paths.count(p) > 1)} is given twice")
    variants = []
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        changes: dict[str, Any] = {}
        tables: dict[str, dict[str, float]] = {}
        for axis, i in zip(axes, combo, strict=True):
            if axis.field is None:
                changes[axis.path] = axis.values[i]
                continue
            if scenario[axis.param.path] is None:
                raise ScenarioError(f"--grid {axis.path}: {axis.param.path} is not set in {scenario.source}; set it there to sweep its fields")
            table = tables.setdefault(axis.param.path, scenario.dist(axis.param.path).to_toml())
            if axis.field not in table:
                raise ScenarioError(
                    f"--grid {axis.path}: in {scenario.source} {axis.param.path} is "
                    f"{{ {', '.join(table)} }}; fields allowed: {', '.join(f'{axis.param.path}.{k}' for k in table)}"
                )
            if axis.field == "median_ms" and "p99_ms" in table and f"{axis.param.path}.p99_ms" not in paths:
                # a log-normal keeps its shape: moving the median moves the tail with it
                table["p99_ms"] = table["p99_ms"] * axis.values[i] / table["median_ms"] if table["median_ms"] else table["p99_ms"]
            table[axis.field] = axis.values[i]
        for path, table in tables.items():
            try:
                changes[path] = parse_dist(table)
            except ValueError as exc:
                given = ", ".join(f"{a.path}={a.texts[i]}" for a, i in zip(axes, combo, strict=True) if a.param.path == path)
                raise ScenarioError(f"--grid {given}: in {scenario.source} {path} {exc}") from None
        label = ",".join(f"{a.path}={a.texts[i]}" for a, i in zip(axes, combo, strict=True))
        variant = scenario.with_values(changes)
        problem = _apart(variant.values)  # what a file is refused for, a grid variant is too
        if problem is not None:
            said = problem[1]
            given = ", ".join(f"{a.path}={a.texts[i]}" for a, i in zip(axes, combo, strict=True) if a.param.path in said) or label
            raise ScenarioError(f"--grid {given}: in {scenario.source} {said}")
        variants.append(replace(variant, name=f"{scenario.name}[{label}]"))
    return variants


def base_name(scenario_name: str) -> str:
    """The scenario a grid variant was made from (``seed[a=1,b=2]`` -> ``seed``)."""
    return scenario_name.split("[", 1)[0]


LIFECYCLE_ALLOWED = {
    "invariant_list": "a list of invariant IDs",
    "row_invariants": "a table of NAME (letters, digits, `_`, `-`) = SQL string",
    "columns": "a table of ROLE = column name of the table",
    "statuses": "a table of STATE = list of status values",
}


def format_params_markdown() -> str:
    """The table of every scenario parameter, as docs/scenarios.md shows it."""
    lines = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for p in PARAMS:
        if p.kind == "classes":
            allowed, default = f"tables `[job.classes.NAME]` of `share` (0 to 1, all adding up to 1) and any of {', '.join(CLASS_KEYS)}", "unset"
        elif p.kind in ("signed_ms", "signed_ppm"):
            allowed, default = "a range: " + SIGNED_FORMS[p.kind.removeprefix("signed_")], "unset"
        elif p.kind == "dist" and p.default is None:
            allowed, default = "a distribution: " + FORMS, "unset"
        elif p.kind == "dist":
            allowed = "a distribution: " + FORMS
            default = "{ " + ", ".join(f"{k} = {v:g}" for k, v in p.default.items()) + " }"
        elif p.kind == "choice":
            allowed, default = " \\| ".join(p.choices), "unset" if p.default is None else f'"{p.default}"'
        elif p.kind == "text":
            allowed, default = "string", '""'
        elif p.kind in LIFECYCLE_ALLOWED:
            allowed, default = LIFECYCLE_ALLOWED[p.kind], "unset"
        elif p.kind == "probability":
            allowed, default = "0 to 1", "unset" if p.default is None else f"{p.default:g}"
        else:
            lo = "" if p.minimum is None else (f"> {p.minimum:g}" if p.exclusive_minimum else f">= {p.minimum:g}")
            hi = "" if p.maximum is None else f"<= {p.maximum:g}"
            allowed = ("whole number " if p.kind == "int" else "number ") + ", ".join(x for x in (lo, hi) if x)
            default = "unset" if p.default is None else f"{p.default:g}"
        lines.append(f"| `{p.path}` | `{default}` | {allowed.strip()} | {p.doc} |")
    return "\n".join(lines)
