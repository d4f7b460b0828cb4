"""``racetrack export``: write a trace as a pytest regression test and/or a PostgreSQL isolation
tester spec."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sim.cli.args import UsageError, load_strategy_arg, output_file
from sim.cli.output import refuse_overwriting


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write a trace as a pytest regression test and/or an isolation tester spec")
    p.add_argument("trace", help="a trace file written by explore")
    p.add_argument("--pytest", metavar="FILE", type=output_file("--pytest"), help="write a pytest module that fails while the violation reproduces")
    p.add_argument("--isolation", metavar="FILE", type=output_file("--isolation"), help="write a PostgreSQL isolation tester spec (.spec)")
    p.add_argument("--strategy", help="the strategy the pytest test replays (default: the trace's)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from sim.runs.results_file import write_output_bytes
    from sim.runs.strategy_source import is_user, load_from, origin
    from sim.search import export, trace
    from tracker.strategies import StrategyNotFound

    if not args.pytest and not args.isolation:
        raise UsageError("export needs --pytest FILE and/or --isolation FILE")
    # Before reading anything: an output that is the trace would destroy it.
    flags = [(f, getattr(args, f[2:])) for f in ("--pytest", "--isolation") if getattr(args, f[2:])]
    refuse_overwriting(flags, [("trace", args.trace)])
    data = trace.read(Path(args.trace))
    strategy = args.strategy.strip() if args.strategy is not None else str(data["strategy"])
    if strategy == data["strategy"]:  # the trace's own: found from where the trace says it lives
        try:
            load_from(strategy, data.get("strategy_source"))
        except StrategyNotFound as exc:
            raise UsageError(f"{args.trace}: {exc}") from None
        source = data.get("strategy_source") if is_user(strategy) else None
        if source and source.get("file"):
            refuse_overwriting(flags, [("strategy file", source["file"])])
    else:
        load_strategy_arg(strategy)
        where = origin(strategy)
        source = where.to_data() if where else None
        if where is not None:
            refuse_overwriting(flags, [("strategy file", where.file)])
    try:
        # Both refuse a trace they cannot be true to (its table not recorded, or not the bundled
        # one for a spec) before anything is written.
        outputs = []
        if args.pytest:
            outputs.append((Path(args.pytest), export.pytest_file(data, strategy, args.trace, source)))
        if args.isolation:
            outputs.append((Path(args.isolation), export.isolation_spec(data, args.trace)))
    except trace.TraceError as exc:
        message = str(exc)
        raise UsageError(message if message.startswith(f"{args.trace}:") else f"{args.trace}: {message}") from None
    for (path, text), (flag, _) in zip(outputs, flags, strict=True):
        write_output_bytes(path, text.encode("utf-8"), f"{flag} {path}")
        print(f"wrote {path}")
    return 0
