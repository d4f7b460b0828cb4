"""``racetrack run``: one seeded run of a scenario and a strategy, shown as a timeline with the
verdict (exit 1 on a violation or a disagreement between the backends)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sim.cli.args import (
    INTERNAL_ERROR,
    add_backend_flags,
    add_limit_flags,
    add_scenario_argument,
    backend_spec,
    limits_of,
    load_strategy_arg,
    seed,
    with_table_sql,
)
from sim.cli.output import differential_line
from tracker.errors import UserError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="one run: a timeline and the verdict (exit 1 on a violation)")
    add_scenario_argument(p)
    p.add_argument("--strategy", default="naive", help="built-in name or module:attr (default: naive)")
    p.add_argument("--seed", type=seed, default=0, help="run seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the timeline")
    add_backend_flags(p)
    add_limit_flags(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from sim.engine import scenario as scenarios
    from sim.judge.invariants import judged_ids, verdict_lines
    from sim.judge.timeline import render
    from sim.runs.backends import close_backend, open_backend
    from sim.runs.runner import check_strategy_table, run_one

    scenario = with_table_sql(args, scenarios.load(args.scenario))
    strategy = load_strategy_arg(args.strategy)
    check_strategy_table(strategy, scenario)
    backend = open_backend(backend_spec(args), scenario.table)
    try:
        result = run_one(scenario, strategy, args.seed, backend, limits=limits_of(args))
    finally:
        close_backend(backend)
    if result.error:
        raise UserError(f"{result.error} (the run was not judged)")
    if args.json:
        out = {
            "scenario": result.scenario,
            "strategy": result.strategy,
            "backend": result.backend,
            "seed": result.seed,
            "violations": [{"invariant": v.invariant, "job": v.job, "detail": v.detail} for v in result.violations],
            "ops": result.ops,
        }
        if result.disagreements is not None:
            out["disagreements"] = list(result.disagreements)
        if result.unknown:
            out["unknown"] = [{"invariant": u.invariant, "error": u.error} for u in result.unknown]
        print(json.dumps(out, sort_keys=False))
    else:
        header = (
            f"{_as_typed(args)}  (backend {result.backend})\n"
            f"{len(result.record.truth)} job(s), {result.ops} database operation(s), "
            f"{result.record.end_us / 1000:.3f} ms simulated, timestamp tolerance {result.record.tolerance_us / 1000:.3f} ms"
        )
        print(_bounded(render(result.record, result.violations, header)))
        print()
        for crash in result.crashes:
            print(f"handler crash: {crash}")
        if result.disagreements is not None:
            print(differential_line(len(result.disagreements), result.disagreements[:1]))
        verdict = verdict_lines(result.violations, result.unknown, len(judged_ids(scenario.lifecycle)))
        if len(verdict) > MAX_VERDICT_LINES:
            more = len(verdict) - MAX_VERDICT_LINES
            verdict = [*verdict[:MAX_VERDICT_LINES], f"  ... {more:,} more violation(s) (--json prints them all)"]
        print("\n".join(verdict))
    return 1 if result.violations or result.disagreements else INTERNAL_ERROR if result.unknown else 0


#: A timeline longer than this is cut: a run of 100,000 jobs would print hundreds of megabytes.
MAX_TIMELINE_LINES = 2_000
MAX_VERDICT_LINES = 200


def _bounded(timeline: str) -> str:
    """The timeline, or its first lines and every later line that marks a violation."""
    lines = timeline.splitlines()
    if len(lines) <= MAX_TIMELINE_LINES:
        return timeline
    head = lines[: MAX_TIMELINE_LINES // 2]
    marked = [line for line in lines[len(head):] if "<-- " in line][: MAX_TIMELINE_LINES // 4]
    notice = (f"... {len(lines) - len(head):,} more lines; showing only the {len(marked):,} that mark a violation "
              "(--json prints every violation; a smaller job.count gives a whole timeline)")
    return "\n".join([*head, notice, *marked])


def _as_typed(args: argparse.Namespace) -> str:
    """The command that runs this run again, as the user named things (a scenario's path, a
    strategy's ``module:attr``, the table SQL): a bundled scenario and a built-in strategy read as
    before, ``racetrack run seed-fast-jobs --strategy naive --seed 0``."""
    import shlex

    argv = ["racetrack", "run", args.scenario, "--strategy", args.strategy, "--seed", str(args.seed)]
    if getattr(args, "table_sql", None):
        argv += ["--table-sql", args.table_sql]
    return shlex.join(argv)
