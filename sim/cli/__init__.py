"""The ``racetrack`` command line, assembled from one module per command (each adds its own
subparser and options); the flags and argument types they share are in ``sim.cli.args``, the
text they print beyond a timeline in ``sim.cli.output``.

Exit codes (the design's contract): 0 all invariants held or the command did its job; 1 a
violation was found where the command judges; 2 bad input or an unusable environment, said in
one line on stderr, never a traceback. Every such error is a ``tracker.errors.UserError``,
raised where the problem is found and caught once, in :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from sim.cli import check, clean, explore, export, listing, replay, report, run, sweep
from sim.cli.args import CliParser, UsageError
from tracker.errors import UserError

__all__ = ["UsageError", "build_parser", "entry", "main", "version"]


def version() -> str:
    """The installed distribution's version; from a source tree that is not installed, the
    version its pyproject.toml declares."""
    try:
        return metadata.version("racetrack")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="racetrack", description="Find, explain and compare races between a job queue's status handlers.")
    parser.add_argument("--version", action="version", version=f"racetrack {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)
    for command in (run, sweep, check, explore, replay, export, report, clean):
        command.add_parser(sub)
    listing.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv) if argv is not None else sys.argv[1:]
        return int(args.func(args))
    except UserError as exc:
        message = str(exc)
        print(message if message.startswith("racetrack") else f"racetrack: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("racetrack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())
