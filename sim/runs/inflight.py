"""Several runs in flight in one process: a few greenlets ("slots") on one thread of their own
(the hub's), each running one run at a time and switching to the others whenever its run waits.

On PostgreSQL a run spends much of its time waiting for the server. A slot's wait for an answer
(``tracker.waits``, which this module registers with) switches to the hub, which polls every
waiting slot's socket and switches to a slot whose answer came, or that has a call to start; so
the server works while Python simulates. Only one run executes Python at a time, as with a
thread per slot under the GIL, but no thread waits for the GIL or wakes another: 1.06-1.24x the
statements per second of a thread per slot (docs/performance.md, "Runs in flight as
greenlets"). Each slot keeps its own backend (its own connections and schema; per-slot state is a
:class:`SlotLocal`), so runs never share a session. What a slot does that does not wait through
``tracker.waits`` (connecting; a statement that may wait for a row lock, on the backend's own
thread) blocks the hub meanwhile: correct, only slower. A :class:`Batch` collects the values of
its calls in the order they were given, whichever slot ran which: rows stay in plan order.

Ctrl-C reaches the main thread only; :meth:`Slots.stop` passes it on to the slots running a call,
so a sweep stops as promptly as one running in the main thread, and each slot closes its backends
(``on_exit``) before it ends. It asks first (``on_interrupt``: the PostgreSQL backends cancel their
statements and raise ``KeyboardInterrupt`` at their next one, where nothing is half done) and
waits up to ``STOP_GRACE_S`` for the calls to end. Only a call still running after that (a handler
in a loop that never yields, a run whose server never answers) gets ``KeyboardInterrupt`` raised
into it from outside
(:func:`interrupt`): that can land anywhere in the call, inside a lock or in a thread it is
starting, which is why it is the last resort. A slot opening a backend (:func:`uninterrupted`)
gets it once the backend is open, so that its schema is never created without a backend that
drops it.

Raising into a slot (:meth:`Slots.deliver`: the stop's last resort, and ``--max-run-seconds``
from ``sim.runs.thread_limit``'s watchdog) lands in that slot and never in another or in the hub.
A slot that is not executing gets it where it resumes. The slot executing (``Slots.running``,
read and written under ``switch_lock``) gets it raised into the hub's thread
(``PyThreadState_SetAsyncExc``), which delivers it at that thread's next check: a slot stops
executing only in :meth:`Slots._suspend` (or as it ends), which first takes ``switch_lock`` and
calls a Python function, where CPython makes that check, so the exception lands there, in the
slot it was meant for. A run stopped so while it waits for an answer has its statement cancelled
and its connection closed (``tracker.postgres._answer``): the next run on it reconnects.

May import: ``sim.runs.thread_limit``, ``tracker.waits``, ``greenlet`` and the standard library.
"""

from __future__ import annotations

import os
import select
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from greenlet import getcurrent, greenlet

from sim.runs import thread_limit
from sim.runs.thread_limit import raise_in_thread, start_watchdog
from tracker import waits

#: How long a stop waits for the calls it asked to end before it raises into them.
STOP_GRACE_S = 10.0

#: What a slot asks the hub for when it switches to it: the next call, or to wait for a socket.
_NEXT, _WAIT = "next", "wait"


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


def _checkpoint() -> None:
    """Nothing. Calling a Python function is where CPython delivers an exception raised into the
    calling thread from outside, so one raised for the slot executing lands here, in that slot."""


class Slots:
    """``size`` greenlets on one thread of this process, each running one call at a time from a
    shared queue and switching to the others while its call waits (``tracker.waits``)."""

    def __init__(
        self, size: int, on_exit: Callable[[], None] = lambda: None, on_interrupt: Callable[[], None] = lambda: None
    ) -> None:
        self.size, self.on_exit, self.on_interrupt = size, on_exit, on_interrupt
        start_watchdog()  # here, not in the hub: a thread the hub starts could catch a slot's interrupt
        _install()
        self.jobs: deque[tuple[Batch, int, Callable[[], Any]] | None] = deque()  # under lock
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when a slot ends a call
        self.busy: set[greenlet] = set()  # the slots running a call
        self.interrupted: set[greenlet] = set()
        self.pending: set[Batch] = set()
        #: Held while a slot starts or stops executing, and while something is raised into one.
        self.switch_lock = threading.Lock()
        self.running: greenlet | None = None  # the slot executing on the hub's thread, if any
        self.throws: dict[greenlet, type[BaseException]] = {}  # raised in these slots where they resume
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()
        self._closed = False  # the pipe closed (after stop): its numbers may be another file's now
        self.broken: BaseException | None = None  # what ended the hub, if not a stop
        self.hub: greenlet | None = None
        self.ident = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._hub, args=(started,), name="racetrack-slots", daemon=True)
        self.thread.start()
        started.wait()

    def submit(self, calls: Sequence[Callable[[], Any]]) -> Batch:
        batch = Batch(len(calls))
        with self.lock:
            if self.broken is not None:
                batch._fail(self.broken)
                return batch
            self.pending.add(batch)
            self.jobs.extend((batch, index, call) for index, call in enumerate(calls))
        self._wake()
        return batch

    def _wake(self) -> None:
        """Have the hub look at its queue and at what is to be raised (from any thread)."""
        with self._wake_lock:
            if self._closed:
                return
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:
                pass  # full: the hub wakes all the same

    # -- the hub: this object's thread, switching between its slots ------------------------------

    def _hub(self, started: threading.Event) -> None:
        self.hub, self.ident = getcurrent(), threading.get_ident()
        _hubs[self.ident] = self
        started.set()
        slots = [greenlet(self._serve, parent=self.hub) for _ in range(self.size)]
        ready: deque[tuple[greenlet, Any]] = deque((slot, None) for slot in slots)
        waiting: dict[int, list[tuple[greenlet, int]]] = {}  # socket -> the slots waiting for it, and for what
        idle: deque[greenlet] = deque()  # slots waiting for a call
        sockets = select.poll()
        sockets.register(self._wake_r, select.POLLIN)
        alive = len(slots)
        try:
            while alive:
                while ready:
                    slot, value = ready.popleft()
                    try:
                        asked = slot.switch(value)
                    except BaseException:  # a slot ends so only when an interrupt comes as it ends
                        asked = None
                    if slot.dead:
                        alive -= 1
                    elif asked[0] == _WAIT:
                        _, fd, events = asked
                        waiters = waiting.setdefault(fd, [])
                        waiters.append((slot, events))
                        sockets.register(fd, _union(waiters))
                    else:
                        idle.append(slot)
                with self.lock:
                    while idle and self.jobs:
                        ready.append((idle.popleft(), self.jobs.popleft()))
                with self.switch_lock:
                    raised = [(fd, w) for fd, waiters in waiting.items() for w in waiters if w[0] in self.throws]
                for fd, waiter in raised:  # stop waiting: what was raised in it is raised where it resumes
                    waiting[fd].remove(waiter)
                    ready.append((waiter[0], None))
                    if waiting[fd]:
                        sockets.register(fd, _union(waiting[fd]))
                    else:
                        del waiting[fd]
                        sockets.unregister(fd)
                if ready or not alive:
                    continue
                for fd, _ in sockets.poll():
                    if fd == self._wake_r:
                        while _read_some(fd):
                            pass
                    elif fd in waiting:  # every slot waiting for it looks again (libpq's callers loop)
                        sockets.unregister(fd)
                        ready.extend((slot, None) for slot, _ in waiting.pop(fd))
        except BaseException as exc:  # a fault of the hub's own: whoever waits gets it rather than hang
            with self.lock:
                self.broken = exc
                for batch in self.pending:
                    batch._fail(exc)
                self.jobs.clear()
                self.busy.clear()
                self.idle.notify_all()
            with self.switch_lock:
                self.running = None
            raise
        finally:
            _hubs.pop(self.ident, None)

    # -- a slot: a greenlet of the hub's --------------------------------------------------------

    def _serve(self, _: Any = None) -> None:
        me = getcurrent()
        try:
            self._resumed(me)
            while (job := self._suspend((_NEXT,))) is not None:
                batch, index, call = job
                if batch.cancelled or batch.finished.is_set():  # the sweep stopped waiting for it, or a call failed
                    with self.lock:
                        self.pending.discard(batch)
                    continue
                with self.lock:
                    self.busy.add(me)
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
                        self.busy.discard(me)
                        self.idle.notify_all()
                        if me in self.interrupted:  # a stop's interrupt that may not have landed
                            self.interrupted.discard(me)
                            self.deliver(me, None)
        except BaseException:  # a stop's interrupt landing between calls: the slot ends all the same
            pass
        finally:
            try:
                self.on_exit()
            finally:
                with self.switch_lock:
                    try:
                        _checkpoint()
                    finally:
                        self.running = None
                        self.throws.pop(me, None)

    def _suspend(self, asked: tuple[Any, ...]) -> Any:
        """Switch to the hub asking for ``asked`` (the next call, or a wait for a socket); what the
        hub answers once this slot runs again (the call; None: stop)."""
        me = getcurrent()
        with self.switch_lock:
            _checkpoint()  # raised into this slot while it executed: lands here, in it
            self.running = None
        assert self.hub is not None
        value = self.hub.switch(asked)
        self._resumed(me)
        return value

    def _resumed(self, me: greenlet) -> None:
        with self.switch_lock:
            self.running = me
            raised = self.throws.pop(me, None)
        if raised is not None:
            raise raised

    def wait(self, fd: int, events: int) -> None:
        """In a slot: let the other slots run until ``fd`` is ready for ``events``."""
        self._suspend((_WAIT, fd, events))

    def deliver(self, slot: greenlet, raised: type[BaseException] | None) -> None:
        """Raise ``raised`` in ``slot`` (from any thread): at once if it is executing, else where
        it resumes. None withdraws what was raised in it and has not landed yet."""
        with self.switch_lock:
            if raised is None:
                self.throws.pop(slot, None)
            elif self.running is not slot:
                self.throws[slot] = raised
            if self.running is slot:
                raise_in_thread(self.ident, raised)
        if raised is not None:
            self._wake()

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
                    for slot in self.busy:
                        if slot in _shielded:
                            _deferred.add(slot)  # raised where its shield ends
                        else:
                            self.interrupted.add(slot)
                            interrupt(self, slot)
            self.jobs.extend([None] * self.size)
        self._wake()
        self.thread.join()
        with self._wake_lock:
            if not self._closed:
                self._closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)


def interrupt(slots: Slots, slot: greenlet) -> None:
    """Ctrl-C in ``slot``: ``KeyboardInterrupt`` there, as the main thread would get it."""
    slots.deliver(slot, KeyboardInterrupt)


def _union(waiters: list[tuple[greenlet, int]]) -> int:
    events = 0
    for _, wanted in waiters:
        events |= wanted
    return events


def _read_some(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


#: Thread ident -> the Slots whose hub runs on that thread.
_hubs: dict[int, Slots] = {}


def _slot_here() -> tuple[Slots, greenlet] | None:
    """The Slots and the slot the calling code runs in, if it runs in one."""
    slots = _hubs.get(threading.get_ident())
    if slots is None:
        return None
    me = getcurrent()
    return None if me is slots.hub else (slots, me)


class _Switcher:
    """``tracker.waits``' way into the slots: a wait in a slot switches to its hub."""

    def here(self) -> bool:
        return _slot_here() is not None

    def wait(self, fd: int, events: int) -> None:
        _hubs[threading.get_ident()].wait(fd, events)


def _limit_target() -> tuple[Any, Callable[[type[BaseException] | None], None]] | None:
    """For ``--max-run-seconds`` on a slot: the slot, and how to raise in it."""
    found = _slot_here()
    if found is None:
        return None
    slots, slot = found
    return slot, lambda raised: slots.deliver(slot, raised)


def _install() -> None:
    waits.register(_Switcher())
    thread_limit.set_slot_finder(_limit_target)


class SlotLocal:
    """Attributes of the calling slot, or of the calling thread outside a slot: a
    ``threading.local`` that tells the slots of one hub apart."""

    def __init__(self) -> None:
        object.__setattr__(self, "_threads", threading.local())
        object.__setattr__(self, "_slots", weakref.WeakKeyDictionary())

    def _space(self) -> dict[str, Any]:
        found = _slot_here()
        if found is None:
            space: dict[str, Any] = self._threads.__dict__
            return space
        return self._slots.setdefault(found[1], {})  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        try:
            return self._space()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._space()[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self._space()[name]
        except KeyError:
            raise AttributeError(name) from None


def _key() -> Any:
    """The calling slot, or the calling thread's ident outside a slot."""
    found = _slot_here()
    return found[1] if found is not None else threading.get_ident()


_shield_lock = threading.Lock()
_shielded: set[Any] = set()  # slots (or threads) inside `uninterrupted`
_deferred: set[Any] = set()  # of those, the ones a stop would have interrupted


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A stop's Ctrl-C waits for the end of this block (then raises there): for opening a backend,
    whose schema could be created but not yet known to anything that drops it."""
    key = _key()
    with _shield_lock:
        _shielded.add(key)
    try:
        yield
    finally:
        with _shield_lock:
            _shielded.discard(key)
            stopped = key in _deferred
            _deferred.discard(key)
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
    _hubs.clear()
    _shielded.clear()
    _deferred.clear()


os.register_at_fork(after_in_child=_forget_in_child)
