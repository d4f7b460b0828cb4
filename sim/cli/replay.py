"""``racetrack replay``: re-run a trace's schedule, on any backend and optionally with another
strategy's handlers (exit 1 when its violation reproduces)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from sim.cli.args import UsageError, add_backend_flags, add_limit_flags, backend_spec, limits_applied, load_strategy_arg


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="re-run a trace's schedule (exit 1 when its violation reproduces)")
    p.add_argument("trace", help="a trace file written by explore")
    add_backend_flags(p)
    p.add_argument("--strategy", help="replay another strategy's handlers in the trace's order (default: the trace's)")
    p.add_argument("--strict", action="store_true", help="any violation counts, not only the trace's own")
    p.add_argument("--json", action="store_true", help='print {"reproduced", "exact", "strategy", "backend", "ops", "violations"}')
    add_limit_flags(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    from sim.engine.ordered import WrongTable
    from sim.judge.timeline import transcript
    from sim.search import trace
    from sim.search.replay import replay_data
    from tracker.strategies import StrategyNotFound

    data = trace.read(Path(args.trace))
    # The trace's own strategy is found where the trace says it lives, named or not.
    own = args.strategy is None or args.strategy.strip() == data.get("strategy")
    strategy = None if own else load_strategy_arg(args.strategy)
    try:
        with limits_applied(args):
            if args.table_sql:
                raise UsageError("replay --table-sql: a trace replays on the table it was found on, which it carries; "
                                 "drop --table-sql")
            trace.table_of(data)  # the table it was found on must come with it: said here, as it is
            result = replay_data(data, strategy, backend_spec(args), strict=args.strict)
    except (trace.TraceError, StrategyNotFound, WrongTable) as exc:
        # What is wrong is inside the trace (its format, its schedule, the strategy it names, the
        # table it was found on): the user needs to know which file.
        raise UsageError(f"{args.trace}: {exc}") from None
    if args.json:
        print(json.dumps({
            "reproduced": result.reproduced, "exact": result.exact, "strategy": result.strategy,
            "backend": result.backend, "ops": result.run.ops,
            "violations": [{"invariant": v.invariant, "job": v.job, "detail": v.detail} for v in result.violations],
        }))
    else:
        ref = args.strategy.strip() if args.strategy is not None else str(data["strategy"])
        header = f"racetrack replay {shlex.quote(str(Path(args.trace).resolve()))} --strategy {ref} --backend {result.backend}"
        print(transcript(result.run.record, result.violations, result.case.clocks, header))
        print()
        print(result.summary())
    return 1 if result.reproduced else 0
