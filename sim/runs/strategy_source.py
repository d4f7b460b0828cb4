"""Where a user's strategy (``module:attr``) comes from, so that a trace or a printed command can
find it again from any directory.

A built-in strategy is found by its name anywhere. A ``module:attr`` strategy is found by
importing ``module``: :func:`origin` records the directory that import needs on ``sys.path``
(the *root*: the module's file without its dotted path), the file and its SHA-256, so a replay
can import it from the trace alone and say when the file changed since. :func:`load_from` is
that import. :func:`runnable` prefixes a printed command with ``cd ROOT &&`` when the strategy
is importable only from its root (racetrack puts the working directory on the path for
``module:attr`` names).

May import ``tracker.strategies``.
"""

from __future__ import annotations

import hashlib
import importlib
import shlex
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from tracker.strategies import BUILTIN, Strategy, StrategyNotFound, load_strategy


@dataclass(frozen=True)
class Origin:
    """A user strategy's reference, the directory its import needs, its file and the file's digest."""

    ref: str
    root: str
    file: str
    sha256: str

    def to_data(self) -> dict[str, str]:
        return {"ref": self.ref, "root": self.root, "file": self.file, "sha256": self.sha256}


def is_user(ref: str) -> bool:
    return ref not in BUILTIN and ":" in ref


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def origin(ref: str) -> Origin | None:
    """Where ``ref`` (an already loadable ``module:attr``) comes from; None for a built-in or a
    module without a file."""
    if not is_user(ref):
        return None
    module_name = ref.partition(":")[0]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    # A package's __init__.py sits one directory deeper than its dotted name says.
    up = module_name.count(".") + (1 if path.name == "__init__.py" else 0)
    root = path.parent
    for _ in range(up):
        root = root.parent
    return Origin(ref, str(root), str(path), file_digest(path))


def _installed(root: str) -> bool:
    """Whether ``root`` is where installed packages live (found without a ``cd``)."""
    paths = sysconfig.get_paths()
    return any(Path(root) == Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths)


def runnable(command: str, strategy: str) -> str:
    """``command`` as it runs from any directory: ``cd ROOT && command`` for a user strategy."""
    try:
        where = origin(strategy)
    except Exception:  # not importable here: the command is printed as it was given
        return command
    if where is None or _installed(where.root):
        return command
    return f"cd {shlex.quote(where.root)} && {command}"


def load_from(ref: str, recorded: dict[str, str] | None) -> tuple[Strategy, str | None]:
    """The strategy ``ref`` names, importing from the recorded root when it is not importable
    from here, and a note when its file no longer has the recorded digest."""
    root = (recorded or {}).get("root")
    if is_user(ref) and root and root not in sys.path:
        try:
            return _checked(load_strategy(ref), ref, recorded)
        except StrategyNotFound:
            sys.path.insert(0, root)
    return _checked(load_strategy(ref), ref, recorded)


def _checked(strategy: Strategy, ref: str, recorded: dict[str, str] | None) -> tuple[Strategy, str | None]:
    if not recorded or not is_user(ref):
        return strategy, None
    now = origin(ref)
    if now is not None and now.sha256 != recorded.get("sha256"):
        return strategy, (f"note: {now.file} changed since the trace was written (sha256 {now.sha256[:12]}, "
                          f"the trace has {str(recorded.get('sha256'))[:12]}): the replay runs the current handlers")
    return strategy, None
