"""What several commands share on the command line: the parser class, argument types (whole
numbers, seeds, positive numbers), the backend and execution flags, and strategy loading.

Each command module adds its own subparser; anything two commands ask the same way is here, so
that they ask it the same way and say the same thing when it is wrong.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from sim.engine.limit_defaults import MAX_SEED, OPS_PER_HANDLER, SIM_SECONDS, WALL_SECONDS
from sim.runs.backend_kinds import KINDS
from tracker.errors import UserError
from tracker.strategy_names import BUILTIN

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sim.engine.limits import Limits
    from sim.engine.scenario import Scenario
    from sim.runs import sweep
    from sim.runs.backends import BackendSpec
    from tracker.strategies import Strategy
    from tracker.table import Table

#: ``--executor``'s choices, as ``sim.runs.sweep.EXECUTORS`` (a test keeps the two equal): the
#: parser is built for every command, even ``racetrack --help``, and importing the sweep module
#: would import the simulation (SimPy) with it.
EXECUTORS = ("local", "dask")
#: ``--in-flight``'s default on a server, as ``sim.runs.sweep.DEFAULT_IN_FLIGHT`` (the same test).
DEFAULT_IN_FLIGHT = 2

#: The exit code of an internal error, a bug in racetrack (0, 1 and 2 are the documented verdicts;
#: 130 is Ctrl-C).
INTERNAL_ERROR = 3

class UsageError(UserError):
    """Arguments the command line itself cannot accept (a wrong flag, a missing name)."""


class CliParser(argparse.ArgumentParser):
    """argparse with its errors as :class:`UsageError` (one line, exit 2) instead of usage text,
    and the checks that need two flags at once (:func:`across_flags`) made where argparse checks
    one: before a command does anything."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def _print_message(self, message: str, file: Any = None) -> None:
        if message:  # argparse drops a failed write; a full disk must be said (sim.cli.main), not lost
            (file or sys.stderr).write(message)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:  # type: ignore[override]
        parsed, extras = super().parse_known_args(args, namespace)
        problem = across_flags(parsed)
        if problem:
            self.error(problem)
        return parsed, extras


def across_flags(args: argparse.Namespace) -> str | None:
    """What two flags given together cannot mean (None: nothing): the last seed of ``--runs``
    past the largest seed, ``--executor local`` with a ``--scheduler``. A type sees one flag
    only, and the mistake must be one line before anything runs or is written."""
    runs, first = getattr(args, "runs", None), getattr(args, "seed", None)
    if isinstance(runs, int) and isinstance(first, int) and first + runs - 1 > MAX_SEED:
        # run i uses seed+i: a seed past the maximum overflows a 64-bit column or a random stream
        return (f"--seed {first} with --runs {runs} would use seeds up to {first + runs - 1}; "
                f"the last seed must be <= {MAX_SEED} (use --seed <= {MAX_SEED - runs + 1})")
    if getattr(args, "executor", None) == "local" and getattr(args, "scheduler", None):
        return f"--executor local cannot use --scheduler {args.scheduler} (a Dask scheduler); drop one of them"
    return None


# --- argument types ----------------------------------------------------------------------------


#: Upper bounds: far beyond any honest use, low enough that a typo cannot fork a thousand
#: processes or queue a run that would not end this year.
MAX_RUNS = 10_000_000
MAX_WORKERS = max(64, 8 * (os.cpu_count() or 1))
#: Runs a worker keeps in flight at most: each holds a schema and its connections on the server.
MAX_IN_FLIGHT = 16
#: ``--max-run-seconds`` at most: 30 days, as ``--max-sim-seconds``' default. A run's wall-clock
#: timer cannot be set much further (Python's ``setitimer`` overflows past ~292 years).
MAX_WALL_SECONDS = 30 * 86_400.0


def whole(name: str, minimum: int, maximum: int | None = None, why: str = "") -> Callable[[str], int]:
    """An argument type: a whole number in [``minimum``, ``maximum``], or one line naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum} (got {value})")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{name} must be <= {maximum:,}{why} (got {value:,})")
        return value

    return parse


def positive(name: str, maximum: int | None = None, why: str = "") -> Callable[[str], int]:
    return whole(name, 1, maximum, why)


seed = whole("--seed", 0, MAX_SEED)


def nonempty(flag: str, what: str) -> Callable[[str], str]:
    """An argument type: any text but an empty one, which would otherwise read as "not given"
    (``--dsn "$UNSET"`` silently using the default server)."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"needs {what} (got an empty value)")
        return text

    return parse


def output_folder(flag: str) -> Callable[[str], str]:
    """An argument type: a folder racetrack may write into (it may not exist yet; not a file),
    checked before any work starts, as :func:`output_file` checks a file."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("needs a folder path")
        path = os.path.abspath(text)
        if os.path.isdir(path):
            problem = None if os.access(path, os.W_OK | os.X_OK) else f"cannot write in {path}"
        elif os.path.exists(path):
            problem = "is a file, not a folder; name a folder to write into"
        else:
            problem = unwritable(path)  # the nearest existing folder must let us create it
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return text

    return parse


def output_file(flag: str) -> Callable[[str], str]:
    """An argument type: a file path racetrack may write (not a folder; its folder creatable),
    checked before any work starts so that a long run does not fail at its last step."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("needs a file path")
        problem = unwritable(text)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return text

    return parse


def unwritable(path_text: str) -> str | None:
    """Why a file cannot be written at ``path_text`` (None: it can, as far as can be told now)."""
    path = os.path.abspath(path_text)
    if os.path.isdir(path):
        return "is a folder; name a file"
    folder = os.path.dirname(path)
    while not os.path.exists(folder):  # the nearest existing folder must let us create the rest
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder}"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "exists and cannot be written"
    return None


def positive_float(name: str, maximum: float | None = None, why: str = "") -> Callable[[str], float]:
    """An argument type: a finite number > 0 (and <= ``maximum``), or one line naming the flag."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0 (got {text})")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0 (got {text})")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{name} must be <= {maximum:.12g}{why} (got {text})")
        return value

    return parse


# --- strategies --------------------------------------------------------------------------------

_CHOICES = f"one of {', '.join(BUILTIN)} or module:attr"


def load_strategy_arg(name: str, flag: str = "--strategy") -> Strategy:
    """The one strategy a ``--strategy NAME`` names (a built-in or ``module:attr``)."""
    name = name.strip()
    if not name:
        raise UsageError(f"{flag} needs a name: {_CHOICES}")
    from tracker.strategies import load_strategy  # loads strategies' ops: not for --help

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
    from tracker.strategies import load_strategy

    user_modules_from_cwd(names)
    return [load_strategy(n) for n in names]


def user_modules_from_cwd(names: Sequence[str]) -> None:
    if any(":" in n for n in names) and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # module:attr names a module of the user's, as `python -m` would find it


# --- flags several commands share --------------------------------------------------------------


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=KINDS, default="memory",
                   help="memory (default), postgres (a real server), both (differential: compare every operation)")
    p.add_argument("--dsn", type=nonempty("--dsn", "a connection string"), help="PostgreSQL connection string (default: DATABASE_URL, else PG* variables, else an embedded server)")
    p.add_argument("--schema", type=nonempty("--schema", "a schema name prefix"), help="prefix of racetrack's own schema on the server (default: racetrack; _<pid>_<n> is added)")
    p.add_argument("--table-sql", metavar="FILE", type=nonempty("--table-sql", "a SQL file"),
                   help="SQL file creating the tracked table, as in your migrations (overrides the scenario's table.sql)")


def with_table_sql(args: argparse.Namespace, scenario: Scenario) -> Scenario:
    """``scenario`` tracking the table of ``--table-sql`` when it is given."""
    path = getattr(args, "table_sql", None)
    if not path:
        return scenario
    if not os.path.isfile(path):
        problem = "is a folder; name the SQL file" if os.path.isdir(path) else "not a regular file" if os.path.exists(path) else "no such file"
        raise UsageError(f"--table-sql {path}: {problem}")
    found = os.stat(path)
    # read once for every scenario of a command, but a file's table, not a name's: the same
    # relative name in another folder, or the file edited since, is another table
    return scenario.with_table(_table_of(path, os.path.abspath(path), found.st_mtime_ns, found.st_size), path)


@functools.cache
def _table_of(path: str, where: str, mtime_ns: int, size: int) -> Table:
    from tracker.table_sql import load_table  # pglast: only when a table is given

    return load_table(path)


def backend_spec(args: argparse.Namespace) -> BackendSpec:
    from sim.runs.backends import BackendSpec

    return BackendSpec(kind=args.backend, dsn=args.dsn, schema=args.schema)


def default_workers() -> int:
    """``--workers``' default, as ``sim.runs.sweep.default_workers`` (a test keeps the two equal)."""
    return os.cpu_count() or 1


def add_execution_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive("--workers", MAX_WORKERS, " (8 per core here, at least 64)"),
                   default=default_workers(),
                   help="worker processes (default: all cores, here %(default)s); results do not depend on it")
    # default None, not "local": an explicit --executor local with a --scheduler is a contradiction (across_flags)
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="local: a process pool on this machine; dask: a Dask cluster (default: local, or dask with --scheduler)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", type=nonempty("--scheduler", "a scheduler address"),
                   help="the Dask scheduler to use (implies --executor dask; without it, dask starts a LocalCluster of --workers)")
    p.add_argument("--in-flight", type=positive("--in-flight", MAX_IN_FLIGHT), metavar="N",
                   help=f"runs each worker keeps going at once, each on its own connections and schema, so the server works "
                        f"while Python simulates (default: {DEFAULT_IN_FLIGHT} with --backend postgres or both and fewer --workers "
                        f"than cores, else 1; at most {MAX_IN_FLIGHT}); results do not depend on it")


def execution(args: argparse.Namespace) -> sweep.Execution:
    from sim.runs import sweep

    executor = args.executor or ("dask" if args.scheduler else "local")
    return sweep.Execution(workers=args.workers, executor=executor, scheduler=args.scheduler, in_flight=args.in_flight)


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    """Limits that stop a runaway handler (the run becomes an error naming the handler)."""
    p.add_argument("--max-ops", type=positive("--max-ops", 100_000_000), default=OPS_PER_HANDLER,
                   help=f"operations one handler may yield (default: {OPS_PER_HANDLER:,})")
    p.add_argument("--max-sim-seconds", type=positive_float("--max-sim-seconds"), default=SIM_SECONDS,
                   help=f"simulated seconds one run may last (default: {SIM_SECONDS:g})")
    p.add_argument("--max-run-seconds", type=positive_float("--max-run-seconds", MAX_WALL_SECONDS, " (30 days)"), default=WALL_SECONDS,
                   help=f"wall-clock seconds one run may take (default: {WALL_SECONDS:g}; at most {MAX_WALL_SECONDS:.12g}: 30 days)")


def limits_of(args: argparse.Namespace) -> Limits:
    from sim.engine.limits import Limits

    return Limits(args.max_ops, args.max_sim_seconds, args.max_run_seconds)


def limits_applied(args: argparse.Namespace) -> AbstractContextManager[None]:
    """The limits of ``args`` in force in this process while the block runs."""
    from sim.engine.limits import applied

    return applied(limits_of(args))


def add_scenario_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="a bundled scenario name or a path to a .toml file")


def add_seeds_flags(p: argparse.ArgumentParser, runs: int) -> None:
    """``--runs`` and ``--seed`` of the commands that run many seeds (run i uses seed+i)."""
    p.add_argument("--runs", type=positive("--runs", MAX_RUNS), default=runs, help=f"runs per scenario and strategy (default: {runs})")
    p.add_argument("--seed", type=seed, default=0, help="first seed; run i uses seed+i (default: 0)")
