"""How a session waits for the server: in ``poll`` on the calling thread, unless the calling code
runs in a slot that switches while it waits.

A process that keeps several runs in flight runs them as greenlets on one thread of its own
(``sim.runs.inflight``); a run waiting for its server's answer then lets the others go on instead
of blocking that thread. That module registers a :class:`Switcher` here; ``tracker.postgres``
asks it, statement by statement, whether to send and wait through it (:func:`switching`,
:func:`wait`) or to let libpq block. Nothing here knows about greenlets.

Imports only the standard library.
"""

from __future__ import annotations

import select
from typing import Protocol


class Switcher(Protocol):
    def here(self) -> bool:
        """Whether the calling code runs in a slot that can switch while it waits."""

    def wait(self, fd: int, events: int) -> None:
        """Wait until ``fd`` is ready for ``events`` (``select.POLLIN``/``POLLOUT``), letting the
        other slots run meanwhile. Only called where :meth:`here` answered True. May return
        before (two slots waiting on one descriptor both wake): callers look again, as libpq's
        own loops do."""


_switcher: Switcher | None = None


def register(switcher: Switcher) -> None:
    """Waits in the slots ``switcher`` knows go through it from now on (one per process)."""
    global _switcher
    _switcher = switcher


def switching() -> bool:
    """Whether a wait here would switch (then send, and wait with :func:`wait`, rather than let
    libpq block this thread)."""
    switcher = _switcher
    return switcher is not None and switcher.here()


def wait(fd: int, events: int) -> None:
    """Wait until ``fd`` is ready for ``events``: through the switcher in a slot, else in ``poll``
    (not select(): a sweep's sockets may be numbered past FD_SETSIZE), which lets other threads
    run meanwhile."""
    switcher = _switcher
    if switcher is not None and switcher.here():
        switcher.wait(fd, events)
        return
    ready = select.poll()
    ready.register(fd, events)
    ready.poll()
