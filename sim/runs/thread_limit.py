"""The wall-clock limit of a run (``--max-run-seconds``) in a thread other than the main one.

The main thread's limit is a timer signal (``sim.engine.limits.wall_clock_limit``); only the main
thread takes signals. A run on another thread (the runs a worker keeps in flight on PostgreSQL,
a Dask worker's thread) gets the same limit from one watchdog thread per process, which raises
:class:`~sim.engine.limits.LimitExceeded` in the run's thread when its time is up
(``PyThreadState_SetAsyncExc``: like the signal, it lands between two bytecodes, so it stops a
loop that never yields), through :func:`raise_in_thread`. A run on one of the greenlet slots of
``sim.runs.inflight`` (the runs a worker keeps in flight) gets its exception through those slots
(:func:`set_slot_finder`), which raise it in that slot and in no other.

May import: ``sim.engine.limits`` and the standard library.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sim.engine.limits import LimitExceeded, wall_clock_limit


@dataclass
class _Deadline:
    at: float
    message: str
    #: Raises the given exception class in the run's thread or slot (None: withdraws it).
    deliver: Callable[[type[BaseException] | None], None]
    fired: bool = False


_lock = threading.Condition()
#: Thread ident (or slot) -> the deadline of the run it is running (at most one each).
_deadlines: dict[Any, _Deadline] = {}
_watchdog: threading.Thread | None = None


def raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next check (a function's start, a loop's
    jump back); None withdraws one that has not landed yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type else None)


#: A slot of ``sim.runs.inflight`` the calling code runs in, and how to raise in it.
SlotFound = tuple[Any, Callable[[type[BaseException] | None], None]]


def _no_slot() -> SlotFound | None:
    return None


_slot_finder: Callable[[], SlotFound | None] = _no_slot


def set_slot_finder(finder: Callable[[], SlotFound | None]) -> None:
    """How to find the calling code's slot (``sim.runs.inflight`` sets it once)."""
    global _slot_finder
    _slot_finder = finder


def _watch() -> None:
    with _lock:
        while True:
            now = time.monotonic()  # wall-clock ok: the limit is wall time, never a result
            waiting = [d.at for d in _deadlines.values() if not d.fired]
            for deadline in _deadlines.values():
                if not deadline.fired and deadline.at <= now:
                    deadline.fired = True
                    deadline.deliver(_exceeded(deadline.message))
            _lock.wait(timeout=max(min(waiting) - now, 0.001) if waiting else None)


def _exceeded(message: str) -> type[LimitExceeded]:
    """A :class:`LimitExceeded` class whose instances say ``message`` (an exception raised in another
    thread is given as a class and made without arguments)."""

    class RunTookTooLong(LimitExceeded):
        def __init__(self, *args: object) -> None:  # made again with its message (copied) or without (raised)
            super().__init__(*(args or (message,)))

    return RunTookTooLong


def start_watchdog() -> None:
    """Start this process's watchdog thread if it is not running. Start it from a thread nobody
    raises into: CPython (3.11) gives a thread being started its starter's ident until it runs, so
    an exception raised into the starter then can land in the new thread instead."""
    global _watchdog
    with _lock:
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="racetrack-run-limit", daemon=True)
            _watchdog.start()


@contextmanager
def _thread_limit(seconds: float, what: str) -> Iterator[None]:
    slot = _slot_finder()
    if slot is None:
        key: Any = threading.get_ident()
        deliver: Callable[[type[BaseException] | None], None] = functools.partial(raise_in_thread, key)
    else:
        key, deliver = slot
    message = f"{what} took longer than {seconds:g} s of wall time (--max-run-seconds)"
    if _watchdog is None:
        start_watchdog()
    with _lock:
        _deadlines[key] = _Deadline(time.monotonic() + seconds, message, deliver)  # wall-clock ok: see _watch
        _lock.notify()
    try:
        yield
    finally:
        with _lock:
            deadline = _deadlines.pop(key, None)
        if deadline is not None and deadline.fired:
            deadline.deliver(None)  # if it has not landed yet (the run ended meanwhile)
    if deadline is not None and deadline.fired:  # it fired as the run ended: say it here
        raise LimitExceeded(message)


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads: no watchdog, no run of theirs."""
    global _lock, _watchdog
    _lock, _watchdog = threading.Condition(), None
    _deadlines.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def run_time_limit(seconds: float, what: str) -> AbstractContextManager[None]:
    """``--max-run-seconds`` for a run on this thread: the timer signal on the main thread, the
    watchdog elsewhere. Raises :class:`LimitExceeded` saying ``what`` took too long."""
    if threading.current_thread() is threading.main_thread():
        return wall_clock_limit(seconds, what)
    return _thread_limit(seconds, what)
