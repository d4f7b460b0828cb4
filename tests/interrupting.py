"""Sweeps interrupted as Ctrl-C would interrupt them, for the tests of partial results and resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.runs.sweep import Execution, Sweep, SweepRun


def interrupt(sweep: Sweep, out: Path, after: int) -> int:
    """Run ``sweep`` into ``out`` and interrupt it (KeyboardInterrupt) once ``after`` rows are in;
    the runs it finished (kept in ``out``'s partial)."""
    seen = 0

    def stop(n: int) -> None:
        nonlocal seen
        seen += n
        if seen >= after:
            raise KeyboardInterrupt

    run = SweepRun(sweep, Execution(workers=1), out, on_rows=stop)
    with pytest.raises(KeyboardInterrupt), run:
        for _ in run.rows():
            pass
    return run.done
