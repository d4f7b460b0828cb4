"""Several runs in flight in one process: a few threads ("slots"), each running one run at a time.

On PostgreSQL a run spends much of its time waiting for the server; psycopg releases the GIL while
it waits, so while one slot's run waits another slot's run simulates, and the server is not idle
while Python works. Each slot keeps its own backend (its own connections and schema: the caller's
``work`` opens it per thread), so runs never share a session. A :class:`Batch` collects the values
of its calls in the order they were given, whichever slot ran which: rows stay in plan order.

Ctrl-C reaches the main thread only; :meth:`Slots.stop` passes it on to the slots running a call,
so a sweep stops as promptly as one running in the main thread, and each slot closes its backends
(``on_exit``) before it ends. It asks first (``on_interrupt``: the PostgreSQL backends cancel their
statements and raise ``KeyboardInterrupt`` at their next one, where nothing is half done) and
waits up to ``STOP_GRACE_S`` for the calls to end. Only a call still running after that (a handler
in a loop that never yields) gets ``KeyboardInterrupt`` raised into its thread from outside
(``sim.runs.thread_limit.interrupt``): that can land anywhere, inside a lock or in a thread the
slot is starting, which is why it is the last resort. A slot opening a backend
(:func:`uninterrupted`) gets it once the backend is open, so that its schema is never created
without a backend that drops it.

May import: ``sim.runs.thread_limit`` and the standard library.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sim.runs.thread_limit import interrupt, start_watchdog, withdraw

#: How long a stop waits for the calls it asked to end before it raises into their threads.
STOP_GRACE_S = 10.0


class Batch:
    """The values of some calls, in the order given, once every one has run (a future)."""

    def __init__(self, count: int) -> None:
        self.values: list[Any] = [None] * count
        self.left = count
        self.error: BaseException | None = None
        self.cancelled = False
        self.finished = threading.Event()
        if not count:
            self.finished.set()

    def _set(self, index: int, value: Any) -> None:
        self.values[index] = value
        self.left -= 1  # one slot at a time: under Slots.lock
        if not self.left:
            self.finished.set()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.finished.set()

    def result(self) -> list[Any]:
        self.finished.wait()
        if self.error is not None:
            raise self.error
        if self.cancelled:
            raise KeyboardInterrupt  # stopped before it ran: nobody reads it (the sweep is ending)
        return self.values

    def cancel(self) -> bool:
        """Calls not started yet are skipped."""
        self.cancelled = True
        return True


class Slots:
    """``size`` threads of this process, each running one call at a time from a shared queue."""

    def __init__(
        self, size: int, on_exit: Callable[[], None] = lambda: None, on_interrupt: Callable[[], None] = lambda: None
    ) -> None:
        self.size, self.on_exit, self.on_interrupt = size, on_exit, on_interrupt
        start_watchdog()  # here, not in a slot: a thread a slot starts could catch the slot's interrupt
        self.jobs: queue.SimpleQueue[tuple[Batch, int, Callable[[], Any]] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when a slot ends a call
        self.busy: set[int] = set()  # idents of the slots running a call
        self.interrupted: set[int] = set()
        self.pending: set[Batch] = set()
        self.threads = [threading.Thread(target=self._serve, name=f"racetrack-slot-{i}", daemon=True) for i in range(size)]
        for thread in self.threads:
            thread.start()

    def submit(self, calls: Sequence[Callable[[], Any]]) -> Batch:
        batch = Batch(len(calls))
        with self.lock:
            self.pending.add(batch)
        for index, call in enumerate(calls):
            self.jobs.put((batch, index, call))
        return batch

    def _serve(self) -> None:
        ident = threading.get_ident()
        try:
            while (job := self.jobs.get()) is not None:
                batch, index, call = job
                if batch.cancelled or batch.finished.is_set():  # the sweep stopped waiting for it, or a call failed
                    with self.lock:
                        self.pending.discard(batch)
                    continue
                with self.lock:
                    self.busy.add(ident)
                try:
                    value = call()
                except BaseException as exc:  # the caller of result() raises it (a stop's interrupt too)
                    with self.lock:
                        batch._fail(exc)
                        self.pending.discard(batch)
                else:
                    with self.lock:
                        batch._set(index, value)
                        if batch.finished.is_set():
                            self.pending.discard(batch)
                finally:
                    with self.lock:
                        self.busy.discard(ident)
                        self.idle.notify_all()
                        if ident in self.interrupted:  # a stop's interrupt that may not have landed
                            self.interrupted.discard(ident)
                            withdraw(ident)
        except BaseException:  # a stop's interrupt landing between calls: the slot ends all the same
            pass
        finally:
            self.on_exit()

    def stop(self, interrupt_running: bool = False) -> None:
        """End every slot (after closing its backends). ``interrupt_running``: Ctrl-C in the calls
        running now and skip those not started; otherwise they all finish first."""
        if interrupt_running:
            with self.lock:
                for batch in self.pending:
                    batch.cancel()
                    batch._fail(KeyboardInterrupt())
            self.on_interrupt()
            with self.lock:
                self.idle.wait_for(lambda: not self.busy, timeout=STOP_GRACE_S)
        with self.lock:
            if interrupt_running:
                with _shield_lock:
                    for ident in self.busy:
                        if ident in _shielded:
                            _deferred.add(ident)  # raised where its shield ends
                        else:
                            self.interrupted.add(ident)
                            interrupt(ident)
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


_shield_lock = threading.Lock()
_shielded: set[int] = set()  # idents of slots inside `uninterrupted`
_deferred: set[int] = set()  # of those, the ones a stop would have interrupted


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A stop's Ctrl-C waits for the end of this block (then raises there): for opening a backend,
    whose schema could be created but not yet known to anything that drops it."""
    ident = threading.get_ident()
    with _shield_lock:
        _shielded.add(ident)
    try:
        yield
    finally:
        with _shield_lock:
            _shielded.discard(ident)
            stopped = ident in _deferred
            _deferred.discard(ident)
    if stopped:
        raise KeyboardInterrupt


_process_slots: Slots | None = None
_process_lock = threading.Lock()


def process_slots(size: int, on_exit: Callable[[], None], on_interrupt: Callable[[], None] = lambda: None) -> Slots:
    """This process's slots (a pool worker's), made on first use, ``size`` of them."""
    global _process_slots
    with _process_lock:
        if _process_slots is None or _process_slots.size != size:
            if _process_slots is not None:
                _process_slots.stop()
            _process_slots = Slots(size, on_exit, on_interrupt)
        return _process_slots


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads: it makes slots of its own."""
    global _process_slots, _process_lock, _shield_lock
    _process_slots, _process_lock, _shield_lock = None, threading.Lock(), threading.Lock()
    _shielded.clear()
    _deferred.clear()


os.register_at_fork(after_in_child=_forget_in_child)
