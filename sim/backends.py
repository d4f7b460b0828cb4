"""Which tracker backend a run uses, as a small picklable spec (so worker processes can open
their own). ``memory`` is the in-memory model; PostgreSQL and differential modes add kinds here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker.backend import TrackerBackend
from tracker.memory import MemoryTracker

KINDS = ("memory",)


@dataclass(frozen=True)
class BackendSpec:
    kind: str = "memory"
    dsn: str | None = None
    schema: str | None = None


def open_backend(spec: BackendSpec) -> TrackerBackend:
    """A ready backend for ``spec``. The caller closes it (``close_backend``) when done."""
    if spec.kind == "memory":
        return MemoryTracker()
    raise ValueError(f"unknown backend {spec.kind!r}: use one of {', '.join(KINDS)}")


def close_backend(backend: TrackerBackend) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()
