"""Stopping a live batch on Ctrl-C or SIGTERM without a traceback and with everything cleaned up.

Outside live mode, SIGTERM (``sim.cli``) and Ctrl-C raise ``KeyboardInterrupt`` wherever the main
thread is. Inside an asyncio loop that lands in whatever callback happens to run (BullMQ's job
processing, a selector update, psycopg's wait): that task ends with the ``KeyboardInterrupt`` no one
retrieves ("Task exception was never retrieved", ``KeyError: '11 is not registered'``) and the
cleanup runs on a loop in an unknown state. So while a batch runs, :class:`Stop`:

* takes SIGINT and SIGTERM itself (only where the handler in place is Python's: an ignored
  signal stays ignored) and **cancels the batch's task**: every ``finally`` (workers closed, the
  queue's keys deleted, the schema dropped) runs on a working loop;
* **breaks into a handler that never gives the loop back** (``while True: pass`` in a strategy):
  a signal that arrives while a handler's code is being stepped raises :class:`HandlerInterrupted`
  right there, in the handler (which is abandoned with its run), so the loop regains control;
  handlers are not stepped again once a stop was asked for;
* stays silent about what tasks say while they are torn down (the loop's exception handler, and
  psycopg's "query cancellation interrupted" warning), once a stop was asked for;
* after the loop has ended, calls the handler the signal had before (:meth:`reraise`): Ctrl-C
  raises ``KeyboardInterrupt`` there, and SIGTERM is ended as Ctrl-C is (exit 143), at a place
  where that is safe.

A second SIGTERM ends the process at once (the default action, as ``sim.cli`` promises); a second
Ctrl-C raises ``KeyboardInterrupt`` where it lands, as asyncio's own handling does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: How long stopping waits for the tasks a batch leaves (BullMQ's, handlers') to end once cancelled.
DRAIN_S = 10.0


class HandlerInterrupted(BaseException):
    """Raised inside a handler's code by Ctrl-C or SIGTERM: a ``BaseException``, so that the
    interpreter does not take it for a crash of the strategy and ``except Exception`` does not
    swallow it."""


class Stop:
    """The signal handling of one live batch (see the module's docstring)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        #: Whether a handler's code is being stepped right now (set by the live driver).
        self.stepping = False
        self._previous: dict[int, Any] = {}
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    # -- the signal handlers ----------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[Stop]:
        """Take SIGINT and SIGTERM where Python handles them; give them back on exit."""
        self.signum, self.stepping, self._task, self._loop = None, False, None, None
        if threading.current_thread() is threading.main_thread():
            for taken in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(taken)
                if callable(previous):
                    self._previous[taken] = previous
                    signal.signal(taken, self._on_signal)
        psycopg_log = logging.getLogger("psycopg")
        quiet = psycopg_log.disabled
        try:
            yield self
        finally:
            psycopg_log.disabled = quiet
            for signum, previous in self._previous.items():
                if signal.getsignal(signum) == self._on_signal:
                    signal.signal(signum, previous)
            self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._loop is None:  # the batch has not started: as before, at once
            self._previous[signum](signum, frame)
            return
        if self.signum is not None:  # a second one
            if signum == signal.SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)
            raise KeyboardInterrupt
        self.signum = signum
        logging.getLogger("psycopg").disabled = True  # a query cancelled on the way out is expected
        task = self._task
        if task is not None and not task.done():
            self._loop.call_soon_threadsafe(task.cancel)
        if self.stepping:  # a handler's code holds the loop: break into it
            self.stepping = False
            raise HandlerInterrupted

    def reraise(self) -> None:
        """After the loop: end as the signal would have ended the command (raises
        ``KeyboardInterrupt``; for SIGTERM, through ``sim.cli``'s handler, which makes it 143)."""
        signum, self.signum = self.signum, None
        if signum is None:
            return
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)
        raise KeyboardInterrupt

    # -- the loop --------------------------------------------------------------------------------

    async def guard(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run the batch's coroutine; on a stop, let it clean up, then end every task it left."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._loop.set_exception_handler(self._exception_handler)
        try:
            return await coro
        except asyncio.CancelledError:
            if self.signum is None:
                raise
            return None
        finally:
            if self.signum is not None:
                await self._end_others()

    async def _end_others(self) -> None:
        """Cancel the tasks still running (BullMQ's, handlers') and wait for them, so that
        asyncio's own shutdown has nothing left to cancel or to complain about."""
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for task in others:
            task.cancel()
        if others:
            try:
                await asyncio.wait(others, timeout=DRAIN_S)
            except asyncio.CancelledError:  # the stop's own cancel arriving late: already stopping
                pass
        for task in others:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: nothing to say about it

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if self.signum is not None:
            return  # tasks torn down by a stop: nothing the user needs to read
        if isinstance(context.get("exception"), (KeyboardInterrupt, asyncio.CancelledError, HandlerInterrupted)):
            return
        loop.default_exception_handler(context)


#: The live batch's stop (one batch runs at a time in a process).
STOP = Stop()


def run(coro: Coroutine[Any, Any, T]) -> T | None:
    """``asyncio.run(coro)`` with :data:`STOP` taking Ctrl-C and SIGTERM; ``KeyboardInterrupt``
    after a clean stop (see the module's docstring)."""
    with STOP.installed():
        try:
            result = asyncio.run(STOP.guard(coro))
        except asyncio.CancelledError:  # a stop that arrived as the batch was ending
            if STOP.signum is None:
                raise
            result = None
        STOP.reraise()
    return result
