"""One run and many: simulate, judge, and reduce a run to a result row.

``run_one`` is the unit everything else repeats (sweeps, searches, CI checks). A result row is a
flat dict (the columns of the results file, declared in :mod:`sim.runs.columns`); the same inputs and seed
give the same row, whatever the backend, executor or worker count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sim.engine.interpreter import user_frame
from sim.engine.limits import DEFAULT_LIMITS, LimitExceeded, Limits
from sim.engine.scenario import Scenario
from sim.engine.world import Draws, World
from sim.judge.invariants import INVARIANT_IDS, Judgement, RowVerdicts, Unknown, Violation, judge
from sim.record.clocks import EPOCH_US
from sim.record.conflicts import conflict_orders
from sim.record.history import RunRecord
from sim.runs.columns import COLUMN_NAMES, RESULTS_FORMAT, ROW_INVARIANTS
from sim.runs.thread_limit import run_time_limit
from tracker.backend import TrackerBackend
from tracker.handler_columns import check_writes
from tracker.memory import MemoryTracker
from tracker.ops import Begin, Commit, Rollback
from tracker.strategies import Strategy
from tracker.table import evaluate

#: The columns of a result row, in order (declared with their types in :mod:`sim.runs.columns`).
RESULT_COLUMNS = COLUMN_NAMES


@dataclass(frozen=True)
class RunResult:
    scenario: str
    strategy: str
    backend: str
    seed: int
    violations: tuple[Violation, ...]
    record: RunRecord = field(repr=False, compare=False)
    crashes: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    #: ``--backend both``: where memory and PostgreSQL answered differently (None: not compared).
    disagreements: tuple[str, ...] | None = None
    #: Invariants that could not be judged (their checker raised): neither held nor violated.
    unknown: tuple[Unknown, ...] = ()
    #: Why the run was not judged (a handler crashed or reached a limit); empty when it was.
    error: str = ""
    #: ``params`` as the row's JSON, when the scenario has it written already (None: write it).
    params_json: str | None = field(default=None, compare=False, repr=False)

    @property
    def ops(self) -> int:
        return sum(1 for s in self.record.steps if s.kind == "db")

    def row(self) -> dict[str, Any]:
        """The result row (one line of a results file)."""
        ops = statements = lock_waits = waited_us = 0
        for s in self.record.steps:
            if s.kind == "db":
                ops += 1
                if not isinstance(s.op, (Begin, Commit, Rollback)):
                    statements += 1
                if s.blocked_by:
                    lock_waits += 1
                waited_us += s.waited_us
        counts = {i: 0 for i in INVARIANT_IDS}
        own = {r.name: 0 for r in self.record.lifecycle.rows}
        for v in self.violations:
            if v.invariant in counts:
                counts[v.invariant] += 1
            else:  # a scenario's own row invariant, ``row:<name>``
                own[v.invariant.removeprefix("row:")] += 1
        lags = visibility_lags_ms(self.record)
        errors = timestamp_errors_ms(self.record)
        lag_p50, lag_p99 = _percentiles(lags, (50, 99))
        return {
            "format": RESULTS_FORMAT,
            "scenario": self.scenario,
            "strategy": self.strategy,
            "backend": self.backend,
            "seed": self.seed,
            "jobs": len(self.record.truth),
            "ops": ops,
            "round_trips": ops,
            "statements": statements,
            "lock_waits": lock_waits,
            "lock_wait_ms": round(waited_us / 1000, 3),
            "crashes": len(self.crashes),
            "violating": bool(self.violations),
            "violations": len(self.violations),
            **counts,
            "first_violation": self.violations[0].line() if self.violations else "",
            "lag_p50_ms": lag_p50,
            "lag_p99_ms": lag_p99,
            "lag_max_ms": max(lags) if lags else None,
            "visibility_lags_ms": json.dumps(lags),
            "timestamp_errors_ms": json.dumps(errors),
            "sim_ms": round(self.record.end_us / 1000, 3),
            "params": json.dumps(self.params, sort_keys=True) if self.params_json is None else self.params_json,
            "error": self.error,
            "disagreements": None if self.disagreements is None else len(self.disagreements),
            "first_disagreement": self.disagreements[0] if self.disagreements else "",
            "unknown": ",".join(u.invariant for u in self.unknown),
            "conflict_orders": ",".join(conflict_orders(self.record)),
            # only for scenarios with row invariants: a bundled scenario's columns stay as they were
            **({ROW_INVARIANTS: json.dumps(own)} if self.record.lifecycle.rows else {}),
        }


def error_row(item: SweepItem, backend: str, message: str) -> dict[str, Any]:
    """The result row of a run that could not finish (the server went away): judged nothing."""
    row: dict[str, Any] = {c: None for c in RESULT_COLUMNS}
    row.update(
        format=RESULTS_FORMAT, scenario=item.scenario.name, strategy=item.strategy.name, backend=backend,
        seed=item.seed, violating=False, violations=0, error=message, first_violation="", first_disagreement="", unknown="",
        params=item.scenario.params_json,
        **{i: 0 for i in INVARIANT_IDS},
    )
    return row


def _percentiles(values: list[float], ps: tuple[int, ...]) -> list[float | None]:
    """The ``p``-th percentiles of ``values`` for each ``p`` in ``ps``, rounded to 3 places: what
    ``statistics.quantiles(values, n=100, method="inclusive")[p - 1]`` gives, computed for the
    cut points asked for only (it computes all 99) from one sort, with its arithmetic."""
    if not values:
        return [None for _ in ps]
    if len(values) == 1:
        return [values[0] for _ in ps]
    data = sorted(values)
    m = len(data) - 1
    out: list[float | None] = []
    for p in ps:
        j, delta = divmod(p * m, 100)
        out.append(round((data[j] * (100 - delta) + data[j + 1] * delta) / 100, 3))
    return out


def visibility_lags_ms(record: RunRecord) -> list[float]:
    """Per job: how long after the true outcome (and the true first start) a committed row
    version first showed it, in ms."""
    first_seen: dict[tuple[str, str], int] = {}
    lc = record.lifecycle
    started, cancelled = lc.column("started_at"), lc.column("cancelled")
    finished = set(lc.completed) | set(lc.failed) | (set() if cancelled else set(lc.removed))
    for step in record.steps:
        for row in step.committed:
            job = row["job_id"]
            if started is not None and row[started] is not None:
                first_seen.setdefault((job, "start"), step.executed_us)
            if row[lc.status] in finished or (cancelled is not None and row[cancelled]):
                first_seen.setdefault((job, "outcome"), step.executed_us)
    lags = []
    for job, truth in sorted(record.truth.items()):
        if truth.first_start_us is not None and (job, "start") in first_seen:
            lags.append(round((first_seen[(job, "start")] - truth.first_start_us) / 1000, 3))
        if (job, "outcome") in first_seen:
            lags.append(round((first_seen[(job, "outcome")] - truth.outcome_us) / 1000, 3))
    return lags


def timestamp_errors_ms(record: RunRecord) -> list[float]:
    """Per job: recorded minus true time of started_at and of completed_at/failed_at, in ms."""
    errors = []
    lc = record.lifecycle
    started = lc.column("started_at")
    for job, truth in sorted(record.truth.items()):
        row = record.rows.get(job)
        if row is None:
            continue
        if truth.first_start_us is not None and started is not None and row[started] is not None:
            errors.append(round((row[started] - EPOCH_US - truth.first_start_us) / 1000, 3))
        column = {"completed": lc.column("completed_at"), "failed": lc.column("failed_at")}.get(truth.outcome)
        if column and row[column] is not None:
            errors.append(round((row[column] - EPOCH_US - truth.outcome_us) / 1000, 3))
    return errors


def check_strategy_table(strategy: Strategy, scenario: Scenario) -> None:
    """Before any run: the literal column writes of ``strategy``'s handlers exist in the table
    ``scenario`` tracks (:class:`~tracker.handler_columns.UnknownColumnWrite`, one line naming
    the handler's file and line, when one does not)."""
    from tracker.table_sql import bundled_table  # pglast: as the memory model needs it anyway

    check_writes(strategy, scenario.table or bundled_table())


def run_one(
    scenario: Scenario,
    strategy: Strategy,
    seed: int,
    backend: TrackerBackend | None = None,
    draws: Draws | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> RunResult:
    """Simulate one run and judge it. A run whose handler crashed or reached a limit is not
    judged: its result carries ``error`` (the handler, its file and line, what happened)."""
    backend = backend or MemoryTracker(scenario.table)
    world = World(scenario, strategy, backend, seed, draws, limits)
    try:
        with run_time_limit(limits.wall_seconds, f"seed {seed} of {scenario.name} with {strategy.name}"):
            record = world.run()
    except LimitExceeded as exc:
        where = user_frame(exc)
        world.driver.failure = f"{exc}" + (f"; it was running {where}" if where else "")
        record = world.record()
    error = f"strategy {strategy.name}: {world.driver.failure}" if world.driver.failure else ""
    verdicts, differences = (None, ()) if error else _row_verdicts(backend, record)
    judgement = Judgement((), ()) if error else judge(record, verdicts if backend.name == "postgres" else None)
    found = _disagreements(backend)
    return RunResult(
        scenario=scenario.name,
        strategy=strategy.name,
        backend=backend.name,
        seed=seed,
        violations=judgement.violations,
        record=record,
        crashes=tuple(world.driver.crashes),
        params=scenario.to_toml_table(),
        params_json=scenario.params_json,
        disagreements=None if found is None else found + differences,
        unknown=judgement.unknown,
        error=error,
    )


def _row_verdicts(backend: TrackerBackend, record: RunRecord) -> tuple[RowVerdicts | None, tuple[str, ...]]:
    """PostgreSQL's verdicts on the scenario's row invariants over every committed row version
    (None on the memory backend), and, with ``--backend both``, one line per version where the
    model's translation and the server disagree."""
    rules = record.lifecycle.rows
    ask = getattr(backend, "row_verdicts", None)
    if not rules or ask is None:
        return None, ()
    places = [(step, i, row) for step in record.steps for i, row in enumerate(step.committed)]
    answers = ask(tuple(r.sql for r in rules), [row for _, _, row in places])
    if answers is None:  # the differential backend parted from PostgreSQL: nothing to compare
        return None, ()
    verdicts = {(step.index, i): answer for (step, i, _), answer in zip(places, answers, strict=True)}
    differences = []
    if backend.name == "both":
        for step, i, row in places:
            for rule, theirs in zip(rules, verdicts[(step.index, i)], strict=True):
                mine = evaluate(rule.expr, row, step.db_now_us or 0)
                if mine != theirs:
                    differences.append(f"row invariant {rule.id} on {row['job_id']} committed by {step.actor}: "
                                       f"memory {mine}; postgres {theirs}")
    return verdicts, tuple(differences)


def _disagreements(backend: TrackerBackend) -> tuple[str, ...] | None:
    found = getattr(backend, "disagreements", None)  # the differential backend's, of this run
    return None if found is None else tuple(d.line() for d in found)


@dataclass(frozen=True)
class SweepItem:
    scenario: Scenario
    strategy: Strategy
    seed: int


def plan(scenarios: Iterable[Scenario], strategies: Iterable[Strategy], runs: int, seed: int) -> Iterator[SweepItem]:
    """The runs of a sweep, in a fixed order: scenario, strategy, then seed ``seed + i``.

    Every strategy sees the same seeds, hence the same worlds: comparisons are paired.
    """
    strategies = list(strategies)
    for scenario in scenarios:
        for strategy in strategies:
            for i in range(runs):
                yield SweepItem(scenario, strategy, seed + i)


def summarize(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, strategy, backend): runs, violating runs, violations per invariant (and,
    only when some run had one, ``unknown``: how many invariants could not be judged)."""
    table: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["scenario"], row["strategy"], row["backend"])
        entry = table.setdefault(
            key,
            {"scenario": key[0], "strategy": key[1], "backend": key[2], "runs": 0, "violating_runs": 0,
             "violations": {i: 0 for i in INVARIANT_IDS}},
        )
        entry["runs"] += 1
        if key[2] != "memory" or row.get("error"):  # a server can go away; a strategy can crash
            entry["errors"] = entry.get("errors", 0) + int(bool(row.get("error")))
        if row.get("disagreements") is not None:
            entry["disagreements"] = entry.get("disagreements", 0) + int(row["disagreements"])
            if row.get("first_disagreement") and "first_disagreement" not in entry:
                entry["first_disagreement"] = f"seed {row['seed']}: {row['first_disagreement']}"
        if row.get("unknown"):
            entry["unknown"] = entry.get("unknown", 0) + len(str(row["unknown"]).split(","))
        entry["violating_runs"] += int(bool(row["violating"]))
        for i in INVARIANT_IDS:
            entry["violations"][i] += int(row[i])
    return list(table.values())
