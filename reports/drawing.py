"""Drawing the report's figures in worker processes while the report's tables are computed.

Rendering PNGs is most of a report's time and each figure is independent of the others, so
:class:`Figures` hands each one to a process pool as soon as its numbers are known and the
document goes on being built meanwhile; :meth:`Figures.wait` returns once every file is written
(and re-raises the first failure). A figure is drawn by the same function with the same
arguments wherever it runs, so its bytes do not depend on the worker count.

May import: the standard library and :mod:`reports.plots` (through the functions it is given).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any


def default_workers() -> int:
    return os.cpu_count() or 1


class Figures:
    """Figures to draw, each ``draw(*args, path)`` writing ``path``; a context manager that
    waits for them all (on an error: stops the pool without waiting for the rest)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[Future[Any]] = []

    def draw(self, draw: Callable[..., Path], *args: Any, path: Path) -> str:
        """Start drawing ``path`` (in this process when there is one worker) and return its file
        name at once, for the document to refer to."""
        if self.workers <= 1:
            draw(*args, path)
            return path.name
        if self._pool is None:  # started on the first figure: a report without any forks nothing
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        self._pending.append(self._pool.submit(draw, *args, path))
        return path.name

    def wait(self) -> None:
        """Block until every figure is written; the first failure is raised here."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self, abort: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=abort)
            self._pool = None

    def __enter__(self) -> Figures:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self.close(abort=exc_type is not None)
