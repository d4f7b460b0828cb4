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
import errno
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from sim import __version__
from sim.cli import calibrate, check, clean, explore, export, listing, live, replay, report, run, sweep
from sim.cli.args import INTERNAL_ERROR, CliParser, UsageError
from tracker.errors import UserError, redact

__all__ = ["UsageError", "build_parser", "entry", "main", "version"]


def version() -> str:
    """racetrack's version (pyproject.toml's, kept in ``sim.__version__``)."""
    return __version__


class _PrintVersion(argparse.Action):
    """``--version``: argparse's own version action, printing :func:`version`."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        print(f"racetrack {version()}")  # on stdout, as argparse's version action prints it
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="racetrack", description="Find, explain and compare races between a job queue's status handlers.")
    parser.add_argument("--version", action=_PrintVersion)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CliParser)
    for command in (run, sweep, check, explore, replay, export, report, live, calibrate, clean):
        command.add_parser(sub)
    listing.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv) if argv is not None else sys.argv[1:]
        return int(args.func(args))
    except UserError as exc:
        message = redact(str(exc))  # a password a message took from the user's input is never printed
        print(message if message.startswith("racetrack") else f"racetrack: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("racetrack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in racetrack itself: exit 3, never 1 (which means a violation)
        if _no_room(exc, "the output (standard output)"):  # a file names itself; stdout does not
            return 2
        log = _internal_error_log(exc)
        first = redact(str(exc).splitlines()[0]) if str(exc) else ""
        print(f"racetrack: internal error: {type(exc).__name__}: {first}"
              f" (a bug in racetrack, not in your input; the full report is in {log})", file=sys.stderr)
        return INTERNAL_ERROR


def _internal_error_log(exc: BaseException) -> str:
    """Write the traceback to a log file of its own and return its path."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix="racetrack-internal-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            log.write(redact(f"racetrack {version()} {' '.join(sys.argv[1:])}\n\n{text}"))
        return path
    except OSError:
        return "(no log: the temporary folder cannot be written)"


#: Whether this process got SIGTERM (see :func:`entry`).
_terminated = False


def _end_as_on_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM ends the command as Ctrl-C does: every run stopped at its next statement, every
    backend closed and schema dropped, every embedded server stopped. A second one ends the
    process at once."""
    global _terminated
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


#: What the environment, not racetrack, says when it cannot take a file or the output: a full disk
#: (or ``> /dev/full``), a read-only file system, a path name longer than the system allows.
_NO_ROOM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.ENAMETOOLONG)


def _no_room(exc: BaseException, where: str = "") -> bool:
    """Whether ``exc`` is a file operation the environment refused (see ``_NO_ROOM_ERRNOS``); if
    so, the one line that says so is printed (exit 2, an unusable environment, as a refused
    server is). ``where``: what was being written when the error does not name its file."""
    if not isinstance(exc, OSError) or exc.errno not in _NO_ROOM_ERRNOS:
        return False
    if exc.errno == errno.ENAMETOOLONG and exc.filename:
        print(f"racetrack: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return True
    named = f" {exc.filename}" if exc.filename else f" {where}" if where else ""
    print(f"racetrack: cannot write{named}: {exc.strerror or exc}", file=sys.stderr)
    return True


def entry() -> None:
    """The ``racetrack`` command: :func:`main`, with SIGTERM ended as Ctrl-C is (exit 143 instead
    of 130), unless whoever started it chose to ignore SIGTERM."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _end_as_on_ctrl_c)
    try:
        code = main()
    except SystemExit as exit_:  # --help and --version: argparse exits once it has printed
        code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    try:
        sys.stdout.flush()  # what is still buffered: a full disk refuses it here, not in main()
    except OSError as exc:
        if not _no_room(exc, "the output (standard output)"):
            raise
        code = 2
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure at exit
    sys.exit(128 + signal.SIGTERM if _terminated and code == 130 else code)
