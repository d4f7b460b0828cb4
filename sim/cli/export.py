"""``racetrack export``: write a trace as a pytest regression test and/or a PostgreSQL isolation
tester spec."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
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


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode when both exist (a link, another
    spelling), else the same resolved path (a file about to be written)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(outputs: Iterable[tuple[str, str | Path]], inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse, in one line, an output (``(flag, path)``) that is one of the command's inputs
    (``(what, path)``) or another of its outputs: writing it would destroy what the command
    reads, or one output would silently replace the other."""
    outputs, inputs = list(outputs), list(inputs)
    for i, (flag, path) in enumerate(outputs):
        for what, source in inputs:
            if same_file(path, source):
                raise UsageError(f"{flag} {path}: is the {what} this command reads; name another file")
        for other, other_path in outputs[:i]:
            if same_file(path, other_path):
                raise UsageError(f"{flag} {path}: is also the {other} file; name two different files")


def cmd_export(args: argparse.Namespace) -> int:
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
        write_output(path, text.encode("utf-8"), flag)
        print(f"wrote {path}")
    return 0
