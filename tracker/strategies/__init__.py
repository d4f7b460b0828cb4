"""Strategies: how an application's queue event handlers write the job_status row.

A strategy is a :class:`Strategy` record whose handlers are generator functions
``handler(job: JobView, ctx: HandlerContext) -> Handler`` that yield operations from
``tracker.ops`` and receive their answers. They never import SimPy or psycopg: drivers run them
in simulated time, in a forced order, or against a real database.

Events (a handler may be ``None``: nobody listens):

``on_created``   the producer, before ``queue.add`` (awaited): inserts the row
``on_active``    worker 'active': an attempt started (again, after a stall)
``on_progress``  worker 'progress': ``job.updateProgress``
``on_completed`` worker 'completed'
``on_failed``    worker 'failed': every failed attempt, ``job.will_retry`` says if another follows
``on_removed``   a waiting or delayed job was removed / cancelled before it ran
``on_stalled``   the stall checker moved the job back to wait

A handler's ``job`` is, by default, the worker's own ``Job`` instance (:class:`LiveJob`): its
``attempts_made``, ``finished_on_us``, ``failed_reason`` and ``progress`` keep changing after the
event fired. ``job.at_event()`` is the snapshot; ``Strategy(job_view="snapshot")`` gives every
handler the snapshot.

Built-ins are named (``naive``, ``three-layer``, ``atomic``, ``row-lock``, ``db-clock``); a user's
own is named ``module:attr`` where ``attr`` is a :class:`Strategy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracker.errors import UserError
from tracker.ops import Handler, Insert
from tracker.strategy_names import BUILTIN

EVENTS = ("created", "active", "progress", "completed", "failed", "removed", "stalled")


@dataclass(frozen=True)
class JobView:
    """What the queue's Job object tells a listener at the moment its event fires.

    Times are the taking host's clock in integer microseconds (whole milliseconds: JavaScript's
    ``Date.now()``). ``attempt`` is the 1-based number of the attempt the event is about; a stall
    re-run keeps its number (BullMQ's ``attemptsMade`` counts finished attempts, not stalls).
    """

    id: str
    attempt: int
    attempts_made: int
    attempts_started: int
    max_attempts: int
    timestamp_us: int
    processed_on_us: int | None = None
    finished_on_us: int | None = None
    failed_reason: str | None = None
    will_retry: bool = False
    progress: Any = None
    delayed: bool = False
    removed_on_us: int | None = None


#: The fields of BullMQ's ``Job`` instance that keep changing after its worker emitted an event
#: (docs/strategies.md, "The live Job object", has the source for each).
LIVE_FIELDS = ("attempts_made", "finished_on_us", "failed_reason", "progress")

#: Changes to a job instance after its event: ``(true time in µs, ((field, value), ...))``, in time order.
JobChanges = tuple[tuple[int, tuple[tuple[str, Any], ...]], ...]


class LiveJob(JobView):
    """The worker's own ``Job`` instance as a listener holds it: a field of :data:`LIVE_FIELDS`
    reads what the instance says *now* (when the handler reads it), not when the event fired.

    ``changes`` are the instance's changes after the event (the world appends them as they
    happen; a forced-order run has them all); ``now()`` is the reading handler's time.
    :meth:`at_event` is the snapshot at event time.
    """

    def __init__(self, view: JobView, changes: JobChanges | list[Any], spawned_us: int, now: Callable[[], int]) -> None:
        super().__init__(**{f: getattr(view, f) for f in view.__dataclass_fields__})
        object.__setattr__(self, "_event_view", view)
        object.__setattr__(self, "_changes", changes)
        object.__setattr__(self, "_spawned_us", spawned_us)
        object.__setattr__(self, "_now", now)

    def __getattribute__(self, name: str) -> Any:
        if name not in LIVE_FIELDS:
            return object.__getattribute__(self, name)
        value = object.__getattribute__(self, name)
        spawned, now = object.__getattribute__(self, "_spawned_us"), object.__getattribute__(self, "_now")()
        for at_us, changed in object.__getattribute__(self, "_changes"):
            if at_us > now:
                break
            if at_us > spawned:
                for field_name, new in changed:
                    if field_name == name:
                        value = new
        return value

    def at_event(self) -> JobView:
        """The job as it was when the event fired (BullMQ: copy the fields in the listener's
        first synchronous line)."""
        view: JobView = object.__getattribute__(self, "_event_view")
        return view


@dataclass(frozen=True)
class HandlerContext:
    """The integration's fixed settings, from the scenario's ``[handlers]`` table."""

    host: str
    active_delay_ms: float = 500.0
    completed_delay_ms: float = 300.0
    failed_delay_ms: float = 0.0
    progress_delay_ms: float = 0.0
    removed_delay_ms: float = 0.0


HandlerFn = Callable[[JobView, HandlerContext], Handler]


def create_row(job: JobView, ctx: HandlerContext) -> Handler:
    """The application's ``createJobStatus``: insert the row before adding the job."""
    yield Insert(
        job.id,
        {"status": "delayed" if job.delayed else "waiting", "max_attempts": job.max_attempts},
    )


@dataclass(frozen=True)
class Strategy:
    """A named set of handlers. ``summary`` is the one line ``racetrack strategies`` prints."""

    name: str
    summary: str
    on_active: HandlerFn | None = None
    on_progress: HandlerFn | None = None
    on_completed: HandlerFn | None = None
    on_failed: HandlerFn | None = None
    on_removed: HandlerFn | None = None
    on_stalled: HandlerFn | None = None
    on_created: HandlerFn | None = create_row
    #: "live": handlers get the worker's own Job instance (:class:`LiveJob`: its fields read what
    #: the job says when read, as BullMQ hands listeners); "snapshot": the job as it was at event
    #: time (a :class:`JobView`). The built-ins are "snapshot": what they were written to read.
    job_view: str = "live"

    def handler(self, event: str) -> HandlerFn | None:
        fn: HandlerFn | None = getattr(self, f"on_{event}")
        return fn


class StrategyNotFound(UserError, ValueError):
    """A strategy name that names nothing usable; the message is one line for the user."""


def load_strategy(name: str) -> Strategy:
    """A built-in by name, or ``module:attr`` naming a :class:`Strategy` object."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise StrategyNotFound(
            f"unknown strategy {name!r}: use one of {', '.join(BUILTIN)} or module:attr"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's module, reported in one line
        raise StrategyNotFound(
            f"strategy {name!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    except SystemExit as exc:  # sys.exit() at import must not become racetrack's exit code (1: a violation)
        raise StrategyNotFound(
            f"strategy {name!r}: module {module_name!r} called sys.exit({exc.code!r}) while being imported"
        ) from None
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise StrategyNotFound(f"strategy {name!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, Strategy):
        raise StrategyNotFound(
            f"strategy {name!r}: {attr!r} is a {type(value).__name__}, not a tracker.strategies.Strategy"
        )
    return value


def builtin_strategies() -> list[Strategy]:
    return [load_strategy(name) for name in BUILTIN]
