"""What several commands share on the command line: the parser class, argument types (whole
numbers, seeds, positive numbers), the backend and execution flags, and strategy loading.

Each command module adds its own subparser; anything two commands ask the same way is here, so
that they ask it the same way and say the same thing when it is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sim.runs import sweep
from sim.runs.backends import KINDS, BackendSpec
from tracker.errors import UserError
from tracker.strategies import BUILTIN, Strategy, load_strategy


class UsageError(UserError):
    """Arguments the command line itself cannot accept (a wrong flag, a missing name)."""


class CliParser(argparse.ArgumentParser):
    """argparse with its errors as :class:`UsageError` (one line, exit 2) instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# --- argument types ----------------------------------------------------------------------------


def whole(name: str, minimum: int) -> Callable[[str], int]:
    """An argument type: a whole number >= ``minimum``, or one line naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum} (got {value})")
        return value

    return parse


def positive(name: str) -> Callable[[str], int]:
    return whole(name, 1)


seed = whole("--seed", 0)


def positive_float(name: str) -> Callable[[str], float]:
    """An argument type: a finite number > 0, or one line naming the flag."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be > 0 (got {text})")
        return value

    return parse


# --- strategies --------------------------------------------------------------------------------

_CHOICES = f"one of {', '.join(BUILTIN)} or module:attr"


def load_strategy_arg(name: str, flag: str = "--strategy") -> Strategy:
    """The one strategy a ``--strategy NAME`` names (a built-in or ``module:attr``)."""
    name = name.strip()
    if not name:
        raise UsageError(f"{flag} needs a name: {_CHOICES}")
    user_modules_from_cwd([name])
    return load_strategy(name)


def strategy_refs(spec: str | None) -> list[str]:
    """The names a ``--strategies A,B`` lists (every built-in when not given), each loaded once
    here so that a bad one is one line before anything runs; worker processes load them again
    by name."""
    if spec is None:
        return list(BUILTIN)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--strategies needs at least one name: {_CHOICES}")
    load_strategies(names)
    return names


def load_strategies(names: Sequence[str]) -> list[Strategy]:
    user_modules_from_cwd(names)
    return [load_strategy(n) for n in names]


def user_modules_from_cwd(names: Sequence[str]) -> None:
    if any(":" in n for n in names) and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module:attr names a module of the user's, as `python -m` would find it


# --- flags several commands share --------------------------------------------------------------


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=KINDS, default="memory",
                   help="memory (default), postgres (a real server), both (differential: compare every operation)")
    p.add_argument("--dsn", help="PostgreSQL connection string (default: DATABASE_URL, else PG* variables, else an embedded server)")
    p.add_argument("--schema", help="prefix of racetrack's own schema on the server (default: racetrack; _<pid>_<n> is added)")


def backend_spec(args: argparse.Namespace) -> BackendSpec:
    return BackendSpec(kind=args.backend, dsn=args.dsn, schema=args.schema)


def add_execution_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive("--workers"), default=sweep.default_workers(),
                   help="worker processes (default: all cores, here %(default)s); results do not depend on it")
    p.add_argument("--executor", choices=sweep.EXECUTORS, default="local",
                   help="local: a process pool on this machine; dask: a Dask cluster (default: local)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="the Dask scheduler to use (implies --executor dask; without it, dask starts a LocalCluster of --workers)")


def execution(args: argparse.Namespace) -> sweep.Execution:
    return sweep.Execution(workers=args.workers, executor=args.executor, scheduler=args.scheduler)


def add_scenario_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")


def add_seeds_flags(p: argparse.ArgumentParser, runs: int) -> None:
    """``--runs`` and ``--seed`` of the commands that run many seeds (run i uses seed+i)."""
    p.add_argument("--runs", type=positive("--runs"), default=runs, help=f"runs per scenario and strategy (default: {runs})")
    p.add_argument("--seed", type=seed, default=0, help="first seed; run i uses seed+i (default: 0)")
