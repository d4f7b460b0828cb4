"""The one handler interpreter: start a handler, advance it by one step, and say what came back.

Every driver (the SimPy driver, the forced-order driver, the live driver) runs handlers through
these two functions; a driver decides only *when* an operation happens and *which clock* it
reads. What a handler may yield, and what its exceptions mean, is decided here, once:

* an operation of ``tracker.ops`` -> :class:`Yielded` (the driver performs it);
* the generator returned -> :class:`Finished`;
* a :class:`~tracker.ops.TrackerError` the handler did not catch -> :class:`Unhandled`;
* any other exception (a bug in strategy code, ``sys.exit()`` included), or a handler that is
  not a generator ->
  :class:`Crashed`, whose message names the handler, the user's file and line, and what was
  expected.

A yielded value that is not an operation is thrown back into the handler as a ``TypeError``
(as a failed ``await`` would be), so a handler that catches it goes on; one that does not crashes
with a message naming its file and line.

Imports ``tracker`` only: no SimPy, no asyncio, no database driver.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from typing import Any, get_args

from tracker.ops import Op, TrackerError

#: Files of racetrack's own machinery: a crash is reported at the last frame outside them.
_MACHINERY = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (__file__, os.path.join(os.path.dirname(__file__), "..", "__init__.py"))
)
_OPS_FILE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "tracker", "ops.py"))

#: The operation records themselves: an exact-class test first, before ``isinstance`` against
#: the ``Op`` union (which tries each member in turn).
_OP_CLASSES = frozenset(get_args(Op))


@dataclass(frozen=True)
class Yielded:
    """The handler asks for ``op``; send its answer (or throw its error) on the next advance."""

    op: Op


@dataclass(frozen=True)
class Finished:
    """The handler returned."""


@dataclass(frozen=True)
class Unhandled:
    """The handler let a tracker error (a rejected statement) escape."""

    error: TrackerError

    @property
    def message(self) -> str:
        return f"unhandled {self.error.sqlstate}: {self.error.message}"


@dataclass(frozen=True)
class Crashed:
    """A bug in strategy code: ``message`` names the exception, the handler and where it was."""

    summary: str  # "TypeError: ..." (what the run's crash list shows)
    where: str  # "my_strategy.py:14 in on_active"

    @property
    def message(self) -> str:
        return f"handler crashed: {self.summary} ({self.where})"


Outcome = Yielded | Finished | Unhandled | Crashed


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _where_defined(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return f"in {_name(fn)}"
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno} in {_name(fn)}"


def start(fn: Any, *args: Any) -> types.GeneratorType | Crashed:
    """Call a handler function; its generator, or :class:`Crashed` when it is not one."""
    try:
        gen = fn(*args)
    except Exception as exc:
        return _crashed(exc, fn)
    except SystemExit as exc:
        return _crashed(_exited(exc), fn)
    if not isinstance(gen, types.GeneratorType):
        return Crashed(
            f"TypeError: the handler returned {type(gen).__name__} {gen!r:.80}, not a generator "
            "(write `yield op` for every operation, and `answer = yield op` to read its answer)",
            _where_defined(fn),
        )
    return gen


def user_frame(exc: BaseException) -> str | None:
    """Where ``exc`` was raised in the strategy's own code (its innermost frame there), if it was;
    through the exceptions it was raised from (SimPy re-raises a process's exception as a copy)."""
    chain: BaseException | None = exc
    while chain is not None:
        where = None
        tb = chain.__traceback__
        while tb is not None:
            code_file = tb.tb_frame.f_code.co_filename
            filename = os.path.abspath(code_file)
            # not <frozen ...> (the builtin exit) nor <string> (a dataclass's generated __init__)
            if not code_file.startswith("<") and not filename.startswith(_MACHINERY) and filename != _OPS_FILE and "site-packages" not in filename:
                where = f"{os.path.basename(filename)}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name}"
            tb = tb.tb_next
        if where:
            return where
        chain = chain.__cause__
    return None


def _exited(exc: SystemExit) -> BaseException:
    """A handler's ``sys.exit()`` as the crash it is (were it let through, the handler's code would
    become racetrack's exit code: 1 reads as a violation, 0 as a pass, with nothing printed)."""
    crash = RuntimeError(f"the handler called sys.exit({exc.code!r})")
    crash.__cause__ = exc  # where it was called: user_frame looks through the cause
    return crash


def _crashed(exc: BaseException, fn: Any) -> Crashed:
    """Where ``exc`` was raised: the innermost frame of the strategy's own code."""
    return Crashed(f"{type(exc).__name__}: {exc}", user_frame(exc) or _where_defined(fn))


def suspended_at(gen: types.GeneratorType) -> str:
    """Where a handler waits: the file and line of the ``yield`` it is suspended at."""
    frame = gen.gi_frame
    code = gen.gi_code
    line = frame.f_lineno if frame is not None else code.co_firstlineno
    return f"{os.path.basename(code.co_filename)}:{line} in {code.co_name}"


def stop(gen: types.GeneratorType | Crashed | None) -> None:
    """Stop a handler where it is (its process died): its generator is closed; one that yields in
    its ``finally`` is stopped all the same."""
    if isinstance(gen, types.GeneratorType):
        try:
            gen.close()
        except RuntimeError:
            pass


class Statements:
    """The sessions of the statements handlers send in a ``Parallel``: ``<actor>/<n>``, ``n``
    counting that handler's such statements from 1. Every driver names them so: schedules,
    traces and replays rely on the names agreeing."""

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}

    def sessions(self, actor: str, count: int) -> list[str]:
        """The sessions of ``actor``'s next ``count`` statements."""
        sent = self._sent.get(actor, 0)
        self._sent[actor] = sent + count
        return [f"{actor}/{sent + i}" for i in range(1, count + 1)]


def actor_of(session: str) -> str:
    """The handler a session belongs to: ``job-1.completed#1`` for its ``Parallel`` statement
    ``job-1.completed#1/2``, itself otherwise."""
    actor, slash, n = session.rpartition("/")
    return actor if slash and n.isdigit() else session


def stop_runaway(name: str, gen: types.GeneratorType, limit: int) -> str:
    """Close a handler that yielded more than ``limit`` operations; the one line that says so
    (``name``: its actor)."""
    message = f"{name} ({suspended_at(gen)}) yielded more than {limit:,} operations (--max-ops)"
    gen.close()
    return message


def refused(gen: types.GeneratorType, exc: Exception) -> Crashed:
    """The operation ``gen`` yielded cannot be executed at all (a column the table does not have, a
    value of the wrong type): a bug at the handler's ``yield``, which is closed."""
    where = suspended_at(gen)
    gen.close()
    return Crashed(f"{type(exc).__name__}: {exc}", where)


def advance(gen: types.GeneratorType, send: Any = None, throw: BaseException | None = None) -> Outcome:
    """Resume ``gen`` with ``send`` (or ``throw``) and classify what it does next."""
    while True:
        try:
            value = gen.throw(throw) if throw is not None else gen.send(send)
        except StopIteration:
            return Finished()
        except TrackerError as exc:
            return Unhandled(exc)
        except Exception as exc:  # strategy code bug: reported, the run goes on
            return _crashed(exc, gen)
        except SystemExit as exc:  # sys.exit() in a handler is a crash too, not racetrack's exit code
            return _crashed(_exited(exc), gen)
        except GeneratorExit as exc:  # raised by the handler itself (a close() never reaches here): a crash
            return _crashed(exc, gen)
        if value.__class__ in _OP_CLASSES or isinstance(value, Op):
            return Yielded(value)
        send, throw = None, TypeError(f"handler yielded {value!r}, which is not a tracker operation")
