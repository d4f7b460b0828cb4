"""``racetrack export``: write a trace as a pytest regression test and/or a PostgreSQL isolation
tester spec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sim.cli.args import UsageError, load_strategy_arg, output_file
from sim.cli.output import write_output


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trace as a pytest regression test and/or an isolation tester spec")
    p.add_argument("trace", help="a trace file written by explore")
    p.add_argument("--pytest", metavar="FILE", type=output_file("--pytest"), help="write a pytest module that fails while the violation reproduces")
    p.add_argument("--isolation", metavar="FILE", type=output_file("--isolation"), help="write a PostgreSQL isolation tester spec (.spec)")
    p.add_argument("--strategy", help="the strategy the pytest test replays (default: the trace's)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from sim.runs.strategy_source import is_user, load_from, origin
    from sim.search import export, trace
    from tracker.strategies import StrategyNotFound

    if not args.pytest and not args.isolation:
        raise UsageError("export needs --pytest FILE and/or --isolation FILE")
    data = trace.read(Path(args.trace))
    strategy = args.strategy.strip() if args.strategy is not None else str(data["strategy"])
    if strategy == data["strategy"]:  # the trace's own: found from where the trace says it lives
        try:
            load_from(strategy, data.get("strategy_source"))
        except StrategyNotFound as exc:
            raise UsageError(f"{args.trace}: {exc}") from None
        source = data.get("strategy_source") if is_user(strategy) else None
    else:
        load_strategy_arg(strategy)
        where = origin(strategy)
        source = where.to_data() if where else None
    outputs = []
    if args.pytest:
        outputs.append((Path(args.pytest), export.pytest_file(data, strategy, args.trace, source)))
    if args.isolation:
        outputs.append((Path(args.isolation), export.isolation_spec(data, args.trace)))
    for (path, text), flag in zip(outputs, [f for f in ("--pytest", "--isolation") if getattr(args, f[2:])], strict=True):
        write_output(path, text.encode("utf-8"), flag)
        print(f"wrote {path}")
    return 0
