"""Limits that stop a runaway handler: operations per handler, simulated time per run, wall time
per run. The defaults are far beyond anything a bundled scenario comes near; a run that reaches one
ends as an error naming the handler, its file and line, and the limit (it judged nothing).

Imports ``tracker.errors`` and ``sim.engine.limit_defaults`` only; no SimPy.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sim.engine.limit_defaults import OPS_PER_HANDLER, SIM_SECONDS, WALL_SECONDS
from tracker.errors import UserError


@dataclass(frozen=True)
class Limits:
    #: Operations (statements, sleeps, clock reads) one handler may yield.
    ops_per_handler: int = OPS_PER_HANDLER
    #: Simulated seconds one run may last (a retry's backoff counts).
    sim_seconds: float = SIM_SECONDS
    #: Wall-clock seconds one run may take (a handler stuck in a CPU loop).
    wall_seconds: float = WALL_SECONDS

    def fingerprint(self) -> dict[str, float]:
        """What differs from the defaults (empty for the defaults: old fingerprints stay valid)."""
        default = Limits()
        return {k: v for k, v in vars(self).items() if v != getattr(default, k)}


DEFAULT_LIMITS = Limits()
#: The longest wall-clock timer :func:`wall_clock_limit` sets (a century: it never fires).
LONGEST_TIMER_SECONDS = 100 * 365 * 86_400.0
_current = DEFAULT_LIMITS


def current() -> Limits:
    """The limits in force in this process (a command sets them with :func:`applied`)."""
    return _current


@contextmanager
def applied(limits: Limits) -> Iterator[None]:
    """Run the forced-order driver and searches under ``limits`` (sweeps pass theirs to workers)."""
    global _current
    previous, _current = _current, limits
    try:
        yield
    finally:
        _current = previous


class LimitExceeded(BaseException):
    """A run reached a limit. A ``BaseException``: strategy code's ``except Exception`` must not
    swallow it. ``str()`` is the one line the user sees."""


class StrategyFailed(UserError):
    """A search or a replay ran a handler that crashed or reached a limit: the strategy's bug, one
    line for the user (a sweep records it as an error row instead)."""


@contextmanager
def wall_clock_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`LimitExceeded` in this thread after ``seconds`` (a timer signal: it stops a
    loop that never yields). Only the main thread can take signals; elsewhere (Dask's worker
    threads) the limit does not apply."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise LimitExceeded(f"{what} took longer than {seconds:g} s of wall time (--max-run-seconds)")

    previous = signal.signal(signal.SIGALRM, expired)
    # Python keeps a timer in 64-bit nanoseconds: a limit past ~292 years overflows setitimer. The
    # command line stops at 30 days; a caller of the API asking for more gets a timer that never fires.
    signal.setitimer(signal.ITIMER_REAL, min(seconds, LONGEST_TIMER_SECONDS))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
